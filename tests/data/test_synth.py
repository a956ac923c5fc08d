"""The offline synthetic speech corpus: determinism, splits, alignments, grammars, translations and SNRs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmseq.cli import main
from mmseq.data.manifest import read_manifest
from mmseq.data.synth import build_speech_corpus
from mmseq.data.synth.commands import command_grammar
from mmseq.data.synth.espeak import EVENT_PHONEME, EVENT_WORD, align_events
from mmseq.data.synth.lexicon import number_de, number_en
from mmseq.data.synth.noise import NOISE_TYPES, SNR_RANGE, measured_snr, mix_at_snr, pink_noise
from mmseq.data.synth.phones import PHONE_CLASSES, phone_class
from mmseq.data.synth.sentences import generate_sentence, vocabulary
from mmseq.data.synth.speech import PROFILES, SPLITS, VOICES, plan_corpus
from mmseq.errors import InputError

SUBDIRS = ("", "slu", "vc", "se")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """The tiny corpus built three times: seed 0 in-process, seed 0 with two workers, seed 1."""
    base = tmp_path_factory.mktemp("synth")
    runs = {"a": (0, 1), "b": (0, 2), "c": (1, 1)}
    for name, (seed, jobs) in runs.items():
        build_speech_corpus(base / name, profile="tiny", seed=seed, jobs=jobs)
    return {name: base / name for name in runs}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(root: Path, split: str, sub: str = "") -> list[dict]:
    path = root / sub / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_seed_gives_identical_bytes_for_any_number_of_jobs(corpora):
    a, b = _files(corpora["a"]), _files(corpora["b"])
    assert a.keys() == b.keys()
    assert sum(k.endswith(".wav") for k in a) > 100 and sum(k.endswith(".jsonl") for k in a) == 12
    different = [k for k in a if a[k] != b[k]]
    assert different == []


def test_another_seed_gives_other_texts_and_audio(corpora):
    a, c = _files(corpora["a"]), _files(corpora["c"])
    assert a["train.jsonl"] != c["train.jsonl"]
    shared_wavs = [k for k in a.keys() & c.keys() if k.endswith(".wav")]
    assert any(a[k] != c[k] for k in shared_wavs)


def test_manifests_are_readable_by_the_shared_reader(corpora):
    root = corpora["a"]
    for split in SPLITS:
        for sub in SUBDIRS:
            utterances = read_manifest(root / sub / f"{split}.jsonl")
            assert utterances, (sub, split)
            for u in utterances:
                assert Path(u.audio).is_file()
                assert u.target_audio is None or Path(u.target_audio).is_file()
                assert abs(sf.info(u.audio).duration - u.duration) < 1e-3


def test_speakers_are_distinct_voices_and_splits_share_no_speaker(corpora):
    voices = [v for split in SPLITS for v in VOICES[split]]
    assert len(voices) >= 16
    assert len({(v.language, v.variant, v.pitch, v.rate, v.pitch_range) for v in voices}) == len(voices)
    assert len({v.name for v in voices}) == len(voices)
    speakers = {split: {r["speaker"] for r in _manifest(corpora["a"], split)} for split in SPLITS}
    assert speakers["train"] == {v.name for v in VOICES["train"]}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    for split in SPLITS:
        for sub in ("vc", "se"):
            assert {r["speaker"] for r in _manifest(corpora["a"], split, sub)} <= speakers[split]


def test_phone_labels_tile_the_audio_with_known_classes(corpora):
    for split in SPLITS:
        for r in _manifest(corpora["a"], split):
            phones, duration = r["phones"], r["duration"]
            assert phones[0]["start"] == 0.0 and abs(phones[-1]["end"] - duration) < 1e-3
            for prev, cur in zip(phones, phones[1:]):
                assert cur["start"] == prev["end"]
                assert not (prev["phone"] == cur["phone"] == "sil")
            assert all(p["start"] < p["end"] <= duration + 1e-3 for p in phones)
            assert {p["phone"] for p in phones} <= set(PHONE_CLASSES)
            speech = [p for p in phones if p["phone"] != "sil"]
            assert len(speech) >= len(r["text"].split())
            # words: in text order, inside the audio, each over at least one phone
            words = r["words"]
            assert [w["word"] for w in words] == r["text"].split()
            assert all(0 <= w["start"] < w["end"] <= duration + 1e-3 for w in words)
            assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(words, words[1:]))


def test_align_events_shares_a_merged_word_group_and_adds_silence():
    # "on the" arrives as one word event (as eSpeak does for unstressed function words)
    events = [(EVENT_WORD, 1, 2, 1000, ""), (EVENT_PHONEME, 1, 0, 1100, "O2"), (EVENT_PHONEME, 1, 0, 2000, "n"),
              (EVENT_PHONEME, 1, 0, 3000, "D"), (EVENT_PHONEME, 1, 0, 4000, "@2"), (EVENT_PHONEME, 7, 0, 5000, "_:"),
              (EVENT_PHONEME, 7, 0, 6000, "(en)"), (EVENT_PHONEME, 7, 0, 8000, "_")]  # fmt: skip
    counts = {"on": 2, "the": 2}
    phones, words, _ = align_events(events, "on the", 0.5, counts.get)
    assert [p["phone"] for p in phones] == ["sil", "ao", "n", "dh", "ah", "sil"]
    assert phones[-1]["end"] == 0.5 and phones[0]["end"] == round(1100 / 22050, 4)
    assert [w["word"] for w in words] == ["on", "the"]
    assert words[0]["end"] == words[1]["start"] == round(3000 / 22050, 4)


def test_phone_class_folds_stress_length_and_pauses():
    assert phone_class("'aI") == "ay" and phone_class(",i@3") == "ih" and phone_class("3:") == "er"
    assert phone_class("_:") == "sil" and phone_class("_") == "sil"
    assert phone_class("(en)") is None and phone_class(";") is None
    assert phone_class("t#") == "t" and phone_class("@L") == "l"
    assert len(PHONE_CLASSES) == 40 and len(set(PHONE_CLASSES)) == 40


def test_command_grammar_has_the_31_fluent_speech_commands_intents(corpora):
    grammar = command_grammar()
    assert len(grammar) == 31
    assert all(len(phrasings) >= 4 for phrasings in grammar.values())
    assert {"activate_lights_kitchen", "change_language_none_none", "bring_socks_none"} <= set(grammar)
    for split in SPLITS:
        slu = _manifest(corpora["a"], split, "slu")
        assert slu and all(r["intent"] in grammar for r in slu)
        for r in slu:
            slots = r["extra"]["slots"]
            assert r["intent"] == f"{slots['action']}_{slots['object']}_{slots['location']}".replace(" ", "_")
            assert r["text"] in {c.text for c in grammar[r["intent"]]}
    sentences = [r for r in _manifest(corpora["a"], "train") if r["extra"]["kind"] != "command"]
    assert sentences and all("intent" not in r for r in sentences)


def test_sentence_grammar_vocabulary_and_generalisation():
    vocab = vocabulary()
    assert len(vocab) >= 500
    assert len({w for w in vocab if w not in {number_en(n) for n in range(1000)}}) >= 500
    rng = np.random.default_rng(0)
    english = [generate_sentence(rng)[0] for _ in range(2000)]
    used = {w for s in english for w in s.split()}
    assert used <= vocab and len(used) > 400
    assert len(set(english)) > 1990  # generative: almost never repeats


def test_dev_and_test_sentences_never_appear_in_train():
    plan = plan_corpus(PROFILES["quick"], seed=3)
    texts = {split: {p.text for p in plan if p.split == split and p.kind != "command"} for split in SPLITS}
    assert len(texts["train"]) > 500
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]


def test_every_utterance_has_a_german_translation(corpora):
    for split in SPLITS:
        for r in _manifest(corpora["a"], split):
            t = r["translation"]
            assert t and t[0].isupper() and t[-1] in ".?" and t != r["text"]


def test_german_morphology_and_word_order():
    assert number_de(327) == "dreihundertsiebenundzwanzig" and number_en(327) == "three hundred twenty seven"
    assert number_de(21) == "einundzwanzig" and number_de(100) == "einhundert" and number_en(40) == "forty"
    rng = np.random.default_rng(1)
    pairs = [generate_sentence(rng) for _ in range(3000)]
    by_rule: dict[str, list[tuple[str, str]]] = {}
    for en, de, rule in pairs:
        by_rule.setdefault(rule, []).append((en, de))
        assert "mmeine" not in de and "in dem " not in de and "  " not in de
    assert len(by_rule) == 10
    for en, de in by_rule["question"]:
        assert de.endswith("?") and en.split()[0] in ("does", "do")
    for en, de in by_rule["modal"]:  # the infinitive goes to the end in German
        assert de.split()[-1].rstrip(".").endswith(("en", "rn", "ln"))
    for en, de in by_rule["subordinate"]:
        assert ", weil " in de or ", während " in de or ", obwohl " in de
    for en, de in by_rule["time_past"]:  # verb second: time phrase, verb, subject
        assert en.split()[0] in ("yesterday", "last", "this", "in", "after", "on", "two")


def test_vc_pairs_have_the_same_text_in_two_voices(corpora):
    for split in SPLITS:
        pairs = _manifest(corpora["a"], split, "vc")
        assert len(pairs) == len(VOICES[split]) * PROFILES["tiny"].parallel
        for r in pairs:
            assert r["speaker"] != r["extra"]["target_speaker"]
            assert r["target_audio"] != r["audio"]
            assert "_par" in r["id"]


def test_se_mixtures_have_the_labelled_snr(corpora):
    root = corpora["a"]
    kinds = set()
    for split in SPLITS:
        for r in _manifest(root, split, "se"):
            assert SNR_RANGE[0] <= r["snr"] <= SNR_RANGE[1]
            kinds.add(r["extra"]["noise_type"])
            noisy, _ = sf.read(root / "se" / r["audio"])
            clean, _ = sf.read(root / "se" / r["target_audio"])
            assert len(noisy) == len(clean)
            assert abs(measured_snr(clean, noisy) - r["snr"]) < 0.5, r["id"]
    assert kinds == set(NOISE_TYPES)


def test_mix_at_snr_is_exact_and_pink_noise_tilts_down():
    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(16000) * 0.05)
    noise = pink_noise(rng, 16000)
    assert abs(measured_snr(clean, mix_at_snr(clean, noise, 7.5)) - 7.5) < 1e-9
    power = np.abs(np.fft.rfft(noise)) ** 2
    assert power[10:100].mean() > 10 * power[4000:6000].mean()


def test_refuses_a_foreign_non_empty_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        build_speech_corpus(tmp_path, profile="tiny")
    assert main(["data", "synth", "speech", "--out", str(tmp_path), "--profile", "tiny"]) == 2
    assert str(tmp_path) in capsys.readouterr().err
