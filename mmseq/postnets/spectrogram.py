"""Spectrogram reconstruction post-net (TERA's / Mockingjay's ``SpecHead``) and the reconstruction loss."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.nn.transformer import ACTIVATIONS


class SpectrogramPredictionHead(nn.Module):
    """``Linear(D, D) -> activation -> LayerNorm -> Linear(D, F)``: predict feature frames from encoder states.

    Args:
        dim: encoder width D.
        output_dim: predicted feature size F.
        activation: name in :data:`mmseq.nn.transformer.ACTIVATIONS` (TERA: ``"gelu"``, the erf form).
        layer_norm_eps: epsilon of the layer norm (TERA: 1e-12).
    """

    modality = "frames"

    def __init__(self, dim: int, output_dim: int, activation: str = "gelu", layer_norm_eps: float = 1e-12):
        super().__init__()
        self.output_dim = output_dim
        self.dense = nn.Linear(dim, dim)
        self.activation = ACTIVATIONS[activation]
        self.layer_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.output = nn.Linear(dim, output_dim)

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``hidden [B, T, D]`` -> predicted frames ``[B, T, F]`` (``lengths`` is accepted for the contract)."""
        return self.output(self.layer_norm(self.activation(self.dense(hidden))))


def masked_reconstruction_loss(prediction: Tensor, target: Tensor, mask: Tensor, kind: str = "l1") -> Tensor:
    """Mean L1 (or squared) error over the positions where ``mask`` is True, as TERA scores its alterations.

    Every selected element counts once, so utterances with more altered positions weigh more (s3prl's
    ``L1Loss()(pred.masked_select(mask), target.masked_select(mask))``). With no selected position the loss is
    0 (and still part of the graph), instead of s3prl's assertion.

    Args:
        prediction: ``[B, T, F]``.
        target: ``[B, T, F]`` clean features.
        mask: bool ``[B, T, F]``, True where the loss counts.
        kind: ``"l1"`` or ``"mse"``.
    """
    if kind not in ("l1", "mse"):
        raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
    error = (prediction.float() - target.float()).abs() if kind == "l1" else (prediction.float() - target.float()) ** 2
    count = mask.sum()
    total = torch.where(mask, error, torch.zeros_like(error)).sum()
    return total / count.clamp(min=1)


def reconstruction_error(prediction: Tensor, target: Tensor, mask: Tensor) -> float:
    """Mean absolute error over the masked positions, as a Python float (for metrics)."""
    return F.l1_loss(prediction.float()[mask], target.float()[mask]).item() if bool(mask.any()) else 0.0
