"""A synchronous English-German sentence grammar: every generated English sentence comes with its translation.

The grammar is small but generative (hundreds of millions of sentences over a vocabulary of more than 500
English word forms), so models trained on part of it must generalise to unseen sentences. Each rule builds the
English and the German side from the same choices; German morphology (article and adjective declension in
nominative, accusative and dative; dative plural ``-n``; ``in dem -> im``) and word order are handled:

============================  ====================================  =========================================
rule                          English                                German
============================  ====================================  =========================================
transitive                    SUBJ V OBJ [PP]                        SUBJ V OBJ [PP]
time first, past              TIME SUBJ V-ed OBJ                     TIME V-past SUBJ OBJ   (verb second)
modal                         SUBJ MODAL V OBJ [PP]                  SUBJ MODAL OBJ [PP] V-inf  (verb last)
subordinate clause            CLAUSE CONJ SUBJ V ADV                 CLAUSE, CONJ SUBJ ADV V  (verb last)
yes/no question               does SUBJ V OBJ                        V SUBJ OBJ ?  (verb first)
intransitive                  SUBJ V [ADV] [PP]                      SUBJ V [ADV] [PP]
existential with a number     there are NUM [ADJ] N PP               es gibt NUM [ADJ-e] N PP
ditransitive                  SUBJ V OBJ to IOBJ                     SUBJ V IOBJ(dative) OBJ
predicative                   SUBJ is ADJ                            SUBJ ist ADJ
coordination                  CLAUSE and/but CLAUSE                  CLAUSE und/aber CLAUSE
============================  ====================================  =========================================

English comes out lower case without punctuation (a spoken transcript); German is written text with capitals
and final punctuation.
"""

from __future__ import annotations

import numpy as np

from mmseq.data.synth import lexicon as L

_DEF = {"nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
        "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
        "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"}}  # fmt: skip
_THIS = {"nom": {"m": "dieser", "f": "diese", "n": "dieses", "pl": "diese"},
         "acc": {"m": "diesen", "f": "diese", "n": "dieses", "pl": "diese"},
         "dat": {"m": "diesem", "f": "dieser", "n": "diesem", "pl": "diesen"}}  # fmt: skip
# ein/mein: the plural column is only used with the "m" prefix (meine, meinen)
_EIN = {"nom": {"m": "ein", "f": "eine", "n": "ein", "pl": "eine"},
        "acc": {"m": "einen", "f": "eine", "n": "ein", "pl": "eine"},
        "dat": {"m": "einem", "f": "einer", "n": "einem", "pl": "einen"}}  # fmt: skip
# adjective endings: weak (after der/dieser), mixed (after ein/mein), strong (no article)
_WEAK = {"nom": {"m": "e", "f": "e", "n": "e", "pl": "en"}, "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
         "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"}}  # fmt: skip
_MIXED = {"nom": {"m": "er", "f": "e", "n": "es", "pl": "en"}, "acc": {"m": "en", "f": "e", "n": "es", "pl": "en"},
          "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"}}  # fmt: skip
_STRONG_PLURAL = {"nom": "e", "acc": "e", "dat": "en"}

_ANIMATE = [n for n in L.NOUNS if n.tags & {"person", "animal"}]
_OBJECTS = [n for n in L.NOUNS if n.tags & {"thing", "animal", "person"}]
_PLACES = [n for n in L.NOUNS if "place" in n.tags]


class _NP:
    """A noun phrase realised in both languages; ``plural`` and ``third_person`` drive agreement."""

    def __init__(self, en: str, de: dict[str, str], plural: bool) -> None:
        self.en, self.de, self.plural = en, de, plural


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _article_en(det: str, next_word: str) -> str:
    if det == "a":
        return "an" if next_word[:1] in "aeiou" or next_word.startswith("hon") else "a"
    return det


def _dative_plural(word: str) -> str:
    return word if word.endswith(("n", "s")) else word + "n"


def _noun_phrase(rng: np.random.Generator, nouns: list[L.Noun], allow_name: bool, allow_number: bool) -> _NP:
    """Sample a noun phrase and realise it in the three German cases."""
    if allow_name and rng.random() < 0.2:
        name = _pick(rng, L.NAMES)
        return _NP(name, {c: name.capitalize() for c in ("nom", "acc", "dat")}, plural=False)
    noun = _pick(rng, nouns)
    adjective = _pick(rng, L.ADJECTIVES) if rng.random() < 0.45 else None
    plural = rng.random() < 0.3
    if plural:
        det = _pick(rng, ["the", "my", "these"] + (["NUM", "NUM", "many"] if allow_number else []))
    else:
        det = _pick(rng, ["the", "the", "a", "my", "this"])
    count = int(rng.integers(2, 100)) if det == "NUM" else 0
    en_noun = noun.en_plural if plural else noun.en
    en_words = ([adjective.en] if adjective else []) + [en_noun]
    en_det = {"NUM": L.number_en(count) if count else "", "these": "these", "many": "many"}.get(det, det)
    en = " ".join([_article_en(en_det, en_words[0])] + en_words)
    de: dict[str, str] = {}
    key = "pl" if plural else noun.gender
    for case in ("nom", "acc", "dat"):
        noun_de = (_dative_plural(noun.de_plural) if case == "dat" else noun.de_plural) if plural else noun.de
        if det == "the":
            article, endings = _DEF[case][key], _WEAK
        elif det == "this" or det == "these":
            article, endings = _THIS[case][key], _WEAK
        elif det == "a":
            article, endings = _EIN[case][key], _MIXED
        elif det == "my":
            article, endings = "m" + _EIN[case][key], _MIXED
        else:  # a number or "many": no article, strong plural endings
            article = L.number_de(count) if det == "NUM" else ("viele" if case != "dat" else "vielen")
            endings = None
        if adjective is None:
            words = [article, noun_de]
        else:
            ending = _STRONG_PLURAL[case] if endings is None else endings[case][key]
            words = [article, adjective.de_stem + ending, noun_de]
        de[case] = " ".join(words)
    return _NP(en, de, plural)


