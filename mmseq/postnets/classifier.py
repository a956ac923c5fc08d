"""Sequence classifier post-net: masked mean pooling (or the first token) then a linear layer."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.nn.dropout import Dropout


class ClassifierPostnet(nn.Module):
    """``hidden [B, T, D]`` + ``lengths [B]`` -> logits ``[B, num_classes]``.

    Args:
        dim: input width D.
        num_classes: output classes.
        pooling: ``"mean"`` over valid steps, or ``"first"`` (a class token at step 0).
        hidden_dim: when set, a hidden layer (Linear, ReLU) before the output layer.
        dropout: dropout before the output layer.
    """

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
        if self.pooling == "first":
            pooled = hidden[:, 0]
        else:
            valid = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
            pooled = (hidden * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return self.output(self.dropout(self.hidden(pooled)))
