"""A smart-home command grammar in the style of Fluent Speech Commands, with German translations.

Fluent Speech Commands (FSC) labels each utterance with three slots, ``action``, ``object`` and ``location``; the
31 combinations that occur are its intents. This grammar has exactly those 31 intents, each with several
phrasings, and every English phrasing is written together with its German counterpart (a synchronous grammar:
the same slots fill both sides, with German case and separable-verb word order written into the template).

Templates use ``{o}`` for the English object, ``{l}`` for the English location phrase (``" in the kitchen"`` or
``""``), and on the German side ``{O}`` for the object with its article in the accusative, ``{N}`` for the bare
noun and ``{L}`` for the German location phrase.
"""

from __future__ import annotations

from dataclasses import dataclass

NONE = "none"
LOCATIONS = ("kitchen", "bedroom", "washroom")
LANGUAGES = {"chinese": "Chinesisch", "korean": "Koreanisch", "english": "Englisch", "german": "Deutsch"}

# English object word -> (German accusative with article, bare German noun)
_OBJECTS = {
    "lights": ("das Licht", "Licht"),
    "lamp": ("die Lampe", "Lampe"),
    "music": ("die Musik", "Musik"),
    "heat": ("die Heizung", "Heizung"),
    "volume": ("die Lautstärke", "Lautstärke"),
}
_LOCATION_PHRASES = {
    NONE: ("", ""),
    "kitchen": (" in the kitchen", " in der Küche"),
    "bedroom": (" in the bedroom", " im Schlafzimmer"),
    "washroom": (" in the washroom", " im Badezimmer"),
}
# German location-first compounds for lights and heat ("the kitchen lights" -> "das Küchenlicht").
_COMPOUNDS = {
    ("lights", "kitchen"): "das Küchenlicht", ("lights", "bedroom"): "das Schlafzimmerlicht",
    ("lights", "washroom"): "das Badezimmerlicht", ("heat", "kitchen"): "die Küchenheizung",
    ("heat", "bedroom"): "die Schlafzimmerheizung", ("heat", "washroom"): "die Badezimmerheizung",
}  # fmt: skip

_SWITCH_ON = [
    ("turn on the {o}{l}", "schalte {O}{L} ein"),
    ("switch on the {o}{l}", "mach {O}{L} an"),
    ("turn the {o} on{l}", "mach {O}{L} an"),
    ("switch the {o} on{l}", "schalte {O}{L} an"),
    ("{o} on{l}", "{N}{L} an"),
    ("please turn on the {o}{l}", "bitte schalte {O}{L} ein"),
]
_SWITCH_OFF = [
    ("turn off the {o}{l}", "schalte {O}{L} aus"),
    ("switch off the {o}{l}", "mach {O}{L} aus"),
    ("turn the {o} off{l}", "mach {O}{L} aus"),
    ("switch the {o} off{l}", "schalte {O}{L} ab"),
    ("{o} off{l}", "{N}{L} aus"),
    ("please turn off the {o}{l}", "bitte schalte {O}{L} aus"),
]
_LOCATION_FIRST_ON = [("turn on the {loc} {o}", "schalte {C} ein"), ("switch on the {loc} {o}", "mach {C} an")]
_LOCATION_FIRST_OFF = [("turn off the {loc} {o}", "schalte {C} aus"), ("switch off the {loc} {o}", "mach {C} aus")]
_MUSIC_ON = [("play the music", "spiel die Musik ab"), ("put on some music", "leg etwas Musik auf"),
             ("start the music", "starte die Musik"), ("play some music", "spiel etwas Musik")]  # fmt: skip
_MUSIC_OFF = [("stop the music", "stopp die Musik"), ("pause the music", "pausiere die Musik"),
              ("no more music", "keine Musik mehr")]  # fmt: skip
_HEAT_UP = [
    ("increase the heat{l}", "erhöhe die Heizung{L}"),
    ("turn up the heat{l}", "dreh die Heizung{L} auf"),
    ("turn the heat up{l}", "dreh die Heizung{L} höher"),
    ("heat up{l}", "Heizung{L} hoch"),
    ("make it warmer{l}", "mach es{L} wärmer"),
    ("it is too cold{l}", "es ist{L} zu kalt"),
]
_HEAT_DOWN = [
    ("decrease the heat{l}", "verringere die Heizung{L}"),
    ("turn down the heat{l}", "dreh die Heizung{L} herunter"),
    ("turn the heat down{l}", "dreh die Heizung{L} niedriger"),
    ("heat down{l}", "Heizung{L} runter"),
    ("make it cooler{l}", "mach es{L} kühler"),
    ("it is too hot{l}", "es ist{L} zu heiß"),
]
_VOLUME_UP = [
    ("increase the volume", "erhöhe die Lautstärke"), ("turn up the volume", "dreh die Lautstärke auf"),
    ("turn the volume up", "mach die Lautstärke höher"), ("volume up", "Lautstärke hoch"),
    ("make it louder", "mach es lauter"), ("louder please", "lauter bitte"),
    ("i can not hear it", "ich kann es nicht hören"),
]  # fmt: skip
_VOLUME_DOWN = [
    ("decrease the volume", "verringere die Lautstärke"), ("turn down the volume", "dreh die Lautstärke herunter"),
    ("turn the volume down", "mach die Lautstärke leiser"), ("volume down", "Lautstärke runter"),
    ("make it quieter", "mach es leiser"), ("quieter please", "leiser bitte"), ("that is too loud", "das ist zu laut"),
]  # fmt: skip
# English object -> (German with article, with possessive, bare); "bring" takes the accusative.
_BRING_OBJECTS = {
    "newspaper": ("die Zeitung", "meine Zeitung"),
    "juice": ("den Saft", "meinen Saft"),
    "socks": ("die Socken", "meine Socken"),
    "shoes": ("die Schuhe", "meine Schuhe"),
}
_BRING = [
    ("bring me the {o}", "bring mir {O}"), ("bring me my {o}", "bring mir {P}"), ("get me the {o}", "hol mir {O}"),
    ("fetch my {o}", "hol {P}"), ("i need my {o}", "ich brauche {P}"), ("go get the {o}", "geh und hol {O}"),
]  # fmt: skip
_LANGUAGE_TO = [
    ("change the language to {lang}", "ändere die Sprache auf {Lang}"),
    ("set the language to {lang}", "stelle die Sprache auf {Lang}"),
    ("switch to {lang}", "wechsle zu {Lang}"),
    ("use {lang}", "benutze {Lang}"),
    ("i want to hear {lang}", "ich möchte {Lang} hören"),
    ("{lang} please", "{Lang} bitte"),
]
_LANGUAGE_ANY = [
    ("change the language", "ändere die Sprache"), ("switch the language", "wechsle die Sprache"),
    ("change language", "Sprache ändern"), ("use a different language", "benutze eine andere Sprache"),
    ("i need another language", "ich brauche eine andere Sprache"),
]  # fmt: skip


