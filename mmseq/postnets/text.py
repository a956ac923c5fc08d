"""Text post-nets: a language-model head (optionally tied to an embedding) and a CTC head."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.nn.dropout import Dropout
from mmseq.nn.linear import Linear


class LMHead(nn.Module):
    """``hidden [B, T, D]`` -> logits ``[B, T, vocab]``; with ``tie_to`` the weight is that embedding's."""

    modality = "text"

    def __init__(self, dim: int, vocab_size: int, tie_to: nn.Embedding | None = None, bias: bool = False):
        super().__init__()
        self.vocab_size = vocab_size
        self.lm_head = Linear(dim, vocab_size, bias=bias)
        if tie_to is not None:
            self.lm_head.weight = tie_to.weight

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.lm_head(hidden)


class CTCHead(nn.Module):
    """Frame-level log-probabilities for CTC: ``[B, T, D]`` -> ``[B, T, vocab]`` (log-softmax)."""

    modality = "text"

    def __init__(self, dim: int, vocab_size: int, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.dropout = Dropout(dropout)
        self.proj = Linear(dim, vocab_size)

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        return F.log_softmax(self.proj(self.dropout(hidden)).float(), dim=-1)
