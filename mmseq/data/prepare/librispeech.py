"""Read-speech corpora from LibriVox: LibriSpeech (ASR) and LibriTTS (TTS).

LibriSpeech layout (``--root`` is the ``LibriSpeech`` folder)::

    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt      lines "<speaker>-<chapter>-<utt> TEXT"

LibriTTS layout (``--root`` is the ``LibriTTS`` folder)::

    <split>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav
    <split>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.normalized.txt   (and .original.txt)

Splits are the split folders found (``train-clean-100``, ``dev-clean``, ...), or those named by ``--splits``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmseq.data.prepare.common import audio_duration, progress, register_preparer, require_dir, require_file
from mmseq.errors import InputError


def _split_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--splits", default=None, help="comma-separated split folders (default: every one found)")


def _libritts_arguments(p: argparse.ArgumentParser) -> None:
    _split_arguments(p)
    p.add_argument("--text", choices=("normalized", "original"), default="normalized",
                   help="which transcript to use (default: normalized)")  # fmt: skip


def find_splits(root: Path, splits: str | None, pattern: str, corpus: str) -> list[Path]:
    """Split folders under ``root``: the named ones, or every folder holding files matching ``pattern``.

    Args:
        root: Corpus folder.
        splits: Comma-separated names, or ``None`` for auto-detection.
        pattern: Glob (relative to a split folder) that marks a split, e.g. ``"*/*/*.trans.txt"``.
        corpus: Corpus name for messages.
    """
    root = require_dir(root, f"{corpus} root")
    if splits:
        names = [name.strip() for name in splits.split(",") if name.strip()]
        return [require_dir(root / name, f"{corpus} split folder") for name in names]
    found = sorted(d for d in root.iterdir() if d.is_dir() and next(d.glob(pattern), None) is not None)
    if not found:
        raise InputError(f"no {corpus} split folders under {root} (expected e.g. {root}/dev-clean/{pattern})")
    return found


@register_preparer("librispeech", "LibriSpeech: <split>/<spk>/<chapter>/*.flac + *.trans.txt", _split_arguments)
def prepare_librispeech(root: str, out: str, splits: str | None = None) -> dict[str, list[dict]]:
    """Manifests for LibriSpeech, one per split folder.

    Args:
        root: The ``LibriSpeech`` folder.
        out: Output folder (unused here; manifests are written by the caller).
        splits: Comma-separated split folders, default all found.

    Returns:
        Split name -> records with ``id``, ``audio``, ``duration``, ``text`` (upper case, as distributed),
        ``speaker``, and ``chapter`` (in ``extra``).
    """
    result: dict[str, list[dict]] = {}
    for split_dir in find_splits(Path(root).resolve(), splits, "*/*/*.trans.txt", "LibriSpeech"):
        records = []
        transcripts = sorted(split_dir.glob("*/*/*.trans.txt"))
        for trans in progress(transcripts, f"librispeech {split_dir.name}"):
            speaker, chapter = trans.parent.parent.name, trans.parent.name
            for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                if not text or not uid.startswith(f"{speaker}-{chapter}-"):
                    raise InputError(f"{trans}:{number}: expected '{speaker}-{chapter}-NNNN TEXT', got {line!r}")
                audio = require_file(trans.parent / f"{uid}.flac", f"audio of {uid} (listed in {trans})")
                records.append({"id": uid, "audio": str(audio), "duration": audio_duration(audio), "text": text,
                                "speaker": speaker, "chapter": chapter})  # fmt: skip
        result[split_dir.name] = records
    return result


@register_preparer("libritts", "LibriTTS: <split>/<spk>/<chapter>/*.wav + .normalized.txt", _libritts_arguments)
def prepare_libritts(root: str, out: str, splits: str | None = None, text: str = "normalized") -> dict[str, list[dict]]:
    """Manifests for LibriTTS (or LibriTTS-R, same layout), one per split folder.

    Args:
        root: The ``LibriTTS`` folder.
        out: Output folder (unused here).
        splits: Comma-separated split folders, default all found.
        text: ``"normalized"`` or ``"original"`` transcript.

    Returns:
        Split name -> records with ``id``, ``audio``, ``duration``, ``text``, ``speaker`` and ``chapter``.
    """
    result: dict[str, list[dict]] = {}
    for split_dir in find_splits(Path(root).resolve(), splits, "*/*/*.wav", "LibriTTS"):
        records = []
        wavs = sorted(split_dir.glob("*/*/*.wav"))
        for wav in progress(wavs, f"libritts {split_dir.name}"):
            speaker, chapter = wav.parent.parent.name, wav.parent.name
            transcript = require_file(wav.with_name(f"{wav.stem}.{text}.txt"), f"{text} transcript of {wav.name}")
            records.append({"id": wav.stem, "audio": str(wav), "duration": audio_duration(wav),
                            "text": transcript.read_text(encoding="utf-8").strip(), "speaker": speaker,
                            "chapter": chapter})  # fmt: skip
        result[split_dir.name] = records
    return result
