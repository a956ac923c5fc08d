"""Speech decoder post-net of SpeechT5 / Tacotron 2: mel frames and stop logits from decoder states, refined
by a 5-layer convolutional post-net with a residual connection. ``reduction_factor`` frames per step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.nn.dropout import Dropout
from mmseq.nn.incremental import is_plain
from mmseq.nn.linear import Linear, project


@dataclass
class SpeechOutput:
    """``mel_before`` / ``mel_after`` (post-net refined): ``[B, T * r, n_mels]``; ``stop_logits [B, T * r]``."""

    mel_before: Tensor
    mel_after: Tensor
    stop_logits: Tensor


class BatchNormConvLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int, dropout: float, last: bool):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, padding=(kernel - 1) // 2, bias=False)
        self.batch_norm = nn.BatchNorm1d(out_dim)
        self.activation = nn.Identity() if last else nn.Tanh()
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.activation(self.batch_norm(self.conv(x))))


class SpeechDecoderPostnet(nn.Module):
    """Decoder states ``[B, T, D]`` -> :class:`SpeechOutput` with ``T * reduction_factor`` frames.

    Args:
        dim: decoder width D.
        num_mel_bins: frame width.
        reduction_factor: frames predicted per decoder step.
        layers / units / kernel / dropout: the convolutional post-net.
    """

    modality = "mel"

    def __init__(self, dim: int = 768, num_mel_bins: int = 80, reduction_factor: int = 2, layers: int = 5,
                 units: int = 256, kernel: int = 5, dropout: float = 0.5):
        super().__init__()
        self.num_mel_bins, self.reduction_factor = num_mel_bins, reduction_factor
        self.feat_out = Linear(dim, num_mel_bins * reduction_factor)
        self.prob_out = Linear(dim, reduction_factor)
        self.layers = nn.ModuleList(
            BatchNormConvLayer(num_mel_bins if i == 0 else units, num_mel_bins if i == layers - 1 else units,
                               kernel, dropout, last=i == layers - 1)
            for i in range(layers)
        )

    def frames(self, hidden: Tensor) -> Tensor:
        """Mel frames before the post-net: ``[B, T, D]`` -> ``[B, T * r, n_mels]``."""
        return self.feat_out(hidden).view(hidden.shape[0], -1, self.num_mel_bins)

    def stop_logits(self, hidden: Tensor) -> Tensor:
        return self.prob_out(hidden).view(hidden.shape[0], -1)

    def step_heads(self) -> StepHeads | None:
        """Both linear heads as one product, for generation (build once per call; a copy of the weights); None
        when either head is not a plain linear layer (wrapped, hooked, parametrized), whose weights it would
        bypass."""
        if not all(is_plain(m, {Linear, nn.Linear}) for m in (self.feat_out, self.prob_out)):
            return None
        return StepHeads(self)

    def postnet(self, mel: Tensor) -> Tensor:
        """Residual refinement of ``[B, T, n_mels]`` frames."""
        y = mel.transpose(1, 2)
        for layer in self.layers:
            y = layer(y)
        return mel + y.transpose(1, 2)

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> SpeechOutput:
        before = self.frames(hidden)
        return SpeechOutput(before, self.postnet(before), self.stop_logits(hidden))


class StepHeads:
    """:meth:`SpeechDecoderPostnet.frames` and :meth:`~SpeechDecoderPostnet.stop_logits` of one generation step
    with a single product: ``feat_out`` and ``prob_out`` concatenated (``[r * n_mels + r, D]``), so a batch-1
    step streams them in one ``addmv``. A copy made when built: rebuild it after changing the weights."""

    def __init__(self, postnet: SpeechDecoderPostnet):
        feat, prob = postnet.feat_out, postnet.prob_out
        self.weight = torch.cat([feat.weight, prob.weight]).detach()
        self.bias = torch.cat([feat.bias, prob.bias]).detach()
        self.split, self.num_mel_bins = feat.out_features, postnet.num_mel_bins

    def __call__(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """``hidden [B, D]`` -> frames ``[B, r, n_mels]`` and stop logits ``[B, r]``."""
        both = project(hidden.to(self.weight.dtype), self.weight, self.bias)
        return both[:, : self.split].view(hidden.shape[0], -1, self.num_mel_bins), both[:, self.split :]
