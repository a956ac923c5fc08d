"""HiFi-GAN's discriminators (Kong et al. 2020, V1): multi-period and multi-scale, and both together.

Every sub-discriminator maps a waveform batch ``[B, S]`` to a :class:`DiscriminatorOutput`: ``logits [B, N]``
(one realness score per output position, flattened) and ``features``, the activation of every layer (the last
one being the logits before flattening), which the feature-matching loss compares between real and generated audio.

- :class:`PeriodDiscriminator` (period ``p``): reflect-pads the waveform to a multiple of ``p``, folds it into
  ``[B, 1, S / p, p]`` (column ``j`` holds samples ``j, j + p, j + 2p, ...``) and runs 2-D convolutions with
  ``(k, 1)`` kernels, so each column -- one phase of the period -- is judged on its own with shared weights.
  Channels 32, 128, 512, 1024 with stride 3 along time, then 1024 with stride 1, then a ``(3, 1)`` output
  convolution; weight norm on every convolution.
- :class:`ScaleDiscriminator`: 1-D grouped convolutions on the waveform (kernels 15, 41 x 5, 5; strides
  1, 2, 2, 4, 4, 1, 1; groups 1, 4, 16, 16, 16, 16, 1; channels 128, 128, 256, 512, 1024, 1024, 1024), a kernel-3
  output convolution. :class:`MultiScaleDiscriminator` runs three of them: on the raw waveform (spectral norm),
  and on the waveform average-pooled once and twice (``AvgPool1d(4, 2, padding=2)``, weight norm).

Leaky ReLU (slope 0.1) follows every convolution but the output one. ``width`` scales every channel count (tiny
models for tests); a group count that no longer divides its convolution's channels drops to their greatest common
divisor. Norms are ``torch.nn.utils.parametrizations`` (``weight_norm`` / ``spectral_norm``), so the spectral-norm
power-iteration vectors are buffers of the state dict and a resumed run continues them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from mmseq.errors import InputError

PERIODS = (2, 3, 5, 7, 11)
PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)
SCALE_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
SCALE_KERNELS = (15, 41, 41, 41, 41, 41, 5)
SCALE_STRIDES = (1, 2, 2, 4, 4, 1, 1)
SCALE_GROUPS = (1, 4, 16, 16, 16, 16, 1)


@dataclass
class DiscriminatorOutput:
    """One sub-discriminator's verdict: ``logits [B, N]`` and every layer's activation (the last is the logits
    before flattening)."""

    logits: Tensor
    features: list[Tensor]


def _norm(module: nn.Module, kind: str) -> nn.Module:
    return spectral_norm(module) if kind == "spectral" else weight_norm(module)


def _scaled(channels: Sequence[int], width: float) -> list[int]:
    return [max(1, round(c * width)) for c in channels]


def _as_waveforms(wav: Tensor) -> Tensor:
    """``[B, S]`` or ``[B, 1, S]`` -> ``[B, 1, S]``."""
    if wav.dim() == 2:
        wav = wav[:, None]
    if wav.dim() != 3 or wav.shape[1] != 1:
        raise InputError(f"a discriminator takes waveforms [batch, samples] (or [batch, 1, samples]), got "
                         f"{list(wav.shape)}")
    return wav


def _judge(disc: nn.Module, x: Tensor) -> DiscriminatorOutput:
    """Run ``disc.convs`` (each followed by a leaky ReLU of ``disc.slope``) and ``disc.conv_post`` on ``x``, keeping
    every activation for feature matching; the logits are the output flattened per item."""
    features = []
    for conv in disc.convs:
        x = F.leaky_relu(conv(x), disc.slope)
        features.append(x)
    x = disc.conv_post(x)
    features.append(x)
    return DiscriminatorOutput(x.flatten(1), features)


class PeriodDiscriminator(nn.Module):
    """Judges the samples ``p`` apart: the waveform folded into ``[B, 1, ceil(S / p), p]``, then 2-D convolutions
    along time only.

    Args:
        period: ``p``.
        channels: output channels of the strided-then-plain convolutions (the last one has stride 1).
        kernel_size / stride: along time, for all but the output convolution.
        slope: leaky ReLU slope.
        norm: ``"weight"`` or ``"spectral"``.
    """

    def __init__(self, period: int, channels: Sequence[int] = PERIOD_CHANNELS, kernel_size: int = 5, stride: int = 3,
                 slope: float = 0.1, norm: str = "weight"):
        super().__init__()
        self.period, self.slope = period, slope
        pad = (kernel_size - 1) // 2
        ins = [1, *channels[:-1]]
        strides = [stride] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            _norm(nn.Conv2d(i, o, (kernel_size, 1), (s, 1), padding=(pad, 0)), norm)
            for i, o, s in zip(ins, channels, strides))
        self.conv_post = _norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)), norm)

    def fold(self, wav: Tensor) -> Tensor:
        """``[B, 1, S]`` -> ``[B, 1, ceil(S / p), p]``, the end reflect-padded to a multiple of ``p``."""
        extra = (-wav.shape[-1]) % self.period
        if extra:
            wav = F.pad(wav, (0, extra), mode="reflect")
        return wav.view(wav.shape[0], 1, wav.shape[-1] // self.period, self.period)

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        """``wav [B, S]`` -> logits ``[B, H * p]`` with ``H`` the time length after the strided convolutions."""
        return _judge(self, self.fold(_as_waveforms(wav)))


class ScaleDiscriminator(nn.Module):
    """Judges the waveform at one scale with grouped 1-D convolutions.

    Args:
        channels / kernels / strides / groups: one entry per convolution before the output one.
        slope: leaky ReLU slope.
        norm: ``"weight"`` or ``"spectral"`` (the paper: spectral on the raw-waveform scale only).
    """

    def __init__(self, channels: Sequence[int] = SCALE_CHANNELS, kernels: Sequence[int] = SCALE_KERNELS,
                 strides: Sequence[int] = SCALE_STRIDES, groups: Sequence[int] = SCALE_GROUPS, slope: float = 0.1,
                 norm: str = "weight"):
        super().__init__()
        if not len(channels) == len(kernels) == len(strides) == len(groups):
            raise ValueError("channels, kernels, strides and groups need one entry per convolution")
        self.slope = slope
        ins = [1, *channels[:-1]]
        self.convs = nn.ModuleList(
            _norm(nn.Conv1d(i, o, k, s, padding=(k - 1) // 2, groups=math.gcd(g, i, o)), norm)
            for i, o, k, s, g in zip(ins, channels, kernels, strides, groups))
        self.conv_post = _norm(nn.Conv1d(channels[-1], 1, 3, 1, padding=1), norm)

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        """``wav [B, S]`` (or ``[B, 1, S]``) -> logits ``[B, L]``, ``L`` the length after the strides."""
        return _judge(self, _as_waveforms(wav))


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11)."""

    def __init__(self, periods: Sequence[int] = PERIODS, width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, _scaled(PERIOD_CHANNELS, width)) for p in periods)

    def forward(self, wav: Tensor) -> list[DiscriminatorOutput]:
        return [d(wav) for d in self.discriminators]


