"""Multi-head attention on ``F.scaled_dot_product_attention`` with masks, an additive bias and a KV cache.

Conventions used across mmseq:
    * ``padding_mask``: bool ``[B, S]``, True where a position is padding (torch's key_padding_mask).
    * ``attn_mask``: bool ``[T, S]`` (True = may attend) or float ``[T, S]`` / ``[B, H, T, S]`` (added).
    * ``attn_bias``: float, broadcastable to ``[B, H, T, S]``, added to the scaled scores.
    * ``rel_pos_key``: ``[T, S, head_dim]`` Shaw-style relative position embeddings for the keys; the bias
      ``(q * scale) . rel_pos_key[t, s]`` is added to the scores of every head (SpeechT5's encoder).

SDPA picks its fastest kernel only when it gets no mask, so masks are built only when something needs one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.nn.dropout import dropout as mmseq_dropout
from mmseq.nn.linear import Linear


def lengths_to_padding_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """``lengths [B]`` -> bool ``[B, max_length]``, True at padding."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] >= lengths[:, None]


def padding_mask_or_none(lengths: Tensor, max_length: int) -> Tensor | None:
    """:func:`lengths_to_padding_mask`, or None when no row is padded (attention then needs no mask, and SDPA can
    take its fastest kernel)."""
    if bool((lengths == max_length).all()):
        return None
    return lengths_to_padding_mask(lengths, max_length)


class KVCache:
    """Keys and values of one attention layer for incremental decoding.

    Self-attention appends one step's K/V at a time into one buffer ``[2, B, H, capacity, head_dim]`` (keys,
    values) that grows by doubling, so a step costs a copy of the new entries only: one copy when they arrive
    stacked (:meth:`append_stacked`, the one-step path), two otherwise. Cross-attention K/V are computed from the
    encoder output once and kept as given (:meth:`set`). Tensors are ``[B, H, S, head_dim]``.
    """

    def __init__(self) -> None:
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self._kv: Tensor | None = None  # the appended-to buffer; _k and _v are its two halves
        self.length = 0
        # Anything derived from the stored keys/values (the one-step path's folded cross-attention,
        # mmseq.nn.incremental); cleared whenever they change.
        self.derived: object | None = None

    @property
    def keys(self) -> Tensor | None:
        if self._k is None or self.length == self._k.shape[2]:
            return self._k
        return self._k.narrow(2, 0, self.length)

    @property
    def values(self) -> Tensor | None:
        if self._v is None or self.length == self._v.shape[2]:
            return self._v
        return self._v.narrow(2, 0, self.length)

    def set(self, k: Tensor, v: Tensor) -> None:
        """Store K/V computed once (cross-attention)."""
        self._k, self._v, self._kv, self.length = k, v, None, k.shape[2]
        self.derived = None

    def _reserve(self, like: Tensor, steps: int) -> Tensor:
        """Room for ``steps`` more positions; returns the buffer's slice ``[2, B, H, steps, head_dim]`` for them."""
        new_len = self.length + steps
        if self._kv is None or new_len > self._kv.shape[3]:
            old = 0 if self._k is None else self._k.shape[2]
            capacity = max(new_len, 2 * old, 16)
            grown = like.new_empty(2, like.shape[0], like.shape[1], capacity, like.shape[3])
            if self._k is not None and self.length:
                grown[0, :, :, : self.length] = self._k[:, :, : self.length]
                grown[1, :, :, : self.length] = self._v[:, :, : self.length]
            self._kv, self._k, self._v = grown, grown[0], grown[1]
        slot = self._kv.narrow(3, self.length, steps)
        self.length = new_len
        self.derived = None
        return slot

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append new steps ``[B, H, t, D]``; returns all keys and values so far."""
        slot = self._reserve(k, k.shape[2])
        slot[0].copy_(k)
        slot[1].copy_(v)
        return self.keys, self.values

    def append_stacked(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Append new steps given as one tensor ``[2, B, H, t, D]`` (keys, values) with a single copy; returns
        all keys and values so far."""
        self._reserve(kv[0], kv.shape[3]).copy_(kv)
        return self.keys, self.values

    def select(self, index: Tensor) -> None:
        """Keep / reorder batch rows (beam search reordering, finished rows leaving the batch)."""
        if self._kv is not None:
            self._kv = self._kv.index_select(1, index)
            self._k, self._v = self._kv[0], self._kv[1]
        elif self._k is not None:
            self._k = self._k.index_select(0, index)
            self._v = self._v.index_select(0, index)
        self.derived = None


class MultiheadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (HF/fairseq parameter names).

    Args:
        embed_dim: model width D.
        num_heads: number of heads H; ``embed_dim`` must divide evenly.
        dropout: attention-probability dropout (training only).
        bias: whether the projections have biases.
        kdim / vdim: widths of key/value inputs when they differ from ``embed_dim`` (cross-attention).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout = dropout
        self.scaling = self.head_dim**-0.5
        self.q_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = Linear(kdim or embed_dim, embed_dim, bias=bias)
        self.v_proj = Linear(vdim or embed_dim, embed_dim, bias=bias)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        *,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        rel_pos_key: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        weight_heads: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key_value`` (itself when None: self-attention).

        Args:
            query: ``[B, T, D]``.
            key_value: ``[B, S, D_kv]`` for cross-attention; None for self-attention.
            padding_mask: ``[B, S]`` bool, True at padded keys (over the whole cached length when caching).
            attn_mask: bool ``[T, S]`` (True = attend) or float additive mask.
            attn_bias: float additive bias broadcastable to ``[B, H, T, S]``.
            rel_pos_key: ``[T, S, head_dim]`` relative position key embeddings (Shaw, key-only).
            is_causal: mask future keys; with a cache, query step t sits at position ``past + t``.
            cache: self-attention: new K/V are appended; cross-attention: K/V computed on the first call only.
            need_weights: also return the attention probabilities ``[B, H, T, S]`` (slower eager path).
            weight_heads: with ``need_weights``, return those of the first ``weight_heads`` heads only (``[B, k, T,
                S]``, e.g. for a guided attention loss): only they are computed explicitly, the other heads keep
                the SDPA kernel.

        Returns:
            ``(output [B, T, D], weights or None)``.
        """
        b, t, _ = query.shape
        q = self._heads(self.q_proj(query))
        past = 0
        if key_value is None:  # self-attention
            k, v = self._heads(self.k_proj(query)), self._heads(self.v_proj(query))
            if cache is not None:
                past = cache.length
                k, v = cache.append(k, v)
        elif cache is not None and cache.keys is not None:  # cross-attention, cached (maybe by the fused path)
            k, v = cache.keys.to(q.dtype), cache.values.to(q.dtype)
        else:
            k, v = self._heads(self.k_proj(key_value)), self._heads(self.v_proj(key_value))
            if cache is not None:
                cache.set(k, v)
        s = k.shape[2]

        if is_causal and t == 1 and key_value is None:
            is_causal = False  # one query at the newest position may see every key: nothing to mask
        bias = attn_bias
        if rel_pos_key is not None:
            # (q * scale) . r[t, s] for every head: [B, H, T, D] x [T, S, D] -> [B, H, T, S]
            rel = torch.einsum("bhtd,tsd->bhts", q * self.scaling, rel_pos_key.to(q.dtype))
            bias = rel if bias is None else bias + rel
        if attn_mask is not None and attn_mask.dtype != torch.bool:
            bias = attn_mask if bias is None else bias + attn_mask
            attn_mask = None
        if is_causal and (past > 0 or t != s or bias is not None or padding_mask is not None
                          or attn_mask is not None or need_weights):
            causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
            attn_mask = causal if attn_mask is None else attn_mask & causal
            is_causal = False
        keep = attn_mask  # bool, True = attend; broadcast to [B, H, T, S]
        if padding_mask is not None:
            keys_ok = ~padding_mask[:, None, None, :]
            keep = keys_ok if keep is None else keep & keys_ok
        mask = keep
        if bias is not None:
            bias = bias.to(q.dtype)
            # Fill (not add) masked positions so a large bias cannot overflow to -inf + inf.
            mask = bias if keep is None else bias.masked_fill(~keep, torch.finfo(q.dtype).min)

        dropout = self.dropout if self.training else 0.0
        # On the CPU, SDPA cannot differentiate a float mask in a fused kernel and falls back to a math path
        # that copies more than plain eager attention does (bench/attention.py measured it); with dropout it
        # takes the same math path but draws its mask with bernoulli_, several times slower than mmseq.nn.dropout
        # (bench/dropout.py).
        on_cpu = q.device.type == "cpu"
        eager = on_cpu and ((bias is not None and bias.requires_grad) or dropout > 0)
        split = (need_weights and not eager and weight_heads is not None and 0 < weight_heads < self.num_heads)
        if split:  # the first heads explicitly (their probabilities are wanted), the others through SDPA
            out, weights = _eager_attention(q[:, :weight_heads], k[:, :weight_heads], v[:, :weight_heads],
                                            _head_slice(mask, self.num_heads, 0, weight_heads), self.scaling,
                                            dropout)
            rest = F.scaled_dot_product_attention(
                q[:, weight_heads:], k[:, weight_heads:], v[:, weight_heads:],
                attn_mask=_head_slice(mask, self.num_heads, weight_heads, self.num_heads), dropout_p=dropout,
                is_causal=is_causal)
            out = torch.cat([out, rest], dim=1)
        elif need_weights or eager:
            out, weights = _eager_attention(q, k, v, mask, self.scaling, dropout)
            if need_weights and weight_heads is not None:
                weights = weights[:, :weight_heads]
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)
            weights = None
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return self.out_proj(out), weights


def _head_slice(mask: Tensor | None, num_heads: int, start: int, stop: int) -> Tensor | None:
    """The part of a mask (or bias) broadcastable to ``[B, H, T, S]`` that heads ``start:stop`` see."""
    if mask is None or mask.dim() < 4 or mask.shape[1] != num_heads:
        return mask  # the same for every head
    return mask[:, start:stop]


def _eager_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float,
                     dropout: float) -> tuple[Tensor, Tensor]:
    """Explicit softmax attention that also returns the probabilities (for alignments and guided losses)."""
    scores = torch.matmul(q * scale, k.transpose(-1, -2))  # scaling q costs T x D, not T x S
    if mask is not None:  # in place: the product's backward needs q and k, not its output
        scores = scores.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else scores.add_(mask)
    weights = scores.softmax(dim=-1)
    return torch.matmul(mmseq_dropout(weights, dropout, training=dropout > 0), v), weights
