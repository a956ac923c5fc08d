"""JSONL speech manifests, the dataset that reads them, its collate function, and ``mmseq data stats``.

A manifest has one JSON object per line, one utterance each::

    {"id": "spk1-0001", "audio": "wav/spk1-0001.flac", "duration": 3.52, "text": "hello", "speaker": "spk1"}

Required keys: ``id`` (unique), ``audio`` (path relative to the manifest's folder, or absolute) and ``duration``
(seconds, > 0). Optional keys: ``text``, ``speaker``, ``phones`` (a list of ``{"phone", "start", "end"}``),
``words`` (a list of ``{"word", "start", "end"}``), ``intent``, ``translation``, ``target_audio`` (a path, e.g.
the clean speech of enhancement or the target speaker of conversion), ``noise`` (a path), ``snr`` (dB) and
``extra`` (a free-form object kept as it is). Any other key is an error, so a misspelled key never goes unseen.
Blank lines are skipped.

:func:`read_manifest` resolves relative paths against the manifest's folder, so every :class:`Utterance` it
returns holds usable paths; :func:`write_manifest` writes paths under the manifest's folder relative to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from mmseq.data.audio import load_audio
from mmseq.atomic import atomic_write_text
from mmseq.errors import InputError, unknown_choice

__all__ = [
    "Segment", "Utterance", "read_manifest", "write_manifest", "AudioDataset", "SpeechCollator", "manifest_stats",
    "add_parser",
]

_PATH_FIELDS = ("audio", "target_audio", "noise")


@dataclass(frozen=True)
class Segment:
    """A time-aligned unit (a phone or a word) of an utterance, times in seconds."""

    label: str
    start: float
    end: float


@dataclass
class Utterance:
    """One manifest line. Paths are as given to :func:`write_manifest`, or resolved by :func:`read_manifest`."""

    id: str
    audio: str
    duration: float
    text: str | None = None
    speaker: str | None = None
    phones: list[Segment] | None = None
    words: list[Segment] | None = None
    intent: str | None = None
    translation: str | None = None
    target_audio: str | None = None
    noise: str | None = None
    snr: float | None = None
    extra: dict[str, Any] | None = None

    def field(self, name: str) -> Any:
        """The value of ``name``: a field of this class, else a key of ``extra`` (a preparer's own field, such as
        SLURP's ``scenario``); None when neither has it."""
        value = getattr(self, name, None) if name in _KNOWN_KEYS else None
        return value if value is not None else (self.extra or {}).get(name)

    def to_json(self) -> dict[str, Any]:
        """The manifest object of this utterance (``None`` fields left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("phones", "words"):
                key = "phone" if f.name == "phones" else "word"
                value = [{key: s.label, "start": s.start, "end": s.end} for s in value]
            out[f.name] = value
        return out


_KNOWN_KEYS = [f.name for f in fields(Utterance)]


def _where(path: Path, line: int) -> str:
    return f"{path}:{line}"


def _string(obj: dict, key: str, where: str, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: missing required field {key!r}")
        return None
    if not isinstance(value, str) or (required and not value):
        raise InputError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _number(obj: dict, key: str, where: str, required: bool = False, positive: bool = False) -> float | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: missing required field {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: field {key!r} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{where}: field {key!r} must be > 0, got {value!r}")
    return float(value)


def _segments(obj: dict, key: str, label: str, where: str) -> list[Segment] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(f"{where}: field {key!r} must be a list of {{{label!r}, 'start', 'end'}}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        item_where = f"{where}: {key}[{i}]"
        if not isinstance(item, dict) or set(item) != {label, "start", "end"}:
            raise InputError(f"{item_where} must be an object with keys {label!r}, 'start', 'end', got {item!r}")
        name = _string(item, label, item_where, required=True)
        start = _number(item, "start", item_where, required=True)
        end = _number(item, "end", item_where, required=True)
        if not 0 <= start <= end:
            raise InputError(f"{item_where} needs 0 <= start <= end, got start={start} end={end}")
        out.append(Segment(name, start, end))
    return out


def _resolve(value: str | None, root: Path) -> str | None:
    if value is None or os.path.isabs(value):
        return value
    return str(root / value)


def parse_utterance(obj: Any, where: str, root: Path | None = None) -> Utterance:
    """Validate one manifest object and build its :class:`Utterance`.

    Args:
        obj: The decoded JSON value of one line.
        where: ``"path:line"`` for error messages.
        root: Folder that relative paths are resolved against; ``None`` keeps them as written.

    Raises:
        InputError: A field is missing, unknown or of the wrong type; the message names ``where`` and the field.
    """
    if not isinstance(obj, dict):
        raise InputError(f"{where}: each line must be a JSON object, got {type(obj).__name__}")
    for key in obj:
        if key not in _KNOWN_KEYS:
            raise InputError(f"{where}: {unknown_choice('manifest field', key, _KNOWN_KEYS)}")
    extra = obj.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise InputError(f"{where}: field 'extra' must be an object, got {extra!r}")
    utt = Utterance(
        id=_string(obj, "id", where, required=True),
        audio=_string(obj, "audio", where, required=True),
        duration=_number(obj, "duration", where, required=True, positive=True),
        text=_string(obj, "text", where),
        speaker=_string(obj, "speaker", where),
        phones=_segments(obj, "phones", "phone", where),
        words=_segments(obj, "words", "word", where),
        intent=_string(obj, "intent", where),
        translation=_string(obj, "translation", where),
        target_audio=_string(obj, "target_audio", where),
        noise=_string(obj, "noise", where),
        snr=_number(obj, "snr", where),
        extra=extra,
    )
    if root is not None:
        for name in _PATH_FIELDS:
            setattr(utt, name, _resolve(getattr(utt, name), root))
    return utt


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read and validate a JSONL manifest.

    Args:
        path: The manifest file.

    Returns:
        One :class:`Utterance` per non-blank line, with relative paths resolved against the manifest's folder.

    Raises:
        InputError: The file is missing, a line is not valid JSON, a field is wrong, or an id repeats; the message
            names ``path:line`` and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    root = path.parent.resolve()
    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = _where(path, number)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            utt = parse_utterance(obj, where, root)
            if utt.id in first_line:
                raise InputError(f"{where}: duplicate id {utt.id!r} (first on line {first_line[utt.id]})")
            first_line[utt.id] = number
            utterances.append(utt)
    return utterances


def write_manifest(path: str | os.PathLike, utterances: Sequence[Utterance]) -> Path:
    """Write utterances as a JSONL manifest, atomically (temporary file, then rename).

    Absolute paths under the manifest's folder are written relative to it; relative paths are written as given
    (they are read back relative to the manifest's folder); other absolute paths stay absolute.

    Args:
        path: Destination file; its folder is created if missing.
        utterances: Utterances to write, in order.

    Returns:
        The path written.

    Raises:
        InputError: Two utterances share an id.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    seen: set[str] = set()
    lines = []
    for utt in utterances:
        if utt.id in seen:
            raise InputError(f"cannot write {path}: duplicate utterance id {utt.id!r}")
        seen.add(utt.id)
        obj = utt.to_json()
        for name in _PATH_FIELDS:
            value = obj.get(name)
            if value is not None and os.path.isabs(value):
                resolved = Path(value).resolve()
                if resolved.is_relative_to(root):
                    obj[name] = resolved.relative_to(root).as_posix()
        lines.append(json.dumps(obj, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


class AudioDataset(Dataset):
    """A map-style dataset over a manifest: item ``i`` is a dict with the waveform and the utterance's fields.

    Items hold ``id``, ``audio`` (waveform ``[T]``, float32 at ``sample_rate``), ``duration``, ``text``,
    ``speaker``, ``phones``, ``words``, ``intent``, ``translation``, ``noise``, ``snr``, ``extra``, and
    ``target_audio`` (waveform ``[T']`` when the utterance names one, else ``None``).

    With ``skip_bad=True`` an unreadable or invalid audio file gives a warning naming it, adds one to
    :attr:`skipped` and returns ``None`` (which :class:`SpeechCollator` drops); by default it raises
    :class:`InputError`. With DataLoader workers each worker keeps its own :attr:`skipped`; the collated
    batch's ``"skipped"`` entry carries the count to the training loop.

    Args:
        manifest: A manifest path or a list of utterances.
        sample_rate: Rate the audio is resampled to.
        max_seconds: Audio longer than this is bad (see ``skip_bad``); ``None`` accepts any length.
        skip_bad: Skip bad audio with a warning instead of raising.
    """

    def __init__(self, manifest: str | os.PathLike | Sequence[Utterance], sample_rate: int = 16000,
                 max_seconds: float | None = None, skip_bad: bool = False) -> None:
        self.utterances = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        self.sample_rate, self.max_seconds, self.skip_bad = sample_rate, max_seconds, skip_bad
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        """Manifest durations in seconds, in item order (for :class:`~mmseq.data.samplers.LengthBucketBatches`)."""
        return [u.duration for u in self.utterances]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        utt = self.utterances[index]
        try:
            audio = load_audio(utt.audio, self.sample_rate, self.max_seconds)
            target = (load_audio(utt.target_audio, self.sample_rate, self.max_seconds)
                      if utt.target_audio is not None else None)
        except InputError as e:
            if not self.skip_bad:
                raise InputError(f"utterance {utt.id!r}: {e}") from None
            self.skipped += 1
            warnings.warn(f"skipping utterance {utt.id!r}: {e}", stacklevel=2)
            return None
        item = {f.name: getattr(utt, f.name) for f in fields(utt)}
        item["audio"], item["target_audio"] = audio, target
        return item


class TextEncoder(Protocol):
    def batch_encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


def _pad_waveforms(waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0)
    for row, w in enumerate(waves):
        out[row, : w.numel()] = w
    return out, lengths


@dataclass
class SpeechCollator:
    """Collate :class:`AudioDataset` items into a padded batch (a picklable callable for DataLoader workers).

    The batch holds ``audio [B, T]`` zero-padded and ``audio_lengths [B]``; ``target_audio [B, T']`` and
    ``target_audio_lengths [B]`` when every item has target audio; ``text_ids [B, L]`` (padded with the
    tokenizer's pad id) and ``text_lengths [B]`` when a tokenizer is given and every item has text; ``skipped``
    (items that were ``None``); and lists (one entry per item) for every other field.

    Args:
        tokenizer: Anything with ``batch_encode(texts) -> (ids [B, L], lengths [B])``, or ``None``.
        text_field: The item field that is tokenized (``"text"``, ``"translation"`` or ``"intent"``).
    """

    tokenizer: TextEncoder | None = None
    text_field: str = "text"
    list_fields: tuple[str, ...] = field(default=(
        "id", "duration", "text", "speaker", "phones", "words", "intent", "translation", "noise", "snr", "extra"))

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [item for item in items if item is not None]
        batch: dict[str, Any] = {"skipped": len(items) - len(kept)}
        batch["audio"], batch["audio_lengths"] = _pad_waveforms([item["audio"] for item in kept])
        if kept and all(item.get("target_audio") is not None for item in kept):
            batch["target_audio"], batch["target_audio_lengths"] = _pad_waveforms(
                [item["target_audio"] for item in kept])
        for name in self.list_fields:
            batch[name] = [item.get(name) for item in kept]
        if self.tokenizer is not None and kept:
            texts = [item.get(self.text_field) for item in kept]
            missing = [item["id"] for item, text in zip(kept, texts) if text is None]
            if missing:
                raise InputError(f"utterances without {self.text_field!r} cannot be tokenized: {missing[:5]}")
            batch["text_ids"], batch["text_lengths"] = self.tokenizer.batch_encode(texts)
        return batch


def _histogram(values: Sequence[float], bins: int, unit: str, width: int = 40) -> list[str]:
    """Text histogram lines ``[lo, hi) count bar``."""
    if not values:
        return ["  (no values)"]
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins if hi > lo else 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    top = max(counts)
    return [f"  {lo + i * step:9.2f} - {lo + (i + 1) * step:9.2f} {unit:5s} {c:8d} {'#' * round(width * c / top)}"
            for i, c in enumerate(counts)]


def manifest_stats(utterances: Sequence[Utterance], bins: int = 10) -> str:
    """A human-readable summary: hours, utterances, speakers, and duration / text length histograms."""
    durations = [u.duration for u in utterances]
    speakers = Counter(u.speaker for u in utterances if u.speaker is not None)
    texts = [len(u.text) for u in utterances if u.text is not None]
    lines = [
        f"utterances: {len(utterances)}",
        f"hours: {sum(durations) / 3600:.3f}",
        f"speakers: {len(speakers)}" + (f" (utterances per speaker: min {min(speakers.values())},"
                                        f" max {max(speakers.values())})" if speakers else ""),
    ]
    if durations:
        lines.append(f"duration (s): min {min(durations):.2f}, mean {sum(durations) / len(durations):.2f}, "
                     f"max {max(durations):.2f}")
    lines += ["duration histogram:", *_histogram(durations, bins, "s")]
    if texts:
        lines += [f"text length histogram ({len(texts)} with text):", *_histogram(texts, bins, "chars")]
    return "\n".join(lines)


def _run_stats(args: argparse.Namespace) -> int:
    print(manifest_stats(read_manifest(args.manifest), bins=args.bins))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``mmseq data stats MANIFEST``."""
    p = subparsers.add_parser("stats", help="hours, utterances, speakers and length histograms of a manifest")
    p.add_argument("manifest", help="a JSONL manifest")
    p.add_argument("--bins", type=int, default=10, help="histogram bins (default 10)")
    p.set_defaults(run=_run_stats)
