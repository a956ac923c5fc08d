"""``mmseq data synth speech``: build the embedded synthetic speech corpus (no download, a few minutes at most).

Pipeline:

1. **Plan** (main process, from the seed): for each split, the speakers, the texts each speaker reads (FSC-style
   commands, sentences from the synchronous grammar, and a *parallel* set that every speaker of the split
   reads), and the noise recipe of every speech-enhancement mixture. Dev/test sentences are drawn until none
   is a train sentence.
2. **Synthesise** (one task per speaker, in processes): eSpeak NG audio at 16 kHz, peak-normalised to 0.3,
   with phone and word times; written as 16-bit WAV.
3. **Mix** (one task per chunk of utterances, in processes): every utterance once with one noise type at an SNR
   drawn from 0-15 dB; babble uses utterances of *other* speakers of the same split.
4. **Manifests**: ``{split}.jsonl`` (everything), ``slu/{split}.jsonl`` (commands), ``vc/{split}.jsonl``
   (parallel pairs), ``se/{split}.jsonl`` (noisy/clean), plus ``speakers.json`` and ``corpus.json``.

Every random choice is derived from ``(seed, split, index)`` and results are assembled in plan order, so the
same seed gives byte-identical files for any ``--jobs``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmseq.data.synth.commands import command_grammar, intent_slots
from mmseq.data.synth.espeak import TARGET_RATE, Voice
from mmseq.data.synth.noise import NOISE_TYPES, SNR_RANGE
from mmseq.data.synth.sentences import generate_sentence
from mmseq.data.prepare.common import write_records
from mmseq.data.output import prepare_output_dir
from mmseq.errors import ConfigError

SPLITS = ("train", "dev", "test")
PEAK = 0.3  # clean speech peak; leaves head-room for noise at 0 dB SNR without clipping
MARKER = "corpus.json"

# 20 voices: accent x variant x pitch x rate. 14 train, 2 dev, 4 test; no voice is in two splits.
VOICES: dict[str, list[Voice]] = {
    "train": [
        Voice("spk01", "en-us", "m1", 45, 165), Voice("spk02", "en-us", "f1", 60, 160),
        Voice("spk03", "en", "m3", 40, 175), Voice("spk04", "en", "f2", 65, 170),
        Voice("spk05", "en-gb-scotland", "m2", 50, 155), Voice("spk06", "en-gb-scotland", "f3", 70, 165),
        Voice("spk07", "en-gb-x-rp", "m4", 35, 180), Voice("spk08", "en-gb-x-rp", "f4", 62, 150),
        Voice("spk09", "en-029", "m5", 48, 160), Voice("spk10", "en-029", "f5", 72, 175),
        Voice("spk11", "en-us-nyc", "m6", 42, 185), Voice("spk12", "en-us-nyc", "f1", 56, 170, 70),
        Voice("spk13", "en-gb-x-gbclan", "m7", 52, 160), Voice("spk14", "en-gb-x-gbcwmd", "f2", 68, 155, 30),
    ],
    "dev": [Voice("spk15", "en-us", "m2", 46, 170), Voice("spk16", "en", "f3", 66, 160)],
    "test": [
        Voice("spk17", "en-gb-scotland", "m8", 44, 165), Voice("spk18", "en-gb-x-rp", "f5", 64, 170),
        Voice("spk19", "en-029", "m3", 38, 150, 65), Voice("spk20", "en-us-nyc", "f4", 70, 180),
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """Corpus size. Per speaker: ``commands`` + ``sentences`` own utterances; per split: ``parallel`` texts
    that every speaker of the split reads (these make the VC pairs)."""

    commands: int
    sentences: int
    parallel: int


PROFILES = {
    "tiny": Profile(commands=1, sentences=1, parallel=1),
    "quick": Profile(commands=40, sentences=60, parallel=12),
    "full": Profile(commands=400, sentences=600, parallel=120),
}


@dataclass
class Planned:
    """One utterance to synthesise."""

    id: str
    split: str
    speaker: str
    kind: str  # "command", "sentence" or "parallel"
    text: str
    speak: str  # what eSpeak reads (the text plus final punctuation)
    translation: str
    rule: str | None = None
    intent: str | None = None
    slots: dict | None = None
    text_id: str | None = None

    @property
    def audio(self) -> str:
        return f"wav/{self.split}/{self.speaker}/{self.id}.wav"


# --------------------------------------------------------------------------------------------------- planning
def _sentences(rng: np.random.Generator, count: int, exclude: set[str]) -> list[tuple[str, str, str]]:
    out, seen = [], set(exclude)
    while len(out) < count:
        en, de, rule = generate_sentence(rng)
        if en not in seen:
            seen.add(en)
            out.append((en, de, rule))
    return out


def plan_corpus(profile: Profile, seed: int) -> list[Planned]:
    """Decide every utterance of the corpus (texts, speakers, ids) from the seed."""
    grammar = command_grammar()
    phrasings = [c for intent in sorted(grammar) for c in grammar[intent]]
    used: set[str] = set()  # sentences of earlier splits: dev and test never repeat a train sentence
    plan: list[Planned] = []
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, split_index, 1])
        voices = VOICES[split]
        n_sent = profile.sentences * len(voices) + profile.parallel
        pool = _sentences(rng, n_sent, exclude=used)
        used.update(en for en, _, _ in pool)
        order = rng.permutation(len(phrasings))
        cursor = 0
        for v, voice in enumerate(voices):
            for i in range(profile.commands):
                c = phrasings[order[cursor % len(order)]]
                cursor += 1
                plan.append(Planned(f"{voice.name}_cmd{i:04d}", split, voice.name, "command", c.text, c.text + ".",
                                    c.translation, intent=c.intent, slots=intent_slots(c)))  # fmt: skip
            for i in range(profile.sentences):
                en, de, rule = pool[v * profile.sentences + i]
                speak = en + ("?" if de.endswith("?") else ".")
                plan.append(Planned(f"{voice.name}_sen{i:04d}", split, voice.name, "sentence", en, speak, de, rule))
        for i in range(profile.parallel):
            en, de, rule = pool[len(voices) * profile.sentences + i]
            speak = en + ("?" if de.endswith("?") else ".")
            for voice in voices:
                plan.append(Planned(f"{voice.name}_par{i:04d}", split, voice.name, "parallel", en, speak, de, rule,
                                    text_id=f"{split}_par{i:04d}"))  # fmt: skip
    return plan


# ------------------------------------------------------------------------------------------------- synthesis
def _synthesise_speaker(task: tuple[str, dict, list[tuple[str, str, str, str]]]) -> list[dict]:
    """Worker: synthesise one speaker's utterances and write their WAVs; returns alignment metadata."""
    import soundfile as sf

    from mmseq.data.synth.espeak import get_synthesizer

    out, voice_fields, items = task
    voice = Voice(**voice_fields)
    synth = get_synthesizer()
    results = []
    for uid, text, speak, rel in items:
        result = synth.synthesize(text, voice, speak=speak)
        audio = result.audio * (PEAK / max(float(np.abs(result.audio).max()), 1e-6))
        path = Path(out) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, TARGET_RATE, subtype="PCM_16")
        results.append({"id": uid, "duration": round(len(audio) / TARGET_RATE, 4), "phones": result.phones,
                        "words": result.words})  # fmt: skip
    return results


