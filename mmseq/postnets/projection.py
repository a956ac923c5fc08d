"""Projection heads for contrastive losses on pooled encodings (COCONUT's NSPT and MM losses).

:class:`ProjectionHeads` holds two MLPs, ``audio`` (on the mean-pooled encoder output) and ``text`` (on the
mean-pooled token embeddings of a transcript), each ``Linear(D, D) -> ReLU -> Linear(D, P)`` as SimCLR's head, on
its own input width ``D`` (the encoder's for audio, the decoder's token embeddings' for text, which may differ);
the losses normalise their outputs. They are trained with the model and saved with it, and are not used by
generation.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from mmseq.postnets.classifier import masked_mean


def _mlp(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))


class ProjectionHeads(nn.Module):
    """``audio(hidden, lengths)`` and ``text(embeddings, lengths)``: ``[B, T, D]`` -> pooled -> ``[B, P]``."""

    def __init__(self, dim: int, projection_dim: int, text_dim: int | None = None) -> None:
        """``dim``: the encoder width; ``text_dim``: the token embeddings' width (None: ``dim``)."""
        super().__init__()
        if projection_dim <= 0:
            raise ValueError(f"projection_dim must be positive, got {projection_dim}")
        self.audio_head, self.text_head = _mlp(dim, projection_dim), _mlp(text_dim or dim, projection_dim)
        self.projection_dim = projection_dim

    def audio(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        return self.audio_head(masked_mean(hidden, lengths))

    def text(self, embeddings: Tensor, lengths: Tensor) -> Tensor:
        return self.text_head(masked_mean(embeddings, lengths))
