"""Shared pieces of the corpus preparers: the preparer registry, path checks, durations and manifest writing.

A preparer is a function ``prepare(root, out, **options) -> {split: [record, ...]}`` registered with
:func:`register_preparer`. Records are plain dicts in manifest form: ``id``, ``audio`` (an absolute path; it
is written relative to the manifest's folder), ``duration``, ``text``, ``speaker`` and the task fields the
shared manifest knows (``phones``, ``words``, ``intent``, ``translation``, ``target_audio``, ``noise``,
``snr``). Any other key (a corpus's own labels such as MuST-C's segment ``start``/``end`` or a noise type) is
moved into the manifest's free-form ``extra`` object, so manifests stay readable by
:func:`mmseq.data.manifest.read_manifest`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmseq.errors import InputError

PrepareFn = Callable[..., dict[str, list[dict]]]
AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class Preparer:
    """A registered corpus preparer.

    Attributes:
        name: Command-line name, e.g. ``"librispeech"``.
        help: One line for ``--help``.
        prepare: ``prepare(root, out, **options) -> {split: records}``.
        add_arguments: Adds the preparer's own options to its parser (``None`` when it has none).
    """

    name: str
    help: str
    prepare: PrepareFn
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


PREPARERS: dict[str, Preparer] = {}


def register_preparer(
    name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[PrepareFn], PrepareFn]:
    """Decorator registering ``prepare(root, out, **options)`` under ``name``."""

    def wrap(fn: PrepareFn) -> PrepareFn:
        if name in PREPARERS:
            raise ValueError(f"preparer {name!r} is registered twice")
        PREPARERS[name] = Preparer(name, help, fn, add_arguments)
        return fn

    return wrap


# ------------------------------------------------------------------------------------------------ path checks
def require_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; :class:`InputError` naming it and ``what`` it should be when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what} not found: {path} is not a directory")
    return path


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; :class:`InputError` naming it when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    return path


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header (no decoding); :class:`InputError` naming an unreadable file."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise InputError(f"cannot read audio file {path}: {e}") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise InputError(f"audio file {path} is empty")
    return round(info.frames / info.samplerate, 4)


def audio_files(folder: Path, suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> list[Path]:
    """Audio files under ``folder`` (recursive), sorted for a stable manifest order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    """``tqdm`` progress over ``items`` (to stderr; quiet when not a terminal is not forced)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit="utt", leave=False, mininterval=1.0)


# ---------------------------------------------------------------------------------------------- manifest I/O
def _known_fields() -> set[str]:
    from mmseq.data.manifest import Utterance

    return {f.name for f in fields(Utterance)}


def to_utterance(record: dict[str, Any], manifest_dir: Path):
    """Build a :class:`mmseq.data.manifest.Utterance` from a record dict.

    Paths (``audio``, ``target_audio``) are made relative to ``manifest_dir`` with ``os.path.relpath``; phones and
    words become segments; unknown keys go into ``extra`` (``None`` values are dropped).
    """
    from mmseq.data.manifest import Segment, Utterance

    known = _known_fields()
    values: dict[str, Any] = {}
    extra: dict[str, Any] = dict(record.get("extra") or {})
    for key, value in record.items():
        if value is None or key == "extra":
            continue
        if key in ("audio", "target_audio") and os.path.isabs(value):
            value = Path(os.path.relpath(value, manifest_dir)).as_posix()
        if key in ("phones", "words"):
            label = "phone" if key == "phones" else "word"
            value = [Segment(s[label], s["start"], s["end"]) for s in value]
        if key in known:
            values[key] = value
        else:
            extra[key] = value
    if extra:
        values["extra"] = extra
    return Utterance(**values)


def write_records(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write record dicts as a manifest through :func:`mmseq.data.manifest.write_manifest`."""
    from mmseq.data.manifest import write_manifest

    path = Path(path)
    folder = path.parent.resolve()
    return write_manifest(path, [to_utterance(r, folder) for r in records])


def write_splits(out: str | os.PathLike, splits: dict[str, list[dict]]) -> dict[str, int]:
    """Write ``<out>/<split>.jsonl`` for each split; returns utterances per split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, records in splits.items():
        write_records(out / f"{split}.jsonl", records)
        counts[split] = len(records)
    return counts