def _mix_chunk(task: tuple[str, list[dict]]) -> list[dict]:
    """Worker: write noisy mixtures; each item names its clean file, talkers, noise type, SNR and seed."""
    import soundfile as sf

    from mmseq.data.synth.noise import make_noise, mix_at_snr

    out, items = task
    results = []
    for item in items:
        clean, _ = sf.read(str(Path(out) / item["clean"]), dtype="float64")
        talkers = [sf.read(str(Path(out) / t), dtype="float64")[0] for t in item["talkers"]]
        rng = np.random.default_rng(item["seed"])
        noise = make_noise(item["noise"], rng, len(clean), TARGET_RATE, talkers)
        noisy = mix_at_snr(clean, noise, item["snr"])
        peak = float(np.abs(noisy).max())
        path = Path(out) / item["noisy"]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.clip(noisy, -1.0, 1.0), TARGET_RATE, subtype="PCM_16")
        results.append({"id": item["id"], "clipped": peak > 1.0})
    return results


def _run(fn: Callable, tasks: list, pool, desc: str) -> list:
    """Map ``fn`` over ``tasks`` in order, in ``pool`` (in this process when ``pool`` is ``None``)."""
    from tqdm import tqdm

    if pool is None:
        return [fn(t) for t in tqdm(tasks, desc=desc, unit="task", leave=False)]
    return list(tqdm(pool.imap(fn, tasks), total=len(tasks), desc=desc, unit="task", leave=False))


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------- manifests
def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write a manifest; keys the shared manifest does not know (kind, rule, slots, ...) land in ``extra``."""
    write_records(path, records)


def _mixture_plan(plan: list[Planned], seed: int) -> list[dict]:
    """One noisy mixture per utterance: noise type, SNR and babble talkers, chosen from the seed."""
    mixtures = []
    for split_index, split in enumerate(SPLITS):
        utts = [p for p in plan if p.split == split]
        per_speaker = Counter(p.speaker for p in utts)
        for i, p in enumerate(utts):
            rng = np.random.default_rng([seed, split_index, 2, i])
            kind = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))]
            snr = round(float(rng.uniform(*SNR_RANGE)), 2)
            picks: list[int] = []
            if kind == "babble":  # 3-5 utterances of other speakers, drawn by rejection
                wanted = min(len(utts) - per_speaker[p.speaker], int(rng.integers(3, 6)))
                while len(picks) < wanted:
                    j = int(rng.integers(len(utts)))
                    if utts[j].speaker != p.speaker and j not in picks:
                        picks.append(j)
            mixtures.append({"id": f"{p.id}_{kind}", "split": split, "utt": p, "clean": p.audio,
                             "noisy": f"se/wav/{split}/{p.id}_{kind}.wav", "noise": kind, "snr": snr,
                             "talkers": [utts[j].audio for j in sorted(picks)],
                             "seed": [seed, split_index, 3, i]})  # fmt: skip
    return mixtures


def build_speech_corpus(out: str | os.PathLike, profile: str = "quick", seed: int = 0, jobs: int = 1,
                        overwrite: bool = False) -> dict:  # fmt: skip
    """Generate the synthetic speech corpus into ``out``.

    Args:
        out: Output folder (created). An existing non-empty folder is refused unless it holds an earlier corpus
            (``corpus.json``) and ``overwrite`` is set.
        profile: ``"tiny"`` (tests), ``"quick"`` (quick starts, recipes) or ``"full"``.
        seed: Seed of every random choice.
        jobs: Worker processes.
        overwrite: Replace an earlier corpus in ``out``.

    Returns:
        The corpus statistics also written to ``corpus.json``.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    root = prepare_output_dir(Path(out), MARKER, overwrite, "corpus")
    started = time.perf_counter()
    plan = plan_corpus(PROFILES[profile], seed)

    voices = {v.name: v for split in SPLITS for v in VOICES[split]}
    items: dict[str, list[tuple[str, str, str, str]]] = {name: [] for name in voices}
    for p in plan:
        items[p.speaker].append((p.id, p.text, p.speak, p.audio))
    tasks = [(str(root), asdict(voice), items[name]) for name, voice in voices.items()]
    mixtures = _mixture_plan(plan, seed)
    chunk = max(1, len(mixtures) // (4 * max(jobs, 1)))
    mix_tasks = [(str(root), [{k: v for k, v in m.items() if k != "utt"} for m in mixtures[i : i + chunk]])
                 for i in range(0, len(mixtures), chunk)]  # fmt: skip

    pool = None
    if jobs > 1:
        import multiprocessing as mp

        # spawn, not fork: the parent may hold torch threads, and each worker needs its own eSpeak state
        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init)
    try:
        aligned = {r["id"]: r for batch in _run(_synthesise_speaker, tasks, pool, "synthesise") for r in batch}
        clipped = sum(r["clipped"] for batch in _run(_mix_chunk, mix_tasks, pool, "mix noise") for r in batch)
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    stats: dict = {"profile": profile, "seed": seed, "sample_rate": TARGET_RATE, "splits": {}}
    for split in SPLITS:
        utts = [p for p in plan if p.split == split]
        records = [_record(p, aligned[p.id]) for p in utts]
        _write_jsonl(root / f"{split}.jsonl", records)
        slu = [dict(r, audio=f"../{r['audio']}") for r in records if r["intent"] is not None]
        _write_jsonl(root / "slu" / f"{split}.jsonl", slu)
        _write_jsonl(root / "vc" / f"{split}.jsonl", _vc_pairs(utts, aligned, VOICES[split]))
        se = [m for m in mixtures if m["split"] == split]
        _write_jsonl(root / "se" / f"{split}.jsonl", [_se_record(m, aligned) for m in se])
        seconds = sum(r["duration"] for r in records)
        kinds = Counter(p.kind for p in utts)
        stats["splits"][split] = {
            "utterances": len(records), "hours": round(seconds / 3600, 4), "speakers": len(VOICES[split]),
            "commands": kinds["command"], "sentences": kinds["sentence"], "parallel": kinds["parallel"],
            "vc_pairs": len(_vc_pairs(utts, aligned, VOICES[split])), "se_mixtures": len(se),
        }  # fmt: skip
    stats["clipped_mixtures"] = clipped
    with open(root / "speakers.json", "w", encoding="utf-8") as f:
        json.dump({split: [asdict(v) for v in VOICES[split]] for split in SPLITS}, f, indent=1)
    with open(root / MARKER, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
    stats["seconds_to_build"] = round(time.perf_counter() - started, 1)  # not written: files stay byte-identical
    return stats


def _record(p: Planned, aligned: dict) -> dict:
    return {
        "id": p.id, "audio": p.audio, "duration": aligned["duration"], "text": p.text, "speaker": p.speaker,
        "kind": p.kind, "rule": p.rule, "intent": p.intent, "slots": p.slots, "translation": p.translation,
        "text_id": p.text_id, "phones": aligned["phones"], "words": aligned["words"],
    }  # fmt: skip


def _vc_pairs(utts: list[Planned], aligned: dict, voices: list[Voice]) -> list[dict]:
    """Each parallel utterance paired with the same text read by the next speaker of the split (a ring)."""
    names = [v.name for v in voices]
    by_key = {(p.text_id, p.speaker): p for p in utts if p.kind == "parallel"}
    pairs = []
    for p in utts:
        if p.kind != "parallel" or len(names) < 2:
            continue
        target = by_key[p.text_id, names[(names.index(p.speaker) + 1) % len(names)]]
        pairs.append({"id": f"{p.id}_to_{target.speaker}", "audio": f"../{p.audio}",
                      "duration": aligned[p.id]["duration"], "text": p.text, "speaker": p.speaker,
                      "target_audio": f"../{target.audio}",
                      "target_duration": aligned[target.id]["duration"], "target_speaker": target.speaker,
                      "text_id": p.text_id})  # fmt: skip
    return pairs


def _se_record(m: dict, aligned: dict) -> dict:
    p: Planned = m["utt"]
    return {"id": m["id"], "audio": m["noisy"][len("se/"):], "duration": aligned[p.id]["duration"], "text": p.text,
            "speaker": p.speaker, "target_audio": f"../{p.audio}", "noise_type": m["noise"],
            "snr": m["snr"]}  # fmt: skip
