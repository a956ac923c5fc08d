"""Token pre-nets: embedding plus a positional encoding, for encoder inputs and (incremental) decoder inputs."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.errors import InputError
from mmseq.nn.dropout import Dropout
from mmseq.nn.positional import ScaledPositionalEncoding, SinusoidalPositionalEmbedding, make_positions


class TokenPrenet(nn.Module):
    """``Embedding`` (optionally scaled by sqrt(D)) + positions + dropout.

    Args:
        vocab_size: number of token ids.
        dim: output width.
        padding_idx: id of the padding token (its embedding is zero and gets no gradient).
        positions: ``"sinusoidal"`` (fairseq, counted from ``padding_idx + 1``), ``"scaled"`` (ESPnet,
            learnable alpha) or ``"none"``.
        scale_embedding: multiply embeddings by sqrt(dim) before adding positions.
        dropout: dropout on the output.
        max_positions: positions the model was built for (tables grow beyond it on demand, but a trained model
            has never seen those positions; long inputs should be split, see ``mmseq.inference``).
    """

    downsample_rate = 1
    modality = "text"

    def __init__(self, vocab_size: int, dim: int, padding_idx: int = 1, positions: str = "sinusoidal",
                 scale_embedding: bool = False, dropout: float = 0.0, max_positions: int = 1024):
        super().__init__()
        if positions not in ("sinusoidal", "scaled", "none"):
            raise ValueError(f"positions must be 'sinusoidal', 'scaled' or 'none', got {positions!r}")
        self.output_dim, self.vocab_size, self.padding_idx = dim, vocab_size, padding_idx
        self.max_positions = max_positions
        self.embed_tokens = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        # Unit-scale rows after sqrt(dim) scaling, and small logits when an LM head is tied to them.
        nn.init.normal_(self.embed_tokens.weight, std=dim**-0.5)
        with torch.no_grad():
            self.embed_tokens.weight[padding_idx].zero_()
        self.embed_scale = math.sqrt(dim) if scale_embedding else 1.0
        self.positions = positions
        if positions == "sinusoidal":
            self.embed_positions = SinusoidalPositionalEmbedding(dim, padding_idx, max_positions + padding_idx + 1)
        elif positions == "scaled":
            self.encode_positions = ScaledPositionalEncoding(dim, max_len=max_positions)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None,
                offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        """``tokens [B, L]`` (long) -> ``([B, L, dim], lengths [B])``; ``offset`` = positions before these tokens
        (steps already decoded, a prefix), one for the batch or one per row (``[B]``)."""
        if tokens.dtype != torch.long or tokens.dim() != 2:
            raise InputError(f"token ids must be a long tensor [batch, length], got {tokens.dtype} "
                             f"{list(tokens.shape)}")
        if lengths is None:
            lengths = tokens.ne(self.padding_idx).sum(dim=1)
        x = self.embed_tokens(tokens) * self.embed_scale
        if self.positions == "sinusoidal":
            padding = torch.arange(tokens.shape[1], device=tokens.device)[None, :] >= lengths[:, None]
            past = offset[:, None] if isinstance(offset, Tensor) else offset
            x = x + self.embed_positions(make_positions(padding, self.padding_idx, past)).to(x.dtype)
        elif self.positions == "scaled":
            x = self.encode_positions(x, offset)
        return self.dropout(x), lengths

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(0)
        lengths = torch.tensor([7 - (i % 3) for i in range(batch_size)])
        tokens = torch.randint(self.padding_idx + 1, self.vocab_size, (batch_size, 7), generator=g)
        tokens[torch.arange(7)[None, :] >= lengths[:, None]] = self.padding_idx
        return tokens, lengths
