"""SUPERB-style downstream models on any encoder that exposes ``forward_features``.

``UpstreamClassifier(upstream, head)`` runs the upstream's ``forward_features`` (under ``torch.no_grad`` and in eval
mode when frozen, as s3prl's ``run_downstream.py`` does without ``--upstream_trainable``), combines the hidden
states with a learnable softmax-weighted sum (weights start uniform; s3prl's featurizer) or picks one layer, and
applies a frame-level or utterance-level head. :class:`FeatureUpstream` puts plain features (log-mel) behind the
same door, so a baseline uses the very same heads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.data.features import utterance_cmvn
from mmseq.nn.backbone import Features
from mmseq.nn.dropout import Dropout


class WeightedLayerSum(nn.Module):
    """``sum_l softmax(w)_l * h_l`` over hidden states ``h_l [B, T, D]``; ``w`` starts at zero (uniform).

    Args:
        num_layers: number of hidden states combined.
        normalize: layer-normalise each hidden state (no affine) before the sum (s3prl's ``normalize`` option).
    """

    def __init__(self, num_layers: int, normalize: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.normalize = normalize

    def forward(self, hidden_states: list[Tensor]) -> Tensor:
        if len(hidden_states) != self.weights.numel():
            raise ValueError(f"expected {self.weights.numel()} hidden states, got {len(hidden_states)}")
        stacked = torch.stack(hidden_states, dim=0)  # [L, B, T, D]
        if self.normalize:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = self.weights.softmax(0).to(stacked.dtype)
        return (weights.view(-1, 1, 1, 1) * stacked).sum(0)


def _mlp(dim: int, num_classes: int, hidden_dim: int, dropout: float) -> nn.Module:
    """Linear, or one hidden layer (Linear, ReLU, dropout, Linear) when ``hidden_dim`` > 0."""
    if hidden_dim <= 0:
        return nn.Linear(dim, num_classes)
    return nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), Dropout(dropout), nn.Linear(hidden_dim, num_classes))


class FrameClassifier(nn.Module):
    """Per-frame logits ``[B, T, C]`` from ``hidden [B, T, D]`` (TERA's ``phone_linear`` / ``phone_1hidden``).

    Args:
        dim: input width D.
        num_classes: C.
        hidden_dim: 0 for a linear head, else the width of one hidden layer.
        dropout: dropout after the hidden layer.
    """

    def __init__(self, dim: int, num_classes: int, hidden_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.net = _mlp(dim, num_classes, hidden_dim, dropout)

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        return self.net(hidden)


class UtteranceClassifier(nn.Module):
    """Utterance logits ``[B, C]`` from ``hidden [B, T, D]``.

    Linear head: mean over each row's valid frames, then ``Linear(D, C)``. One hidden layer: ``Linear(D, h)``, ReLU
    and dropout on every frame, then the mean over valid frames, then ``Linear(h, C)`` (the non-linearity comes
    before pooling, so features whose per-utterance mean carries nothing, such as CMVN-normalised log-mel, still
    give the head something to pool).

    Args: as :class:`FrameClassifier`.
    """

    def __init__(self, dim: int, num_classes: int, hidden_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.frame_layer = (nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), Dropout(dropout))
                            if hidden_dim > 0 else nn.Identity())
        self.output = nn.Linear(hidden_dim if hidden_dim > 0 else dim, num_classes)

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        hidden = self.frame_layer(hidden)
        valid = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
        pooled = (hidden * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return self.output(pooled)


class FeatureUpstream(nn.Module):
    """Plain features behind ``forward_features``: one "hidden state", the features themselves.

    Args:
        frontend: waveform ``[B, S]`` -> ``(frames [B, T, F], lengths)`` with ``output_dim`` and ``downsample_rate``
            (e.g. :class:`mmseq.data.features.TeraLogMel`).
    """

    def __init__(self, frontend: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.output_dim = frontend.output_dim
        self.num_hidden_states = 1

    def forward_features(self, x: Tensor, lengths: Tensor | None = None) -> Features:
        """Waveforms ``[B, S]`` through the front-end, or frames ``[B, T, F]`` as they are."""
        if x.dim() == 3:
            if lengths is None:
                lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
            return Features([x], lengths, self.frontend.downsample_rate)
        frames, lengths = self.frontend(x, lengths)
        return Features([frames], lengths, self.frontend.downsample_rate)


class UpstreamClassifier(nn.Module):
    """upstream ``forward_features`` -> weighted sum of layers (or one layer) -> head.

    Args:
        upstream: any module with ``forward_features(x, lengths) -> Features``.
        head: ``head(hidden [B, T, D], lengths [B]) -> logits``.
        num_hidden_states: how many hidden states the upstream returns (for the weighted sum).
        layer: use only this hidden state (an index into ``hidden_states``) instead of the weighted sum.
        freeze_upstream: no gradients into the upstream and keep it in eval mode (no dropout).
        normalize_layers: layer-normalise hidden states before the weighted sum.
        normalize_utterances: mean/variance-normalise every hidden state over each utterance's valid frames
            (per dimension, :func:`~mmseq.data.features.utterance_cmvn`), removing per-utterance offsets such as a
            speaker's; what utterance CMVN does to log-mel inputs, applied to every layer. Not in s3prl.
    """

    def __init__(self, upstream: nn.Module, head: nn.Module, num_hidden_states: int, layer: int | None = None,
                 freeze_upstream: bool = True, normalize_layers: bool = False, normalize_utterances: bool = False):
        super().__init__()
        self.upstream, self.head, self.layer = upstream, head, layer
        self.freeze_upstream = freeze_upstream
        self.normalize_utterances = normalize_utterances
        self.layer_sum = WeightedLayerSum(num_hidden_states, normalize_layers) if layer is None else None
        if freeze_upstream:
            self.upstream.requires_grad_(False)
            self.upstream.eval()

    def train(self, mode: bool = True) -> UpstreamClassifier:
        super().train(mode)
        if self.freeze_upstream:
            self.upstream.eval()
        return self

    def upstream_features(self, x: Tensor, lengths: Tensor | None = None) -> Features:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_upstream):
            features = self.upstream.forward_features(x, lengths)
        if self.normalize_utterances:
            states = [utterance_cmvn(h, features.lengths) for h in features.hidden_states]
            features = Features(states, features.lengths, features.downsample_rate)
        return features

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits (``[B, T, C]`` frame-level or ``[B, C]`` utterance-level) for waveforms or frames ``x``."""
        features = self.upstream_features(x, lengths)
        states = features.hidden_states
        hidden = states[self.layer] if self.layer_sum is None else self.layer_sum(states)
        return self.head(hidden, features.lengths)

    def output_lengths(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Frame lengths the head sees for these inputs (for frame-level targets)."""
        return self.upstream_features(x, lengths).lengths

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        """Waveforms of 0.2 s and 0.1 s (for the registry test)."""
        lengths = torch.tensor([3200] + [1600] * (batch_size - 1))[:batch_size]
        x = torch.randn(batch_size, 3200) * 0.1
        x[torch.arange(3200)[None, :] >= lengths[:, None]] = 0
        return {"x": x, "lengths": lengths}
