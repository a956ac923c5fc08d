"""Classifier post-nets: utterance-level (pooled) and frame-level logits from hidden states.

* :class:`ClassifierPostnet` -- masked mean pooling (or the first step) then a linear layer (SpeechT5 SID).
* :class:`FrameClassifier` -- logits per frame (TERA's ``phone_linear`` / ``phone_1hidden`` probes).
* :class:`UtteranceClassifier` -- an optional per-frame hidden layer, mean pooling, a linear layer (SUPERB-style
  utterance probes: speaker, intent).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.nn.dropout import Dropout


def masked_mean(hidden: Tensor, lengths: Tensor) -> Tensor:
    """Mean of ``hidden [B, T, D]`` over each row's ``lengths`` valid steps -> ``[B, D]``."""
    valid = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
    return (hidden * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)


class ClassifierPostnet(nn.Module):
    """``hidden [B, T, D]`` + ``lengths [B]`` -> logits ``[B, num_classes]``.

    Args:
        dim: input width D.
        num_classes: output classes.
        pooling: ``"mean"`` over valid steps, or ``"first"`` (a class token at step 0).
        hidden_dim: when set, a hidden layer (Linear, ReLU) after pooling, before the output layer.
        dropout: dropout before the output layer.
    """

    modality = "classes"

    def __init__(self, dim: int, num_classes: int, pooling: str = "mean", hidden_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if pooling not in ("mean", "first"):
            raise ValueError(f"pooling must be 'mean' or 'first', got {pooling!r}")
        self.pooling = pooling
        self.hidden = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU()) if hidden_dim else nn.Identity()
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(hidden_dim or dim, num_classes)

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        pooled = hidden[:, 0] if self.pooling == "first" else masked_mean(hidden, lengths)
        return self.output(self.dropout(self.hidden(pooled)))


def _mlp(dim: int, num_classes: int, hidden_dim: int, dropout: float) -> nn.Module:
    """Linear, or one hidden layer (Linear, ReLU, dropout, Linear) when ``hidden_dim`` > 0."""
    if hidden_dim <= 0:
        return nn.Linear(dim, num_classes)
    return nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), Dropout(dropout), nn.Linear(hidden_dim, num_classes))


class FrameClassifier(nn.Module):
    """Per-frame logits ``[B, T, C]`` from ``hidden [B, T, D]``.

    Args:
        dim: input width D.
        num_classes: C.
        hidden_dim: 0 for a linear head, else the width of one hidden layer.
        dropout: dropout after the hidden layer.
    """

    modality = "frame_classes"

    def __init__(self, dim: int, num_classes: int, hidden_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.net = _mlp(dim, num_classes, hidden_dim, dropout)

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.net(hidden)


class UtteranceClassifier(nn.Module):
    """Utterance logits ``[B, C]`` from ``hidden [B, T, D]``.

    Linear head: mean over each row's valid frames, then ``Linear(D, C)``. One hidden layer: ``Linear(D, h)``, ReLU
    and dropout on every frame, then the mean over valid frames, then ``Linear(h, C)`` (the non-linearity comes
    before pooling, so features whose per-utterance mean carries nothing, such as CMVN-normalised log-mel, still
    give the head something to pool).

    Args: as :class:`FrameClassifier`.
    """

    modality = "classes"

    def __init__(self, dim: int, num_classes: int, hidden_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.frame_layer = (nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), Dropout(dropout))
                            if hidden_dim > 0 else nn.Identity())
        self.output = nn.Linear(hidden_dim if hidden_dim > 0 else dim, num_classes)

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        return self.output(masked_mean(self.frame_layer(hidden), lengths))