class MultiScaleDiscriminator(nn.Module):
    """``scales`` :class:`ScaleDiscriminator` s: the first on the raw waveform with spectral norm, each next one on
    the waveform average-pooled once more (``AvgPool1d(4, 2, padding=2)``) with weight norm."""

    def __init__(self, scales: int = 3, width: float = 1.0):
        super().__init__()
        channels = _scaled(SCALE_CHANNELS, width)
        self.discriminators = nn.ModuleList(ScaleDiscriminator(channels, norm="spectral" if i == 0 else "weight")
                                            for i in range(scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: Tensor) -> list[DiscriminatorOutput]:
        x = _as_waveforms(wav)
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            outputs.append(d(x))
        return outputs


class HifiGanDiscriminator(nn.Module):
    """The multi-period and the multi-scale discriminator together: ``wav [B, S]`` -> one
    :class:`DiscriminatorOutput` per sub-discriminator (periods first, then scales).

    Args:
        periods: periods of the multi-period discriminator (empty: none).
        scales: sub-discriminators of the multi-scale discriminator (0: none).
        width: multiplier of every channel count (1.0: the paper's V1 sizes).
    """

    def __init__(self, periods: Sequence[int] = PERIODS, scales: int = 3, width: float = 1.0):
        super().__init__()
        if not periods and scales < 1:
            raise ValueError("a HiFi-GAN discriminator needs at least one period or one scale")
        self.mpd = MultiPeriodDiscriminator(periods, width)
        self.msd = MultiScaleDiscriminator(scales, width)

    def forward(self, wav: Tensor) -> list[DiscriminatorOutput]:
        return [*self.mpd(wav), *self.msd(wav)]
