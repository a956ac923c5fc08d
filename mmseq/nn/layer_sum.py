"""A learnable softmax-weighted sum of hidden states (SUPERB / s3prl's featurizer): how a downstream head reads
every layer of an upstream encoder."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


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
