"""Positional encodings used by the methods in mmseq.

* :class:`SinusoidalPositionalEmbedding` -- fairseq / tensor2tensor layout (all sines, then all cosines),
  positions counted from ``padding_idx + 1`` so padding maps to a zero row (SpeechT5 speech encoder and text
  decoder pre-nets).
* :class:`ScaledPositionalEncoding` -- ESPnet layout (sin/cos interleaved) added as ``x + alpha * pe`` with a
  learnable ``alpha`` (SpeechT5 text encoder and speech decoder pre-nets).
* :class:`ConvPositionalEmbedding` -- grouped convolution with weight norm over time (wav2vec 2.0 / SpeechT5).
* :class:`RelativePositionalEncoding` -- Shaw-style key-only relative position embeddings with clipped distance.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.nn.dropout import Dropout


def sinusoidal_table(num_positions: int, dim: int, padding_idx: int | None = None) -> Tensor:
    """fairseq table ``[num_positions, dim]``: sin(pos * w_i) for i < dim/2, then cos; padding row zeroed."""
    half = dim // 2
    step = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


def make_positions(padding_mask: Tensor, padding_idx: int, past_length: int | Tensor = 0) -> Tensor:
    """fairseq position ids ``[B, T]``: ``padding_idx + 1 + index`` at real steps, ``padding_idx`` at padding.

    Args:
        padding_mask: ``[B, T]`` bool, True at padding.
        padding_idx: the id reserved for padding.
        past_length: steps already decoded (incremental decoding shifts the positions): an int, or one per row
            ``[B, 1]``.
    """
    real = (~padding_mask).long()
    return (torch.cumsum(real, dim=1) + past_length) * real + padding_idx


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed fairseq sinusoidal embeddings indexed by position ids; the table grows on demand.

    Args:
        dim: embedding width.
        padding_idx: position id of padding (its row is zero); real positions start at ``padding_idx + 1``.
        init_size: initial table size.
    """

    def __init__(self, dim: int, padding_idx: int = 1, init_size: int = 1024):
        super().__init__()
        self.dim, self.padding_idx = dim, padding_idx
        # Recomputed, never saved: checkpoints carry no copy of it.
        self.register_buffer("weights", sinusoidal_table(init_size, dim, padding_idx), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """``positions [B, T]`` (from :func:`make_positions`) -> ``[B, T, dim]``."""
        needed = int(positions.max()) + 1
        if needed > self.weights.shape[0]:
            with torch.inference_mode(False):  # an ordinary buffer even when grown during generation
                self.weights = sinusoidal_table(needed, self.dim, self.padding_idx).to(self.weights.device)
        return self.weights.index_select(0, positions.reshape(-1)).view(*positions.shape, self.dim).detach()


def interleaved_sinusoidal_table(num_positions: int, dim: int) -> Tensor:
    """ESPnet / "Attention is all you need" table ``[num_positions, dim]``: sin at even, cos at odd dims."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table


class ScaledPositionalEncoding(nn.Module):
    """``dropout(x + alpha * pe[offset : offset + T])`` with a learnable scalar ``alpha`` (initially 1).

    Args:
        dim: feature width.
        dropout: dropout after the addition.
        max_len: initial table length (grows on demand).
    """

    def __init__(self, dim: int, dropout: float = 0.0, max_len: int = 5000):
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.dropout = Dropout(dropout)
        self.register_buffer("pe", interleaved_sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """``x [B, T, dim]`` -> same shape; ``offset`` is the position of the first step (incremental use), one
        for the batch or one per row (``[B]``)."""
        if isinstance(offset, Tensor):
            positions = offset[:, None] + torch.arange(x.shape[1], device=x.device)[None, :]
            self._grow(int(positions.max()) + 1)
            pe = self.alpha * self.pe.to(x.dtype)[positions]
            return self.dropout(x + pe)
        return self.dropout(x + self.scaled(offset, offset + x.shape[1], x.dtype))

    def _grow(self, length: int) -> None:
        if length > self.pe.shape[0]:
            with torch.inference_mode(False):  # an ordinary buffer even when grown during generation
                self.pe = interleaved_sinusoidal_table(length, self.dim).to(self.pe.device)

    def scaled(self, start: int, end: int, dtype: torch.dtype) -> Tensor:
        """``alpha * pe[start:end]`` in ``dtype`` (the table grows on demand)."""
        self._grow(end)
        return self.alpha * self.pe[start:end].to(dtype)


class ConvPositionalEmbedding(nn.Module):
    """Relative positions from a grouped Conv1d over time (weight-normalised over dim 2), then GELU.

    With an even kernel the convolution yields one extra frame, which is dropped. Returns the embedding only;
    the caller adds it to its input.
    """

    def __init__(self, dim: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)


class RelativePositionalEncoding(nn.Module):
    """Shaw-style key-only relative position embeddings, clipped to ``[-max_distance, max_distance - 1]``.

    Computed once per forward from the sequence length and shared by every layer and head: each attention
    layer adds ``(q * scale) . pe_k[t - s]`` to its scores (see ``MultiheadAttention(rel_pos_key=...)``).

    Args:
        head_dim: per-head width of the embeddings.
        max_distance: clipping distance (SpeechT5: 160, giving a 320-row table).
    """

    def __init__(self, head_dim: int, max_distance: int = 160):
        super().__init__()
        self.max_distance = max_distance
        self.pe_k = nn.Embedding(2 * max_distance, head_dim)

    def forward(self, length: int) -> Tensor:
        """Relative key embeddings ``[length, length, head_dim]`` for a sequence of ``length`` steps."""
        pos = torch.arange(length, device=self.pe_k.weight.device)
        distance = (pos[:, None] - pos[None, :]).clamp(-self.max_distance, self.max_distance - 1)
        return self.pe_k(distance + self.max_distance)