def _place(rng: np.random.Generator) -> tuple[str, str]:
    prep_en, prep_de = _pick(rng, L.PREPOSITIONS)
    noun = _pick(rng, _PLACES)
    article = _DEF["dat"][noun.gender]
    de = f"{prep_de} {article} {noun.de}".replace("in dem ", "im ")
    return f"{prep_en} the {noun.en}", de


def _verb_en(verb: L.Verb, subject: _NP, tense: str) -> str:
    if tense == "past":
        return verb.en_past
    return verb.en if subject.plural else verb.en_3sg


def _verb_de(verb: L.Verb, subject: _NP, tense: str) -> str:
    if tense == "past":
        return verb.de_past_plural if subject.plural else verb.de_past
    return verb.de if subject.plural else verb.de_3sg


def _clause(rng: np.random.Generator, *, subordinate: bool = False) -> tuple[str, str]:
    """A present-tense transitive clause; verb last in German when ``subordinate``."""
    subject = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=True)
    obj = _noun_phrase(rng, _OBJECTS, allow_name=True, allow_number=True)
    verb = _pick(rng, L.TRANSITIVE)
    en = f"{subject.en} {_verb_en(verb, subject, 'present')} {obj.en}"
    if subordinate:
        return en, f"{subject.de['nom']} {obj.de['acc']} {_verb_de(verb, subject, 'present')}"
    return en, f"{subject.de['nom']} {_verb_de(verb, subject, 'present')} {obj.de['acc']}"


def _intransitive(rng: np.random.Generator, *, subordinate: bool = False) -> tuple[str, str]:
    subject = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=True)
    verb = _pick(rng, L.INTRANSITIVE)
    adverb = _pick(rng, L.MANNER_ADVERBS) if rng.random() < 0.6 else None
    place = _place(rng) if rng.random() < 0.5 else None
    tail_en = " ".join(x for x in (adverb and adverb[0], place and place[0]) if x)
    tail_de = " ".join(x for x in (adverb and adverb[1], place and place[1]) if x)
    en = " ".join(x for x in (subject.en, _verb_en(verb, subject, "present"), tail_en) if x)
    verb_de = _verb_de(verb, subject, "present")
    parts = (subject.de["nom"], tail_de, verb_de) if subordinate else (subject.de["nom"], verb_de, tail_de)
    return en, " ".join(x for x in parts if x)


def _rule_transitive(rng):
    en, de = _clause(rng)
    if rng.random() < 0.5:
        place_en, place_de = _place(rng)
        en, de = f"{en} {place_en}", f"{de} {place_de}"
    return en, de, "."


def _rule_time_past(rng):
    time_en, time_de = _pick(rng, L.TIME_PHRASES)
    subject = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=True)
    obj = _noun_phrase(rng, _OBJECTS, allow_name=True, allow_number=True)
    verb = _pick(rng, L.TRANSITIVE)
    en = f"{time_en} {subject.en} {verb.en_past} {obj.en}"
    return en, f"{time_de} {_verb_de(verb, subject, 'past')} {subject.de['nom']} {obj.de['acc']}", "."


def _rule_modal(rng):
    subject = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=True)
    obj = _noun_phrase(rng, _OBJECTS, allow_name=True, allow_number=True)
    verb = _pick(rng, L.TRANSITIVE)
    en_sg, en_pl, de_sg, de_pl = _pick(rng, L.MODALS)
    place = _place(rng) if rng.random() < 0.4 else ("", "")
    en = " ".join(x for x in (subject.en, en_pl if subject.plural else en_sg, verb.en, obj.en, place[0]) if x)
    modal_de = de_pl if subject.plural else de_sg
    de = " ".join(x for x in (subject.de["nom"], modal_de, obj.de["acc"], place[1], verb.de) if x)
    return en, de, "."


def _rule_subordinate(rng):
    conj_en, conj_de = _pick(rng, L.CONJUNCTIONS)
    main_en, main_de = _clause(rng)
    if rng.random() < 0.5:
        sub_en, sub_de = _intransitive(rng, subordinate=True)
    else:
        sub_en, sub_de = _clause(rng, subordinate=True)
    return f"{main_en} {conj_en} {sub_en}", f"{main_de}, {conj_de} {sub_de}", "."


