"""Learnable micro data for the recipe tests: a speech corpus of tones, small enough to train on in seconds.

Every "phone" is a harmonic tone (silence is low noise), an utterance is a run of phones, a speaker shifts every tone's pitch
by its own factor, and an intent fixes which phones an utterance uses. So a probe that works learns phones from
frame spectra, speakers from pitch, and intents from which tones appear -- and a broken recipe stays near chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 16000
PHONES = {"sil": 0.0, "a": 300.0, "b": 700.0, "c": 1500.0}
INTENTS = {"lights_on": ["a", "b"], "lights_off": ["b", "c"], "music": ["a", "c"]}
SPEAKERS = {"train": {"s1": 1.0, "s2": 1.25, "s3": 0.85}, "dev": {"s4": 1.1}, "test": {"s5": 0.95}}
PER_SPEAKER = {"train": 24, "dev": 9, "test": 12}
# For speaker embeddings: an encoder trained on three voices learns three clusters, and where two unseen voices fall
# between them depends on the CPU's rounding (unseen EER 0.09 on one machine, 0.34 on another). Eight training voices
# spread over the pitch range make it learn pitch itself; the unseen voices sit between training ones.
SPEAKER_VOICES = {"train": {f"t{i}": p for i, p in enumerate([0.8, 0.87, 0.94, 1.02, 1.1, 1.19, 1.28, 1.38])},
                  "dev": {"u1": 0.9}, "test": {"u2": 1.15}}
SPEAKER_PER_VOICE = {"train": 9, "dev": 10, "test": 10}


def _utterance(rng: np.random.Generator, pitch: float, intent: str) -> tuple[np.ndarray, list[dict]]:
    pieces, phones, t = [], [], 0.0
    sequence = ["sil"] + [str(rng.choice(INTENTS[intent])) for _ in range(int(rng.integers(3, 6)))] + ["sil"]
    for phone in sequence:
        seconds = float(rng.uniform(0.1, 0.2))
        n = int(seconds * RATE)
        time = np.arange(n) / RATE
        if PHONES[phone]:
            f = PHONES[phone] * pitch
            wave = sum(0.3 / k * np.sin(2 * np.pi * k * f * time) for k in range(1, 12) if k * f < RATE / 2)
        else:
            wave = np.zeros(n)
        pieces.append(wave + 0.003 * rng.standard_normal(n))
        phones.append({"phone": phone, "start": round(t, 4), "end": round(t + n / RATE, 4)})
        t += n / RATE
    return np.concatenate(pieces).astype(np.float32), phones


def make_micro_speech_corpus(root: Path, seed: int = 0, speakers: dict = SPEAKERS,
                              per_speaker: dict = PER_SPEAKER) -> Path:
    """``train/dev/test.jsonl`` manifests (mmseq's format) and their wavs under ``root``; ``speakers`` maps each split
    to its voices' pitch factors, ``per_speaker`` each split to the utterances per voice."""
    rng = np.random.default_rng(seed)
    for split, voices in speakers.items():
        lines = []
        for speaker, pitch in voices.items():
            for i in range(per_speaker[split]):
                intent = list(INTENTS)[i % len(INTENTS)]
                wav, phones = _utterance(rng, pitch, intent)
                name = f"wav/{speaker}_{i:02d}.wav"
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / name, wav, RATE)
                lines.append({"id": f"{speaker}_{i:02d}", "audio": name, "duration": len(wav) / RATE,
                              "speaker": speaker, "intent": intent, "phones": phones})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


@pytest.fixture(scope="session")
def micro_speech_corpus(tmp_path_factory) -> Path:
    return make_micro_speech_corpus(tmp_path_factory.mktemp("micro_speech"))


@pytest.fixture(scope="session")
def micro_speaker_corpus(tmp_path_factory) -> Path:
    return make_micro_speech_corpus(tmp_path_factory.mktemp("micro_speakers"), speakers=SPEAKER_VOICES,
                                    per_speaker=SPEAKER_PER_VOICE)
