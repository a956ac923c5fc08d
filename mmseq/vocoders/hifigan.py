"""HiFi-GAN generator (SpeechT5's 16 kHz vocoder): transposed-convolution upsampling with multi-receptive-field
residual blocks. Parameter names follow transformers' ``SpeechT5HifiGan`` so its checkpoints load directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import InputError
from mmseq.registry import register_model


def _same_padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


class ResidualBlock(nn.Module):
    """Pairs of dilated and plain convolutions with leaky ReLUs and residual connections."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int], slope: float):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=_same_padding(kernel, 1))
                                    for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            x = x + conv2(F.leaky_relu(conv1(F.leaky_relu(x, self.slope)), self.slope))
        return x


class HifiGan(nn.Module):
    """Mel frames ``[B, T, n_mels]`` (log10 mel as SpeechT5 predicts it) -> waveform ``[B, T * prod(rates)]``.

    Args:
        model_in_dim: mel bins.
        upsample_initial_channel: channels after the input convolution (halved at each upsampling).
        upsample_rates / upsample_kernel_sizes: the transposed convolutions.
        resblock_kernel_sizes / resblock_dilation_sizes: the multi-receptive-field blocks after each upsampling.
        leaky_relu_slope: slope inside the network (the last activation uses 0.01, as the reference does).
        normalize_before: standardise the input with the stored ``mean`` and ``scale``.
        sampling_rate: output rate (metadata).
    """

    def __init__(self, model_in_dim: int = 80, upsample_initial_channel: int = 512,
                 upsample_rates: Sequence[int] = (4, 4, 4, 4), upsample_kernel_sizes: Sequence[int] = (8, 8, 8, 8),
                 resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
                 resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
                 leaky_relu_slope: float = 0.1, normalize_before: bool = True, sampling_rate: int = 16000):
        super().__init__()
        self.model_in_dim, self.sampling_rate, self.slope = model_in_dim, sampling_rate, leaky_relu_slope
        self.normalize_before = normalize_before
        self.num_kernels = len(resblock_kernel_sizes)
        self.samples_per_frame = 1
        for r in upsample_rates:
            self.samples_per_frame *= r
        self.conv_pre = nn.Conv1d(model_in_dim, upsample_initial_channel, 7, padding=3)
        self.upsampler = nn.ModuleList(
            nn.ConvTranspose1d(upsample_initial_channel // 2**i, upsample_initial_channel // 2 ** (i + 1), k,
                               stride=u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            ResidualBlock(upsample_initial_channel // 2 ** (i + 1), k, d, leaky_relu_slope)
            for i in range(len(upsample_rates))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes)
        )
        self.conv_post = nn.Conv1d(upsample_initial_channel // 2 ** len(upsample_rates), 1, 7, padding=3)
        self.register_buffer("mean", torch.zeros(model_in_dim))
        self.register_buffer("scale", torch.ones(model_in_dim))

    def forward(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``mel [B, T, n_mels]`` (or ``[T, n_mels]``) -> ``[B, T * samples_per_frame]`` (or ``[S]``)."""
        unbatched = mel.dim() == 2
        if unbatched:
            mel = mel[None]
        if mel.dim() != 3 or mel.shape[-1] != self.model_in_dim:
            raise InputError(f"mel must be [batch, frames, {self.model_in_dim}], got {list(mel.shape)}")
        if self.normalize_before:
            mel = (mel - self.mean) / self.scale
        x = self.conv_pre(mel.transpose(1, 2))
        for i, up in enumerate(self.upsampler):
            x = up(F.leaky_relu(x, self.slope))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        wav = torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)
        return wav[0] if unbatched else wav

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        return {"mel": torch.randn(batch_size, 5, self.model_in_dim, generator=g)}


def fold_weight_norm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace weight-norm pairs (``weight_g``/``weight_v`` or ``parametrizations.weight.original0/1``, norm over
    every dim but 0) by the plain ``weight`` they define."""
    out = dict(state)
    for key in list(state):
        for g_suffix, v_suffix in (("weight_g", "weight_v"),
                                   ("parametrizations.weight.original0", "parametrizations.weight.original1")):
            if key.endswith(g_suffix):
                stem = key[: -len(g_suffix)]
                g, v = out.pop(key), out.pop(stem + v_suffix)
                norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
                out[stem + "weight"] = g * v / norm
    return out


@register_model
def speecht5_hifigan(model_in_dim: int = 80, upsample_initial_channel: int = 512,
                     upsample_rates: tuple[int, ...] = (4, 4, 4, 4), upsample_kernel_sizes: tuple[int, ...] = (8, 8, 8, 8),
                     resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
                     resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
                     leaky_relu_slope: float = 0.1, normalize_before: bool = True,
                     sampling_rate: int = 16000) -> HifiGan:
    """The SpeechT5 HiFi-GAN (16 kHz, 256 samples per frame)."""
    return HifiGan(model_in_dim, upsample_initial_channel, upsample_rates, upsample_kernel_sizes,
                   resblock_kernel_sizes, resblock_dilation_sizes, leaky_relu_slope, normalize_before, sampling_rate)


@register_model
def hifigan_tiny(model_in_dim: int = 16, upsample_initial_channel: int = 16,
                 upsample_rates: tuple[int, ...] = (4, 4), upsample_kernel_sizes: tuple[int, ...] = (8, 8),
                 resblock_kernel_sizes: tuple[int, ...] = (3, 5),
                 resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3), (1, 3))) -> HifiGan:
    return HifiGan(model_in_dim, upsample_initial_channel, upsample_rates, upsample_kernel_sizes,
                   resblock_kernel_sizes, resblock_dilation_sizes)
