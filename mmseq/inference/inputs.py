"""Turning what users pass (paths, arrays, tensors, lists of them) into padded model batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmseq.data.audio import check_waveform, load_audio, resample
from mmseq.errors import InputError

AudioInput = str | os.PathLike | np.ndarray | Tensor


def is_batch(inputs: Any) -> bool:
    return isinstance(inputs, (list, tuple))


def load_waveform(item: AudioInput, sampling_rate: int | None, model_rate: int, name: str) -> Tensor:
    """One input as a mono float32 waveform at ``model_rate``."""
    if isinstance(item, (str, os.PathLike)):
        return load_audio(Path(item), sample_rate=model_rate)
    if isinstance(item, (np.ndarray, Tensor, list)):
        if sampling_rate is None:
            raise InputError(f"{name}: pass sampling_rate= with in-memory audio (the model expects {model_rate} Hz)")
        wav = check_waveform(item, name)
        return resample(wav, sampling_rate, model_rate) if sampling_rate != model_rate else wav
    raise InputError(f"{name}: expected a file path, numpy array or tensor, got {type(item).__name__}")


def pad_waveforms(waves: Sequence[Tensor], min_samples: int = 0) -> tuple[Tensor, Tensor]:
    """``[B, S]`` zero-padded batch and ``lengths [B]``; raises InputError for audio below ``min_samples``."""
    for i, w in enumerate(waves):
        if w.numel() < min_samples:
            raise InputError(f"input {i}: {w.numel()} samples is shorter than the model's receptive field "
                             f"({min_samples} samples)")
    lengths = torch.tensor([w.numel() for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    return batch, lengths


def load_speaker_embeddings(value: Any, dim: int, batch: int, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """A ``dim``-d x-vector (array, tensor or ``.npy`` path), one per batch row or shared, cast to ``dtype``."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise InputError(f"speaker embedding file {str(path)!r} does not exist")
        value = np.load(path, allow_pickle=False)
    emb = torch.as_tensor(np.asarray(value, dtype=np.float32) if not isinstance(value, Tensor) else value)
    if emb.dim() == 1:
        emb = emb[None].expand(batch, -1)
    if emb.dim() != 2 or emb.shape[1] != dim or emb.shape[0] not in (1, batch):
        raise InputError(f"speaker embeddings must be [{dim}] or [{batch}, {dim}], got {list(emb.shape)}")
    if not torch.isfinite(emb).all():
        raise InputError("speaker embeddings contain NaN or inf")
    return emb.expand(batch, -1).to(device=device, dtype=dtype)
