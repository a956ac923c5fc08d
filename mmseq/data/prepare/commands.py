"""Spoken commands and language understanding: Speech Commands, Fluent Speech Commands, SLURP.

Speech Commands v0.02 (``--root`` is the extracted archive)::

    <word>/<speaker hash>_nohash_<n>.wav       one folder per word; _background_noise_/ is left out
    validation_list.txt, testing_list.txt      lines "<word>/<file>.wav"; everything else is train

Fluent Speech Commands (``--root`` is ``fluent_speech_commands_dataset``)::

    data/{train,valid,test}_data.csv   columns: (index), path, speakerId, transcription, action, object, location
    wavs/speakers/<speakerId>/<uuid>.wav

SLURP (``--root`` holds the repository's ``dataset/`` and the audio folder)::

    dataset/slurp/{train,devel,test}.jsonl   one object per line: slurp_id, sentence, intent, scenario, action,
                                             recordings [{file, ...}], ...
    dataset/slurp/metadata.json              (optional) speaker ids: <slurp_id>.recordings.<file>.usrid
    slurp_real/<file>.flac                   (``--audio-dir`` to point elsewhere)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from mmseq.data.prepare.common import audio_duration, progress, register_preparer, require_dir, require_file
from mmseq.errors import InputError


# ------------------------------------------------------------------------------------------- Speech Commands
def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


@register_preparer("speech_commands", "Speech Commands v0.02: <word>/*.wav + validation_list.txt/testing_list.txt")
def prepare_speech_commands(root: str, out: str) -> dict[str, list[dict]]:
    """Manifests for Google Speech Commands (v0.01 or v0.02 layout).

    Args:
        root: The extracted dataset folder.
        out: Output folder (unused here).

    Returns:
        ``{"train", "dev", "test"}`` -> records with ``id`` (``<word>_<file stem>``), ``audio``, ``duration``,
        ``text`` (the word) and ``speaker`` (the hash before ``_nohash_``).
    """
    root_dir = require_dir(Path(root).resolve(), "Speech Commands root")
    dev = _read_list(require_file(root_dir / "validation_list.txt", "Speech Commands validation list"))
    test = _read_list(require_file(root_dir / "testing_list.txt", "Speech Commands testing list"))
    words = sorted(d for d in root_dir.iterdir() if d.is_dir() and not d.name.startswith("_"))
    if not words:
        raise InputError(f"no word folders under {root_dir}")
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for word_dir in progress(words, "speech_commands"):
        for audio in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{audio.name}"
            split = "dev" if rel in dev else "test" if rel in test else "train"
            splits[split].append({"id": f"{word_dir.name}_{audio.stem}", "audio": str(audio),
                                  "duration": audio_duration(audio), "text": word_dir.name,
                                  "speaker": audio.stem.split("_nohash_")[0]})  # fmt: skip
    return splits


# ------------------------------------------------------------------------------------ Fluent Speech Commands
_FSC_COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")


@register_preparer("fluent_commands", "Fluent Speech Commands: data/{train,valid,test}_data.csv + wavs/")
def prepare_fluent_commands(root: str, out: str) -> dict[str, list[dict]]:
    """Manifests for Fluent Speech Commands with the intent ``action_object_location``.

    Args:
        root: The ``fluent_speech_commands_dataset`` folder.
        out: Output folder (unused here).

    Returns:
        ``{"train", "dev", "test"}`` -> records with ``id`` (``<speakerId>_<file stem>``), ``audio``, ``duration``,
        ``text``, ``speaker``, ``intent`` (e.g. ``"activate_lights_kitchen"``) and ``slots`` (the triple).
    """
    root_dir = require_dir(Path(root).resolve(), "Fluent Speech Commands root")
    splits: dict[str, list[dict]] = {}
    for split, stem in (("train", "train"), ("dev", "valid"), ("test", "test")):
        table = require_file(root_dir / "data" / f"{stem}_data.csv", "Fluent Speech Commands split table")
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _FSC_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{table}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
        records = []
        for row in progress(rows, f"fluent {split}"):
            audio = require_file(root_dir / row["path"], f"audio listed in {table}")
            slots = {"action": row["action"], "object": row["object"], "location": row["location"]}
            intent = "_".join(v.replace(" ", "_") for v in slots.values())
            records.append({"id": f"{row['speakerId']}_{audio.stem}", "audio": str(audio),
                            "duration": audio_duration(audio), "text": row["transcription"],
                            "speaker": row["speakerId"], "intent": intent, "slots": slots})  # fmt: skip
        splits[split] = records
    return splits


# ----------------------------------------------------------------------------------------------------- SLURP
def _slurp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio-dir", default=None, help="folder of the real recordings (default: <root>/slurp_real)")


def _slurp_speakers(path: Path) -> dict[str, str]:
    """Recording file name -> speaker id, from the optional ``metadata.json``."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    speakers = {}
    for entry in meta.values():
        for name, rec in (entry.get("recordings") or {}).items():
            if isinstance(rec, dict) and rec.get("usrid") is not None:
                speakers[name] = str(rec["usrid"])
    return speakers


@register_preparer("slurp", "SLURP: dataset/slurp/{train,devel,test}.jsonl + slurp_real/", _slurp_arguments)
def prepare_slurp(root: str, out: str, audio_dir: str | None = None) -> dict[str, list[dict]]:
    """Manifests for SLURP (real recordings), one utterance per recording.

    Args:
        root: Folder holding ``dataset/slurp/`` (and ``slurp_real/`` unless ``audio_dir`` is given).
        out: Output folder (unused here).
        audio_dir: Folder of the recordings.

    Returns:
        ``{"train", "dev", "test"}`` -> records with ``id`` (recording file stem), ``audio``, ``duration``,
        ``text``, ``speaker`` (when ``metadata.json`` has it), ``intent`` (``scenario_action``), ``scenario``,
        ``action`` and ``slurp_id``.
    """
    root_dir = require_dir(Path(root).resolve(), "SLURP root")
    text_dir = require_dir(root_dir / "dataset" / "slurp", "SLURP annotation folder")
    audio_root = require_dir(Path(audio_dir).resolve() if audio_dir else root_dir / "slurp_real", "SLURP audio folder")
    speakers = _slurp_speakers(text_dir / "metadata.json")
    splits: dict[str, list[dict]] = {}
    for split, stem in (("train", "train"), ("dev", "devel"), ("test", "test")):
        path = require_file(text_dir / f"{stem}.jsonl", "SLURP annotation file")
        records = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(progress(lines, f"slurp {split}"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                sentence, intent, recordings = entry["sentence"], entry["intent"], entry["recordings"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(f"{path}:{number}: not a SLURP entry ({e})") from None
            for rec in recordings:
                audio = require_file(audio_root / rec["file"], f"recording listed in {path}:{number}")
                records.append({
                    "id": Path(rec["file"]).stem, "audio": str(audio), "duration": audio_duration(audio),
                    "text": sentence, "speaker": speakers.get(rec["file"]), "intent": intent,
                    "scenario": entry.get("scenario"), "action": entry.get("action"), "slurp_id": entry.get("slurp_id"),
                })  # fmt: skip
        splits[split] = records
    return splits