def _rule_question(rng):
    subject = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=False)
    obj = _noun_phrase(rng, _OBJECTS, allow_name=True, allow_number=True)
    verb = _pick(rng, L.TRANSITIVE)
    en = f"{'do' if subject.plural else 'does'} {subject.en} {verb.en} {obj.en}"
    return en, f"{_verb_de(verb, subject, 'present')} {subject.de['nom']} {obj.de['acc']}", "?"


def _rule_intransitive(rng):
    en, de = _intransitive(rng)
    return en, de, "."


def _rule_existential(rng):
    noun = _pick(rng, _OBJECTS)
    count = int(rng.integers(2, 1000)) if rng.random() < 0.3 else int(rng.integers(2, 100))
    adjective = _pick(rng, L.ADJECTIVES) if rng.random() < 0.5 else None
    place_en, place_de = _place(rng)
    en_words = [L.number_en(count)] + ([adjective.en] if adjective else []) + [noun.en_plural]
    de_words = [L.number_de(count)] + ([adjective.de_stem + "e"] if adjective else []) + [noun.de_plural]
    return f"there are {' '.join(en_words)} {place_en}", f"es gibt {' '.join(de_words)} {place_de}", "."


def _rule_ditransitive(rng):
    subject = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=True)
    obj = _noun_phrase(rng, [n for n in _OBJECTS if "thing" in n.tags], allow_name=False, allow_number=True)
    receiver = _noun_phrase(rng, _ANIMATE, allow_name=True, allow_number=False)
    verb = _pick(rng, L.DITRANSITIVE)
    en = f"{subject.en} {_verb_en(verb, subject, 'present')} {obj.en} to {receiver.en}"
    de = f"{subject.de['nom']} {_verb_de(verb, subject, 'present')} {receiver.de['dat']} {obj.de['acc']}"
    return en, de, "."


def _rule_predicative(rng):
    subject = _noun_phrase(rng, L.NOUNS, allow_name=True, allow_number=True)
    adjective = _pick(rng, L.ADJECTIVES)
    adverb = _pick(rng, [("", ""), ("very", "sehr"), ("not", "nicht"), ("really", "wirklich")])
    en_be, de_be = ("are", "sind") if subject.plural else ("is", "ist")
    en = " ".join(x for x in (subject.en, en_be, adverb[0], adjective.en) if x)
    de = " ".join(x for x in (subject.de["nom"], de_be, adverb[1], adjective.de) if x)
    return en, de, "."


def _rule_coordination(rng):
    conj_en, conj_de = _pick(rng, [("and", "und"), ("but", "aber")])
    first_en, first_de = _clause(rng)
    second_en, second_de = _intransitive(rng) if rng.random() < 0.5 else _clause(rng)
    sep = "," if conj_de == "aber" else ""
    return f"{first_en} {conj_en} {second_en}", f"{first_de}{sep} {conj_de} {second_de}", "."


RULES = {
    "transitive": (_rule_transitive, 3.0),
    "time_past": (_rule_time_past, 2.0),
    "modal": (_rule_modal, 2.0),
    "subordinate": (_rule_subordinate, 1.0),
    "question": (_rule_question, 1.5),
    "intransitive": (_rule_intransitive, 2.0),
    "existential": (_rule_existential, 1.0),
    "ditransitive": (_rule_ditransitive, 1.5),
    "predicative": (_rule_predicative, 1.5),
    "coordination": (_rule_coordination, 0.5),
}


def generate_sentence(rng: np.random.Generator) -> tuple[str, str, str]:
    """Sample one sentence pair.

    Args:
        rng: The random generator (all choices come from it, so a seed fixes the sentence).

    Returns:
        ``(english, german, rule)``: English lower case without punctuation (a question when the German ends in
        ``?``), German capitalised with final punctuation, and the rule name.
    """
    names = list(RULES)
    weights = np.array([RULES[n][1] for n in names])
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    en, de, end = RULES[name][0](rng)
    en, de = " ".join(en.split()), " ".join(de.split())
    return en, de[:1].upper() + de[1:] + end, name


def vocabulary() -> set[str]:
    """Every English word form the sentence grammar can produce."""
    words: set[str] = set()

    def add(*phrases: str) -> None:
        for phrase in phrases:
            words.update(phrase.split())

    for n in L.NOUNS:
        add(n.en, n.en_plural)
    for a in L.ADJECTIVES:
        add(a.en)
    for v in L.TRANSITIVE + L.DITRANSITIVE + L.INTRANSITIVE:
        add(v.en, v.en_3sg, v.en_past)
    add(*L.NAMES, *(t for t, _ in L.TIME_PHRASES), *(a for a, _ in L.MANNER_ADVERBS))
    add(*(p for p, _ in L.PREPOSITIONS), *(c for c, _ in L.CONJUNCTIONS), *(m[0] + " " + m[1] for m in L.MODALS))
    add(*(L.number_en(n) for n in range(2, 1000)))
    add("the a an my this these many there are is do does to and but very not really")
    return words
