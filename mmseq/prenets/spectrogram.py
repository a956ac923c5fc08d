"""Spectrogram pre-net: a linear projection of feature frames plus fixed sinusoidal positions (TERA, Mockingjay).

The pre-net maps frames ``[B, T, F]`` (log-mel, fbank, ...) to ``[B, T, D]``. The layer norm and dropout that
TERA applies after adding positions are *not* here: a post-LN :class:`~mmseq.nn.transformer.TransformerEncoder`
already normalises its input (``encoder.layer_norm``) and applies input dropout, which is exactly that step.

The position table is the "Attention is all you need" one that s3prl builds with numpy: angle
``pos / 10000 ** (2 * (i // 2) / D)``, sine at even and cosine at odd dimensions. It is computed in float64 and
cast, as numpy does, so positions of long inputs agree with s3prl's table to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.errors import InputError
from mmseq.nn.dropout import Dropout
from mmseq.prenets.speech import add_position_treatment, mask_and_position


def sinusoid_position_table(num_positions: int, dim: int) -> Tensor:
    """Interleaved sin/cos table ``[num_positions, dim]`` (float32, computed in float64).

    Args:
        num_positions: rows (positions 0 .. num_positions - 1).
        dim: width; odd widths are allowed (the last dimension is a sine).
    """
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class SpectrogramPrenet(nn.Module):
    """``Linear(F -> D)`` of every frame plus fixed sinusoidal positions.

    Args:
        input_dim: feature size F (80 for TERA's log-mel, 240 for its fbank with deltas).
        dim: output width D (the encoder width).
        init_positions: rows of the position table built up front; it grows on demand for longer inputs.
        downsample_rate: input steps per output step. Frames are mapped one to one, so 1 when counted in
            frames; a model that owns a waveform front-end reports its hop instead.

    Attributes:
        output_dim: D.
    """

    def __init__(self, input_dim: int, dim: int, init_positions: int = 3000, downsample_rate: int = 1):
        super().__init__()
        self.input_dim, self.output_dim, self.downsample_rate = input_dim, dim, downsample_rate
        self.modality = "frames"
        self.projection = nn.Linear(input_dim, dim)
        # Recomputed, never saved: checkpoints carry no copy of it.
        self.register_buffer("positions", sinusoid_position_table(init_positions, dim), persistent=False)

    def position_encoding(self, length: int) -> Tensor:
        """Rows ``[length, D]`` of the position table (grown when needed)."""
        if length > self.positions.shape[0]:
            with torch.inference_mode(False):  # an ordinary buffer even when grown under inference mode
                self.positions = sinusoid_position_table(length, self.output_dim).to(self.positions.device)
        return self.positions[:length]

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Project frames and add positions.

        Args:
            frames: ``[B, T, F]`` features, zero-padded past each row's length.
            lengths: valid frames per row ``[B]``; None means all ``T``.

        Returns:
            ``(hidden [B, T, D], lengths [B])``.
        """
        if frames.dim() != 3 or frames.shape[-1] != self.input_dim:
            raise InputError(f"spectrogram pre-net expects frames [B, T, {self.input_dim}], "
                             f"got shape {tuple(frames.shape)}")
        if lengths is None:
            lengths = torch.full((frames.shape[0],), frames.shape[1], dtype=torch.long, device=frames.device)
        hidden = self.projection(frames)
        return hidden + self.position_encoding(frames.shape[1]).to(hidden.dtype), lengths

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        """Random frames ``[B, 12, F]`` with one shorter row, and their lengths."""
        lengths = torch.tensor([12] + [7] * (batch_size - 1))[:batch_size]
        frames = torch.randn(batch_size, 12, self.input_dim)
        frames[torch.arange(12)[None, :] >= lengths[:, None]] = 0
        return frames, lengths


class StackedFramesPrenet(nn.Module):
    """Feature frames ``[B, T, F]`` (a frozen upstream's hidden states, fbank, ...) -> ``[B, T // stack, D]``:
    ``stack`` consecutive frames concatenated, a layer norm and ``Linear(stack * F -> D)``, then the position
    treatment of the SpeechT5 speech pre-nets (SpecAugment time masking with a learned embedding while training,
    a convolutional position embedding and fairseq sinusoidal positions; see
    :func:`mmseq.prenets.speech.mask_and_position`).

    It is the speech front-end of a SpeechT5 encoder-decoder that trains on top of fixed features
    (``speech_frontend="features"``): the features are computed once (cached) instead of every step. The last
    ``T % stack`` frames of a row are dropped; output step ``t`` reads only frames ``[t * stack, (t + 1) * stack)``,
    so a row's outputs do not depend on the padding of the batch.

    Args:
        input_dim: feature size F.
        dim: output width D.
        stack: frames per output step (the ``downsample_rate``, counted in frames).
        pos_conv_kernel / pos_conv_groups: the convolutional position embedding (kernel 0: none).
        feature_dropout: dropout after the projection.
        mask_time_prob / mask_time_length / mask_time_min_masks: SpecAugment over output steps (training only).
        max_positions: initial size of the sinusoidal table (grows on demand).
        padding_idx: position id of padding (SpeechT5: 1).
    """

    modality = "frames"

    def __init__(self, input_dim: int, dim: int, stack: int = 1, pos_conv_kernel: int = 128,
                 pos_conv_groups: int = 16, feature_dropout: float = 0.0, mask_time_prob: float = 0.05,
                 mask_time_length: int = 10, mask_time_min_masks: int = 2, max_positions: int = 4000,
                 padding_idx: int = 1, layer_norm_eps: float = 1e-5):
        super().__init__()
        if input_dim < 1 or stack < 1:
            raise ValueError(f"input_dim and stack must be >= 1, got {input_dim} and {stack}")
        self.input_dim, self.output_dim, self.stack = input_dim, dim, stack
        self.downsample_rate = stack
        self.layer_norm = nn.LayerNorm(stack * input_dim, eps=layer_norm_eps)
        self.projection = nn.Linear(stack * input_dim, dim)
        self.dropout = Dropout(feature_dropout)
        add_position_treatment(self, dim, pos_conv_kernel, pos_conv_groups, mask_time_prob, mask_time_length,
                               mask_time_min_masks, max_positions, padding_idx)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Output steps of rows of ``lengths [B]`` frames."""
        return torch.div(lengths, self.stack, rounding_mode="floor")

    def forward(self, frames: Tensor, lengths: Tensor | None = None,
                time_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``frames [B, T, F]``, ``lengths [B]`` in frames -> ``([B, T // stack, D], lengths [B])``."""
        if frames.dim() != 3 or frames.shape[-1] != self.input_dim:
            raise InputError(f"stacked-frames pre-net expects frames [B, T, {self.input_dim}], "
                             f"got shape {tuple(frames.shape)}")
        b, t, f = frames.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=frames.device)
        if bool((lengths < self.stack).any()):
            raise InputError(f"stacked-frames pre-net: every row needs at least {self.stack} frames, got lengths "
                             f"{lengths.tolist()}")
        steps = t // self.stack
        x = frames[:, : steps * self.stack].reshape(b, steps, self.stack * f)
        x = self.dropout(self.projection(self.layer_norm(x.to(self.projection.weight.dtype))))
        out_lengths = self.output_lengths(lengths).clamp(max=steps)
        return mask_and_position(self, x, out_lengths, time_mask), out_lengths

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        """Random frames long enough for SpecAugment spans, one row shorter, and their lengths."""
        g = torch.Generator().manual_seed(0)
        n = self.stack * max(8, 2 * self.mask_time_length)
        lengths = torch.tensor([n - (i % 2) * n // 4 for i in range(batch_size)])
        frames = torch.randn(batch_size, n, self.input_dim, generator=g)
        frames[torch.arange(n)[None, :] >= lengths[:, None]] = 0
        return frames, lengths
