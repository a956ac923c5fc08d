"""Speech data shared by the SpeechT5 tasks: manifests, 16 kHz waveforms, length-bucketed batch plans, padding and
random crops.

A task reads its manifests with :func:`read_split` (a clear error names a missing file and how to build the
synthetic corpus), pairs every utterance with its target (token ids, a class id, ...) in a :class:`SpeechItems`
dataset that loads the waveform when an item is read (a corpus never has to fit in memory), and batches it with
:func:`duration_plan`: utterances of similar duration under a budget of padded seconds, or fixed-size shuffled
batches. :func:`pad_waveforms` and :func:`random_crop` are the pieces of the collate functions. A model that
trains on a frozen upstream's outputs instead of waveforms reads :class:`FrameItems` (:class:`UpstreamFrames`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.checkpoint import load, text_vocab_sizes
from mmseq.data.audio import load_audio
from mmseq.data.feature_cache import manifest_features
from mmseq.data.manifest import Utterance, read_manifest
from mmseq.data.samplers import BatchPlan, FixedSizeBatches, LengthBucketBatches
from mmseq.errors import ConfigError
from mmseq.models.downstream import PLAIN_FEATURES, build_upstream

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


class UpstreamFrames:
    """A frozen upstream's hidden states (one layer) as another model's input frames.

    The upstream is any mmseq checkpoint with ``forward_features`` (a TERA pre-training run's ``best/``, a SpeechT5
    encoder, an s3prl file), or ``"logmel"`` / ``"fbank"`` for TERA's plain features (no weights); it runs in eval mode without gradients, one utterance at a time, so an utterance's
    frames do not depend on what it was batched with. :meth:`of_split` computes a whole manifest's frames once and
    caches them in memory and beside the manifest (:func:`~mmseq.data.feature_cache.manifest_features`, under a tag
    that names the upstream's weights and the layer, so another upstream never reads them); :meth:`of` computes one
    utterance's, for training that runs the upstream per item instead.

    Args:
        path: the upstream checkpoint, or ``"logmel"`` / ``"fbank"``.
        layer: which of its hidden states (``-1``: the last).
        dtype: the stored frames' type (float16 halves the cache; the consuming model casts them back).
    """

    def __init__(self, path: str, layer: int = -1, dtype: torch.dtype = torch.float16):
        self.path, self.layer, self.dtype = path, layer, dtype
        self._model: torch.nn.Module | None = None
        if path in PLAIN_FEATURES:
            name = path
        else:
            source = Path(path)
            if not source.exists():
                raise ConfigError(f"upstream {path!r} does not exist (a checkpoint folder or file with "
                                  f"forward_features, or one of {sorted(PLAIN_FEATURES)})")
            files = sorted(p for p in (source.rglob("*") if source.is_dir() else [source]) if p.is_file())
            digest = hashlib.sha1()
            for f in files:
                digest.update(f.name.encode())
                digest.update(f.read_bytes())
            name = digest.hexdigest()[:12]
        self.tag = f"upstream-{name}-layer{layer}-{str(dtype).split('.')[-1]}"

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            model = (build_upstream(self.path) if self.path in PLAIN_FEATURES else load(self.path)).eval()
            if not hasattr(model, "forward_features"):
                raise ConfigError(f"upstream {self.path!r} ({type(model).__name__}) has no forward_features")
            for p in model.parameters():
                p.requires_grad_(False)
            self._model = model
        return self._model

    @torch.no_grad()
    def __call__(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        """``wav [1, S]`` -> ``(frames [1, T, F], lengths [1])`` (the :func:`manifest_features` extractor)."""
        features = self.model.forward_features(wav, torch.tensor([wav.shape[-1]]))
        states = features.hidden_states
        if not -len(states) <= self.layer < len(states):
            raise ConfigError(f"upstream {self.path!r} has {len(states)} hidden states; layer {self.layer} is not one")
        n = int(features.lengths[0])
        return states[self.layer][:, :n].to(self.dtype), features.lengths

    def of(self, utterance: Utterance) -> Tensor:
        """One utterance's frames ``[T, F]``."""
        return self(load_audio(utterance.audio, SAMPLE_RATE)[None, :])[0][0]

    def of_split(self, utterances: Sequence[Utterance], manifest: str | Path) -> list[Tensor]:
        """Every utterance's frames, cached (see the class notes)."""
        return manifest_features(utterances, manifest, self, self.tag, SAMPLE_RATE)

    @property
    def dim(self) -> int:
        """The frames' size F (one short dummy pass)."""
        return int(self(torch.zeros(1, SAMPLE_RATE // 2))[0].shape[-1])


class FrameItems(SpeechItems):
    """:class:`SpeechItems` whose item ``i`` holds feature frames ``[T, F]`` (float32) in place of the waveform:
    from ``frames[i]`` when given (computed once), else from ``upstream.of`` when the item is read."""

    def __init__(self, utterances: Sequence[Utterance], targets: Sequence[Any], upstream: UpstreamFrames,
                 frames: Sequence[Tensor] | None = None):
        super().__init__(utterances, targets)
        if frames is not None and len(frames) != len(self.utterances):
            raise ValueError(f"{len(self.utterances)} utterances but {len(frames)} frame tensors")
        self.upstream, self.frames = upstream, None if frames is None else list(frames)

    def __getitem__(self, i: int) -> SpeechItem:
        frames = self.frames[i] if self.frames is not None else self.upstream.of(self.utterances[i])
        return SpeechItem(frames.float(), self.targets[i], i)


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
    """Zero-padded ``[B, S_max]`` float32 waveforms and their lengths ``[B]`` in samples; feature frames
    ``[T, F]`` (the inputs of a ``speech_frontend="features"`` model) pad to ``[B, T_max, F]`` the same way."""
    lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.long)
    trailing = tuple(waves[0].shape[1:]) if len(waves) else ()
    out = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0, *trailing)
    for row, w in enumerate(waves):
        out[row, : w.shape[0]] = w
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
