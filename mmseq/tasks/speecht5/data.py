"""Speech data shared by the SpeechT5 tasks: manifests, 16 kHz waveforms, length-bucketed batch plans, padding and
random crops.

A task reads its manifests with :func:`read_split` (a clear error names a missing file and how to build the
synthetic corpus), pairs every utterance with its target (token ids, a class id, ...) in a :class:`SpeechItems`
dataset that loads the waveform when an item is read (a corpus never has to fit in memory), and batches it with
:func:`duration_plan`: utterances of similar duration under a budget of padded seconds, or fixed-size shuffled
batches. :func:`pad_waveforms` and :func:`random_crop` are the pieces of the collate functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.checkpoint import text_vocab_sizes
from mmseq.data.audio import load_audio
from mmseq.data.manifest import Utterance, read_manifest
from mmseq.data.samplers import BatchPlan, FixedSizeBatches, LengthBucketBatches
from mmseq.errors import ConfigError

SAMPLE_RATE = 16000


def manifest_path(corpus: str, name: str) -> Path:
    """``corpus/name``, which must exist (absolute ``name`` is taken as it is)."""
    path = Path(name) if Path(name).is_absolute() else Path(corpus) / name
    if not path.is_file():
        raise ConfigError(f"manifest {str(path)!r} does not exist; build the synthetic corpus with "
                          "`mmseq data synth speech --out data/synth_speech --profile quick`, prepare a real one with "
                          "`mmseq data prepare`, or set task_args.corpus / the manifest names")
    return path


def read_split(corpus: str, name: str, max_seconds: float = 0.0, need: str | None = None) -> list[Utterance]:
    """The utterances of manifest ``corpus/name``.

    Args:
        corpus: the corpus folder.
        name: the manifest file name (e.g. ``train.jsonl``).
        max_seconds: leave out utterances longer than this (0 keeps all).
        need: a field every kept utterance must have (``"text"``, ``"translation"``, ``"speaker"``); utterances
            without it are left out, and a manifest where none has it is an error that names the field.
    """
    path = manifest_path(corpus, name)
    utterances = read_manifest(path)
    if need is not None:
        utterances = [u for u in utterances if getattr(u, need) is not None]
        if not utterances:
            raise ConfigError(f"no utterance of {str(path)!r} has the field {need!r} this task needs")
    if max_seconds > 0:
        utterances = [u for u in utterances if u.duration <= max_seconds]
    return utterances


@dataclass
class SpeechItem:
    """One item: the waveform ``[S]`` at 16 kHz, the utterance's target and its index in the dataset."""

    audio: Tensor
    target: Any
    index: int


class SpeechItems(Dataset):
    """Utterances paired with targets; item ``i`` loads utterance ``i``'s audio (resampled to ``sample_rate``).

    Args:
        utterances: manifest utterances (resolved paths, as :func:`read_split` gives them).
        targets: one target per utterance (token ids, a class id, anything the task's collate reads).
        sample_rate: the model's rate.
    """

    def __init__(self, utterances: Sequence[Utterance], targets: Sequence[Any], sample_rate: int = SAMPLE_RATE):
        if len(utterances) != len(targets):
            raise ValueError(f"{len(utterances)} utterances but {len(targets)} targets")
        self.utterances, self.targets, self.sample_rate = list(utterances), list(targets), sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    def __getitem__(self, i: int) -> SpeechItem:
        return SpeechItem(load_audio(self.utterances[i].audio, self.sample_rate), self.targets[i], i)


def duration_plan(durations: Sequence[float], max_batch_seconds: float) -> Callable[[int, int], BatchPlan]:
    """A batch plan builder ``(batch_size, seed) -> plan`` for a task.

    With ``max_batch_seconds > 0``: utterances of similar duration, at most ``batch_size`` of them and at most
    ``max_batch_seconds`` of padded audio per batch (:class:`~mmseq.data.samplers.LengthBucketBatches`, ties and
    batch order reshuffled every epoch). With 0: ``batch_size`` random utterances per batch.
    """
    if max_batch_seconds < 0:
        raise ConfigError(f"task_args.max_batch_seconds must be >= 0, got {max_batch_seconds}")
    values = list(durations)

    def plan(batch_size: int, seed: int) -> BatchPlan:
        if max_batch_seconds == 0:
            return FixedSizeBatches(len(values), batch_size, shuffle=True, seed=seed)
        return LengthBucketBatches(values, max_batch_seconds, shuffle=True, seed=seed, padded=True,
                                   max_items=batch_size)

    return plan


def pad_waveforms(waves: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-padded ``[B, S_max]`` float32 waveforms and their lengths ``[B]`` in samples."""
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0)
    for row, w in enumerate(waves):
        out[row, : w.numel()] = w
    return out, lengths


def random_crop(wav: Tensor, samples: int, generator: torch.Generator | None = None) -> Tensor:
    """A random window of ``samples`` samples of ``wav [S]`` (all of it when shorter, or ``samples <= 0``); the
    start comes from ``generator``, or from the global RNG, which the training loop checkpoints."""
    if samples <= 0 or wav.numel() <= samples:
        return wav
    start = int(torch.randint(0, wav.numel() - samples + 1, (), generator=generator))
    return wav[start : start + samples]


def unwrap(model: Any) -> Any:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def bind_tokenizer(model: Any, tokenizer: Any) -> None:
    """Give the model the task's tokenizer (saved with every checkpoint, so ``mmseq.pipeline(TASK, RUN/best)``
    reads and writes text), after checking their vocabularies agree; a mismatch is a :class:`ConfigError` that says
    which ``model_args.vocab_size`` fits. The tasks' ``prepare_model``."""
    inner = unwrap(model)
    wrong = {name: size for name, size in text_vocab_sizes(inner).items() if size != len(tokenizer)}
    if wrong:
        listed = ", ".join(f"{name} {size}" for name, size in wrong.items())
        raise ConfigError(f"the task's vocabulary has {len(tokenizer)} tokens but the model's text modules have "
                          f"{listed}; set model_args.vocab_size={len(tokenizer)}")
    inner.tokenizer = tokenizer


def model_device(model: Any) -> torch.device:
    return next(unwrap(model).parameters()).device
