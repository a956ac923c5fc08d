"""The phone inventory of the synthetic corpus and the mapping from eSpeak NG phoneme mnemonics to it.

The inventory is the 39 ARPAbet phones of the CMU pronouncing dictionary (lower case, no stress digits) plus
``sil`` for pauses and the silence before and after speech: 40 classes. eSpeak's mnemonics are richer (accent
specific vowels, stress and length marks, syllabic consonants, flaps); :func:`phone_class` folds them:

1. stress and syllable marks (``'`` ``,`` ``%`` ``=``) are stripped;
2. pauses (``_``, ``_:``, ``_!``, ``_|``) become ``sil``; language switches (``(en)``) and the palatalisation
   mark ``;`` are dropped (they take no time);
3. the rest is looked up in :data:`ESPEAK_TO_CLASS`; an unknown mnemonic falls back to its longest known
   prefix, then to its first letter.

The table is reproduced in ``data/README.md``.
"""

from __future__ import annotations

SILENCE = "sil"

VOWELS = ("aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw")
CONSONANTS = (
    "b", "ch", "d", "dh", "f", "g", "hh", "jh", "k", "l", "m", "n", "ng", "p", "r", "s", "sh", "t", "th",
    "v", "w", "y", "z", "zh",
)  # fmt: skip
PHONE_CLASSES: tuple[str, ...] = (SILENCE,) + VOWELS + CONSONANTS

# eSpeak NG English mnemonic (stress marks removed) -> class. Grouped as in the README table.
ESPEAK_TO_CLASS: dict[str, str] = {
    # open and back vowels
    "A:": "aa", "A@": "aa", "A": "aa", "0": "aa", "aa": "aa", "A#": "aa",
    "a": "ae", "a2": "ae", "&": "ae",
    "V": "ah", "@": "ah", "@2": "ah", "@5": "ah", "a#": "ah", "@#": "ah", "V#": "ah",
    "O:": "ao", "O": "ao", "O2": "ao", "O@": "ao", "o@": "ao", "o": "ao",
    "aU": "aw", "aU@": "aw",
    "aI": "ay", "aI2": "ay", "aI@": "ay", "aI3": "ay", "aI@3": "ay",
    # mid and front vowels
    "E": "eh", "e@": "eh", "E2": "eh", "E@": "eh",
    "3:": "er", "3": "er", "VR": "er", "IR": "er", "@r": "er", "3r": "er", "UR": "er",
    "eI": "ey", "e": "ey",
    "I": "ih", "I2": "ih", "I#": "ih", "i@": "ih", "i@3": "ih", "I@": "ih", "y": "ih",
    "i:": "iy", "i": "iy", "iI": "iy",
    "oU": "ow", "@U": "ow", "oU#": "ow", "o:": "ow",
    "OI": "oy",
    "U": "uh", "U@": "uh", "U2": "uh",
    "u:": "uw", "u": "uw", "u@": "uw", "y:": "uw", "ju:": "uw",
    # consonants
    "b": "b", "tS": "ch", "d": "d", "d#": "d", "D": "dh", "f": "f", "g": "g", "h": "hh", "x": "hh",
    "dZ": "jh", "k": "k", "l": "l", "@L": "l", "l-": "l", "L": "l", "m": "m", "m-": "m", "n": "n", "n-": "n",
    "N": "ng", "p": "p", "r": "r", "r-": "r", "*": "r", "R": "r", "s": "s", "S": "sh", "t": "t", "t#": "t",
    "t[": "t", "t2": "t", "?": "t", "T": "th", "v": "v", "w": "w", "W": "w", "w#": "w", "j": "y", "z": "z", "Z": "zh",
}  # fmt: skip

_STRESS = "'\",%="
_DROPPED = {";", "", "|", "||"}


def phone_class(mnemonic: str) -> str | None:
    """Map one eSpeak NG phoneme mnemonic to a class of :data:`PHONE_CLASSES`.

    Args:
        mnemonic: The phoneme id from an eSpeak phoneme event, e.g. ``"'aI"``, ``"@2"``, ``"_:"``.

    Returns:
        The class name, ``"sil"`` for pauses, or ``None`` for markers that take no time.
    """
    m = mnemonic.strip()
    if m.startswith("("):  # language switch such as "(en)"
        return None
    if m.startswith("_"):
        return SILENCE
    m = m.lstrip(_STRESS)
    if m in _DROPPED:
        return None
    if m in ESPEAK_TO_CLASS:
        return ESPEAK_TO_CLASS[m]
    for end in range(len(m) - 1, 0, -1):  # longest known prefix: "i@3" -> "i@", "aI@3" -> "aI@"
        if m[:end] in ESPEAK_TO_CLASS:
            return ESPEAK_TO_CLASS[m[:end]]
    return "ah" if m[:1].lower() in "aeiou@0369" else "t"


def readme_table() -> str:
    """The mapping as a Markdown table (class -> eSpeak mnemonics), for ``data/README.md``."""
    by_class: dict[str, list[str]] = {c: [] for c in PHONE_CLASSES}
    for mnemonic, cls in ESPEAK_TO_CLASS.items():
        by_class[cls].append(mnemonic)
    by_class[SILENCE] = ["_", "_:", "_!", "_|", "(leading/trailing silence)"]
    rows = ["| class | eSpeak NG mnemonics (stress marks removed) |", "|---|---|"]
    for cls in PHONE_CLASSES:
        cells = " ".join(f"`{m}`".replace("|", "\\|") for m in by_class[cls])
        rows.append(f"| `{cls}` | {cells} |")
    return "\n".join(rows)