@dataclass(frozen=True)
class Command:
    """One phrasing of one intent.

    Attributes:
        action, object, location: The FSC slots (``"none"`` when absent).
        text: English, lower case, no punctuation.
        translation: German, capitalised, with a final full stop.
    """

    action: str
    object: str
    location: str
    text: str
    translation: str

    @property
    def intent(self) -> str:
        """``"action_object_location"``, e.g. ``"activate_lights_kitchen"``."""
        return f"{self.action}_{self.object}_{self.location}".replace(" ", "_")


def _german(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] + "."


def _switchable(action: str, obj: str, locations: tuple[str, ...]) -> list[Command]:
    templates = _SWITCH_ON if action == "activate" else _SWITCH_OFF
    out = []
    article, bare = _OBJECTS[obj]
    for loc in locations:
        en_loc, de_loc = _LOCATION_PHRASES[loc]
        for en, de in templates:
            out.append(Command(action, obj, loc, en.format(o=obj, l=en_loc),
                               _german(de.format(O=article, N=bare, L=de_loc))))  # fmt: skip
        if loc != NONE and obj in ("lights", "heat"):
            first = _LOCATION_FIRST_ON if action == "activate" else _LOCATION_FIRST_OFF
            for en, de in first:
                german = _german(de.format(C=_COMPOUNDS[obj, loc]))
                out.append(Command(action, obj, loc, en.format(loc=loc, o=obj), german))
    return out


def command_grammar() -> dict[str, list[Command]]:
    """All phrasings, grouped by intent (31 intents, as in Fluent Speech Commands).

    Returns:
        Intent name -> its phrasings, in a fixed order.
    """
    commands: list[Command] = []
    every = (NONE,) + LOCATIONS
    for action in ("activate", "deactivate"):
        commands += _switchable(action, "lights", every)
        commands += _switchable(action, "lamp", (NONE,))
        commands += _switchable(action, "music", (NONE,))
    commands += [Command("activate", "music", NONE, en, _german(de)) for en, de in _MUSIC_ON]
    commands += [Command("deactivate", "music", NONE, en, _german(de)) for en, de in _MUSIC_OFF]
    for action, templates in (("increase", _HEAT_UP), ("decrease", _HEAT_DOWN)):
        for loc in every:
            en_loc, de_loc = _LOCATION_PHRASES[loc]
            commands += [Command(action, "heat", loc, en.format(l=en_loc), _german(de.format(L=de_loc)))
                         for en, de in templates]  # fmt: skip
            if loc != NONE:
                verb = "turn up" if action == "increase" else "turn down"
                de_verb = "auf" if action == "increase" else "herunter"
                commands.append(Command(action, "heat", loc, f"{verb} the {loc} heat",
                                        _german(f"dreh {_COMPOUNDS['heat', loc]} {de_verb}")))  # fmt: skip
    commands += [Command("increase", "volume", NONE, en, _german(de)) for en, de in _VOLUME_UP]
    commands += [Command("decrease", "volume", NONE, en, _german(de)) for en, de in _VOLUME_DOWN]
    for obj, (article, possessive) in _BRING_OBJECTS.items():
        commands += [Command("bring", obj, NONE, en.format(o=obj), _german(de.format(O=article, P=possessive)))
                     for en, de in _BRING]  # fmt: skip
    for lang, german in LANGUAGES.items():
        commands += [Command("change language", lang, NONE, en.format(lang=lang), _german(de.format(Lang=german)))
                     for en, de in _LANGUAGE_TO]  # fmt: skip
    commands += [Command("change language", NONE, NONE, en, _german(de)) for en, de in _LANGUAGE_ANY]

    grammar: dict[str, list[Command]] = {}
    for command in commands:
        grammar.setdefault(command.intent, []).append(command)
    return grammar


def intent_slots(command: Command) -> dict[str, str]:
    """The slot triple as a manifest object: ``{"action", "object", "location"}``."""
    return {"action": command.action, "object": command.object, "location": command.location}
