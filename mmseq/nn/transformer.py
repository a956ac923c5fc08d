"""Transformer encoder and decoder stacks, post-LN (SpeechT5 base / HF layout) or pre-LN (large, modern).

Parameter names follow HF SpeechT5 (``attention``, ``feed_forward.intermediate_dense``, ``final_layer_norm``,
``self_attn``, ``encoder_attn`` ...) so checkpoint key maps stay short.

Layer norm placement:
    * post-LN: ``x = LN(x + Sublayer(x))``; the stack normalises its *input* once (``layer_norm``).
    * pre-LN:  ``x = x + Sublayer(LN(x))``; the stack normalises its *output* once (``layer_norm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmseq.nn.attention import KVCache, MultiheadAttention
from mmseq.nn.dropout import Dropout
from mmseq.nn.linear import Linear, compute_dtype, project
from mmseq.nn.positional import RelativePositionalEncoding

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu, "tanh": torch.tanh}


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, activation: str = "gelu", activation_dropout: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        self.intermediate_dense = Linear(dim, ffn_dim)
        self.intermediate_dropout = Dropout(activation_dropout)
        self.output_dense = Linear(ffn_dim, dim)
        self.output_dropout = Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        x = self.intermediate_dropout(self.activation(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


@dataclass
class LayerSpec:
    """Sizes and regularisation shared by every layer of a stack (plain typed arguments, no config objects)."""

    dim: int
    num_heads: int
    ffn_dim: int
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    activation: str = "gelu"
    norm_first: bool = False
    layer_norm_eps: float = 1e-5


class TransformerEncoderLayer(nn.Module):
    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.norm_first = spec.norm_first
        self.attention = MultiheadAttention(spec.dim, spec.num_heads, dropout=spec.attention_dropout)
        self.dropout = Dropout(spec.dropout)
        self.layer_norm = nn.LayerNorm(spec.dim, eps=spec.layer_norm_eps)
        self.feed_forward = FeedForward(spec.dim, spec.ffn_dim, spec.activation, spec.activation_dropout,
                                        spec.dropout)
        self.final_layer_norm = nn.LayerNorm(spec.dim, eps=spec.layer_norm_eps)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, rel_pos_key: Tensor | None = None,
                attn_bias: Tensor | None = None) -> Tensor:
        """``x [B, T, D]``, ``padding_mask [B, T]`` (True = pad) -> ``[B, T, D]``."""
        kw = dict(padding_mask=padding_mask, rel_pos_key=rel_pos_key, attn_bias=attn_bias)
        if self.norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), **kw)[0])
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, **kw)[0]))
        return self.final_layer_norm(x + self.feed_forward(x))


@dataclass
class EncoderOutput:
    """``last_hidden_state [B, T, D]``; ``hidden_states``: the stack's input then every layer's output
    (when requested); ``padding_mask [B, T]``."""

    last_hidden_state: Tensor
    padding_mask: Tensor | None = None
    hidden_states: list[Tensor] = field(default_factory=list)


def _layerdrop_keep(num_layers: int, p: float, training: bool) -> list[bool]:
    if not training or p <= 0:
        return [True] * num_layers
    return (torch.rand(num_layers) >= p).tolist()


class TransformerEncoder(nn.Module):
    """A stack of encoder layers with optional relative position bias, layerdrop and activation checkpointing.

    Args:
        spec: per-layer sizes.
        num_layers: depth.
        layerdrop: probability of skipping each layer while training.
        relative_position_distance: when set, add a Shaw key-only relative position bias clipped at this
            distance (computed once per forward, shared by all layers and heads).
        input_dropout: dropout on the stack's input (after its layer norm in post-LN).
        gradient_checkpointing: recompute layer activations in backward to save memory.
    """

    def __init__(self, spec: LayerSpec, num_layers: int, layerdrop: float = 0.0,
                 relative_position_distance: int | None = None, input_dropout: float | None = None,
                 gradient_checkpointing: bool = False):
        super().__init__()
        self.norm_first, self.layerdrop = spec.norm_first, layerdrop
        self.gradient_checkpointing = gradient_checkpointing
        self.dim = spec.dim
        self.layer_norm = nn.LayerNorm(spec.dim, eps=spec.layer_norm_eps)
        self.dropout = Dropout(spec.dropout if input_dropout is None else input_dropout)
        self.layers = nn.ModuleList(TransformerEncoderLayer(spec) for _ in range(num_layers))
        self.embed_positions = (
            RelativePositionalEncoding(spec.dim // spec.num_heads, relative_position_distance)
            if relative_position_distance else None
        )

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, output_hidden_states: bool = False,
                attn_bias: Tensor | None = None) -> EncoderOutput:
        """Encode ``x [B, T, D]``; ``padding_mask [B, T]`` is True at padding."""
        if not self.norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        rel = self.embed_positions(x.shape[1]) if self.embed_positions is not None else None
        hidden = [x] if output_hidden_states else []
        for layer, keep in zip(self.layers, _layerdrop_keep(len(self.layers), self.layerdrop, self.training)):
            if keep:
                if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                    x = checkpoint(layer, x, padding_mask, rel, attn_bias, use_reentrant=False)
                else:
                    x = layer(x, padding_mask, rel, attn_bias)
            if output_hidden_states:
                hidden.append(x)
        if self.norm_first:
            x = self.layer_norm(x)
            if output_hidden_states:
                hidden[-1] = x
        return EncoderOutput(x, padding_mask, hidden)


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to a memory (unless ``cross_attention=False``: a decoder-only
    trunk), feed-forward."""

    def __init__(self, spec: LayerSpec, encoder_dim: int | None = None, cross_attention: bool = True):
        super().__init__()
        self.norm_first = spec.norm_first
        eps = spec.layer_norm_eps
        self.self_attn = MultiheadAttention(spec.dim, spec.num_heads, dropout=spec.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(spec.dim, eps=eps)
        self.encoder_attn = self.encoder_attn_layer_norm = None
        if cross_attention:
            self.encoder_attn = MultiheadAttention(spec.dim, spec.num_heads, dropout=spec.attention_dropout,
                                                   kdim=encoder_dim, vdim=encoder_dim)
            self.encoder_attn_layer_norm = nn.LayerNorm(spec.dim, eps=eps)
        self.dropout = Dropout(spec.dropout)
        self.feed_forward = FeedForward(spec.dim, spec.ffn_dim, spec.activation, spec.activation_dropout,
                                        spec.dropout)
        self.final_layer_norm = nn.LayerNorm(spec.dim, eps=eps)

    def forward(self, x: Tensor, padding_mask: Tensor | None, memory: Tensor | None,
                memory_padding_mask: Tensor | None, self_cache: KVCache | None = None,
                cross_cache: KVCache | None = None, need_weights: bool = False,
                weight_heads: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Returns ``(x [B, T, D], cross-attention weights [B, H, T, S] or None)``; with ``weight_heads``, the
        weights of the first ``weight_heads`` heads only (``[B, k, T, S]``, the others not computed explicitly)."""
        if memory is not None and self.encoder_attn is None:
            raise ValueError("this decoder has no cross-attention (a decoder-only trunk): pass memory=None")
        self_kw = dict(padding_mask=padding_mask, is_causal=True, cache=self_cache)
        cross_kw = dict(padding_mask=memory_padding_mask, cache=cross_cache, need_weights=need_weights,
                        weight_heads=weight_heads)
        weights = None
        if self.norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), **self_kw)[0])
            if memory is not None:
                out, weights = self.encoder_attn(self.encoder_attn_layer_norm(x), memory, **cross_kw)
                x = x + self.dropout(out)
            return x + self.feed_forward(self.final_layer_norm(x)), weights
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, **self_kw)[0]))
        if memory is not None:
            out, weights = self.encoder_attn(x, memory, **cross_kw)
            x = self.encoder_attn_layer_norm(x + self.dropout(out))
        return self.final_layer_norm(x + self.feed_forward(x)), weights


class DecoderCache:
    """Per-layer self- and cross-attention caches; :attr:`length` = steps decoded so far."""

    def __init__(self, num_layers: int):
        self.self_attn = [KVCache() for _ in range(num_layers)]
        self.cross_attn = [KVCache() for _ in range(num_layers)]

    @property
    def length(self) -> int:
        return self.self_attn[0].length

    def select(self, index: Tensor, cross: bool = True) -> None:
        """Keep / reorder batch rows in every layer (beam search, finished rows leaving the batch).

        ``cross=False`` leaves the cross-attention keys/values alone: right when every row moves to a row with
        the same encoder output, as beam search reordering the beams of one utterance does (those caches are
        the largest, ``[B, H, S, head_dim]`` per layer).
        """
        for c in self.self_attn + self.cross_attn if cross else self.self_attn:
            c.select(index)


@dataclass
class DecoderOutput:
    last_hidden_state: Tensor
    hidden_states: list[Tensor] = field(default_factory=list)
    cross_attentions: list[Tensor] = field(default_factory=list)


class TransformerDecoder(nn.Module):
    """A stack of causal decoder layers with cross-attention to an encoder output (none in a decoder-only trunk,
    ``cross_attention=False``), and an incremental cache.

    With a :class:`DecoderCache`, feed only the new steps: self-attention keys/values of earlier steps are taken
    from the cache, and cross-attention keys/values are computed from ``memory`` on the first call only.
    The self-attention padding mask, when given with a cache, must cover all steps so far (past + new).
    This is the module path, the reference; :mod:`mmseq.nn.incremental` runs the same arithmetic one position at
    a time with fewer operators, for generation.
    """

    def __init__(self, spec: LayerSpec, num_layers: int, layerdrop: float = 0.0, encoder_dim: int | None = None,
                 gradient_checkpointing: bool = False, cross_attention: bool = True):
        super().__init__()
        self.norm_first, self.layerdrop = spec.norm_first, layerdrop
        self.gradient_checkpointing = gradient_checkpointing
        self.dim = spec.dim
        self.cross_attention = cross_attention
        self.layers = nn.ModuleList(TransformerDecoderLayer(spec, encoder_dim, cross_attention)
                                    for _ in range(num_layers))
        # Pre-LN stacks end with a layer norm; post-LN stacks (SpeechT5 base) have none.
        self.layer_norm = nn.LayerNorm(spec.dim, eps=spec.layer_norm_eps) if spec.norm_first else None

    def new_cache(self) -> DecoderCache:
        return DecoderCache(len(self.layers))

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.layers[0].self_attn.q_proj.weight.dtype

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, memory: Tensor | None = None,
                memory_padding_mask: Tensor | None = None, cache: DecoderCache | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                attention_heads: int | None = None) -> DecoderOutput:
        """Decode ``x [B, T, D]`` against ``memory [B, S, D_enc]`` (None in a decoder-only trunk).

        Args:
            padding_mask: ``[B, T]`` (``[B, past + T]`` with a cache), True at padding.
            memory_padding_mask: ``[B, S]``, True at padded encoder steps.
            cache: incremental-decoding state, updated in place.
            output_attentions: return every run layer's cross-attention probabilities (``cross_attentions``;
                a layer skipped by layerdrop has none).
            attention_heads: with ``output_attentions``, those of the first ``attention_heads`` heads only
                (``[B, k, T, S]``); only they are computed explicitly (a guided attention loss).
        """
        in_dtype, weight_dtype = x.dtype, self.weight_dtype
        if in_dtype != weight_dtype and in_dtype.is_floating_point:  # pre-nets kept in fp32 (set_precision)
            x = x.to(weight_dtype)
            memory = None if memory is None else memory.to(weight_dtype)
        hidden = [x] if output_hidden_states else []
        attentions = []
        keep = _layerdrop_keep(len(self.layers), self.layerdrop if cache is None else 0.0, self.training)
        for i, layer in enumerate(self.layers):
            if not keep[i]:
                if output_hidden_states:
                    hidden.append(x)
                continue
            self_cache = cache.self_attn[i] if cache is not None else None
            cross_cache = cache.cross_attn[i] if cache is not None else None
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and cache is None:
                x, w = checkpoint(layer, x, padding_mask, memory, memory_padding_mask, None, None,
                                  output_attentions, attention_heads, use_reentrant=False)
            else:
                x, w = layer(x, padding_mask, memory, memory_padding_mask, self_cache, cross_cache,
                             output_attentions, attention_heads)
            if output_hidden_states:
                hidden.append(x)
            if output_attentions:
                attentions.append(w)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            if output_hidden_states:
                hidden[-1] = x
        return DecoderOutput(x.to(in_dtype), hidden, attentions)

    def fill_cross_cache(self, cache: DecoderCache, memory: Tensor) -> None:
        """Compute every layer's cross-attention keys and values ``[B, H, S, head_dim]`` from ``memory [B, S,
        D_enc]`` into ``cache``, in the compute dtype (fp32 for a reduced-precision decoder on a CPU).

        Decoding does this on its first step; beam search calls it on the B distinct encoder outputs and then
        repeats the cache rows per beam (``cache.select``), so the projections run once per utterance.
        """
        dtype = compute_dtype(memory, self.weight_dtype)
        b, s, _ = memory.shape
        mem = memory.to(dtype).reshape(b * s, -1)
        for kv_cache, layer in zip(cache.cross_attn, self.layers):
            attn = layer.encoder_attn
            k, v = (project(mem, p.weight, None if p.bias is None else p.bias.detach().to(dtype))
                    .view(b, s, attn.num_heads, attn.head_dim).transpose(1, 2) for p in (attn.k_proj, attn.v_proj))
            kv_cache.set(k, v)
