"""One-step incremental decoding with little Python and dispatch overhead: the decoder's fast path.

Generating a token or a frame runs every decoder layer on one new position. At batch 1 each weight matrix is
multiplied by one vector, so the step is bound by how fast the weights stream from memory, and the module path
(about 25 small operators and several Python calls per layer) adds as much time again on a CPU. This path runs
the same arithmetic with fewer, larger operators:

* the self-attention q/k/v projections are one fused product (their weights concatenated once per generation
  call, when :class:`FusedDecoder` is built);
* a single row uses ``addmv`` (weights streamed once, bias fused), many rows ``addmm``;
* no masks are built unless rows carry padded positions (one query at the newest position sees every cached key;
  an unpadded memory needs none);
* at batch 1 with a short memory (heads x memory length <= width: a TTS text of up to 64 tokens in SpeechT5-base),
  cross-attention folds its query and output projections into the memory's keys and values once per generation
  call (:func:`fold_cross_attention`), so a step reads two ``[heads * S, D]`` matrices instead of two ``[D, D]``
  ones and runs no SDPA call; the output bias is folded in too, and the residual addition rides on the second
  product (``addmv`` with the residual as its input);
* the new keys and values go into the self-attention cache with one copy (:meth:`KVCache.append_stacked`);
* with reduced-precision weights on a CPU (:func:`mmseq.inference.set_precision`), the residual stream, layer
  norms and attention stay in fp32, which keeps the drift of long autoregressive outputs small, while the large
  matrices stream at half the bytes. A projection's input is rounded to the weights' dtype and its output (bias
  included) stays there: the feed-forward's hidden layer goes from one product to the next without a round trip,
  and the residual addition brings the sublayer's output back to fp32 as it adds (no separate cast). Rounding
  the output costs no accuracy that the next product's rounded input would not (``mv`` accumulates in fp32);
  attention runs in fp32 because CPU SDPA is several times slower in bf16/fp16 for one query.

Nothing switches this path on implicitly. The decode engine (:class:`StepDecoder`, used by :mod:`mmseq.generation`)
builds it on purpose, and only for a decoder made of the plain modules it knows (:func:`is_plain`): a wrapped,
hooked or subclassed layer (LoRA, adapters, forward hooks, weight parametrizations) makes the engine fall back to
the module path, :meth:`~mmseq.nn.transformer.TransformerDecoder.forward` with the cache, which stays the reference
(tests compare the two). Timings behind these choices: ``bench/README.md`` (SpeechT5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules import module as _module_hooks

from mmseq.nn.attention import KVCache, MultiheadAttention
from mmseq.nn.dropout import Dropout
from mmseq.nn.linear import Linear, compute_dtype, project
from mmseq.nn.transformer import DecoderCache, FeedForward, TransformerDecoder, TransformerDecoderLayer

# Below this many elements a reduced-precision matrix is upcast once per call for the one-step path (see _matrix).
_REDUCED_MIN_ELEMENTS = 1 << 20

# The modules the fused decoder step knows how to read. Exact classes: a subclass may change what forward does.
DECODER_MODULES = frozenset({TransformerDecoder, TransformerDecoderLayer, MultiheadAttention, FeedForward, Linear,
                             nn.Linear, nn.LayerNorm, Dropout, nn.ModuleList})


def is_plain(module: nn.Module, known: frozenset[type] | set[type]) -> bool:
    """True when ``module`` and every submodule is exactly one of the ``known`` classes and nothing hooks their
    forward (no module or global forward hooks): then a fast path that reads their weights directly computes what
    calling them would. Weight parametrizations change a module's class, so they make it not plain."""
    if _module_hooks._global_forward_hooks or _module_hooks._global_forward_pre_hooks:
        return False
    return all(type(m) in known and not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def _product(y: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One step's product: for one row in the weight's dtype (``y`` rounded to it; the output stays in it); for
    many rows in ``y``'s dtype (CPU bf16/fp16 matrix products are compute-bound and slow)."""
    if y.shape[0] == 1 or y.dtype == weight.dtype:
        return project(y.to(weight.dtype), weight, bias)
    return F.linear(y, weight.to(y.dtype), None if bias is None else bias.to(y.dtype))


def _matrix(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """A weight for the one-step path: reduced precision is kept only where it streams faster than ``dtype``.

    On a CPU without bf16/fp16 arithmetic a reduced-precision ``mv`` converts every element, which costs more
    than the bytes it saves below about a million elements (``python bench/matvec.py`` measures it on a machine);
    smaller matrices are upcast once per generation call.
    """
    weight = weight.detach()
    if weight.dtype != dtype and weight.device.type == "cpu" and weight.numel() < _REDUCED_MIN_ELEMENTS:
        return weight.to(dtype)
    return weight


def _param(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if t is None else t.detach().to(dtype)


def _cat_bias(*biases: Tensor | None) -> Tensor | None:
    if all(b is None for b in biases):
        return None
    return torch.cat([b if b is not None else torch.zeros_like(next(x for x in biases if x is not None))
                      for b in biases])


@dataclass
class _Norm:
    weight: Tensor | None
    bias: Tensor | None
    eps: float

    @classmethod
    def of(cls, ln, dtype: torch.dtype) -> _Norm:
        return cls(_param(ln.weight, dtype), _param(ln.bias, dtype), ln.eps)

    def __call__(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@dataclass
class _LayerWeights:
    qkv_w: Tensor
    qkv_b: Tensor | None
    out_w: Tensor
    out_b: Tensor | None
    cross_q_w: Tensor | None  # the cross-attention ones are None in a decoder-only trunk
    cross_q_b: Tensor | None
    cross_out_w: Tensor | None
    cross_out_b: Tensor | None
    fc1_w: Tensor
    fc1_b: Tensor | None
    fc2_w: Tensor
    fc2_b: Tensor | None
    self_norm: _Norm
    cross_norm: _Norm | None
    final_norm: _Norm
    activation: object


class FusedDecoderWeights:
    """The decoder's weights arranged for one-step decoding (built once per generation call).

    Weight matrices keep their dtype (fused q/k/v is a concatenated copy) except small reduced-precision ones on
    a CPU (:func:`_matrix`); each bias takes its matrix's dtype, layer-norm parameters the compute dtype (that of
    the residual stream).
    """

    def __init__(self, decoder: TransformerDecoder, dtype: torch.dtype):
        self.dtype = dtype
        self.norm_first = decoder.norm_first
        first = decoder.layers[0].self_attn
        self.num_heads, self.head_dim = first.num_heads, first.head_dim
        self.final_norm = None if decoder.layer_norm is None else _Norm.of(decoder.layer_norm, dtype)
        self.layers = []

        def product(weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
            weight = _matrix(weight, dtype)
            return weight, _param(bias, weight.dtype)

        for layer in decoder.layers:
            sa, ca, ff = layer.self_attn, layer.encoder_attn, layer.feed_forward
            qkv_w, qkv_b = product(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]),
                                   _cat_bias(sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias))
            out_w, out_b = product(sa.out_proj.weight, sa.out_proj.bias)
            cross_q_w = cross_q_b = cross_out_w = cross_out_b = cross_norm = None
            if ca is not None:
                cross_q_w, cross_q_b = product(ca.q_proj.weight, ca.q_proj.bias)
                cross_out_w, cross_out_b = product(ca.out_proj.weight, ca.out_proj.bias)
                cross_norm = _Norm.of(layer.encoder_attn_layer_norm, dtype)
            fc1_w, fc1_b = product(ff.intermediate_dense.weight, ff.intermediate_dense.bias)
            fc2_w, fc2_b = product(ff.output_dense.weight, ff.output_dense.bias)
            self.layers.append(_LayerWeights(
                qkv_w=qkv_w, qkv_b=qkv_b, out_w=out_w, out_b=out_b, cross_q_w=cross_q_w, cross_q_b=cross_q_b,
                cross_out_w=cross_out_w, cross_out_b=cross_out_b, fc1_w=fc1_w, fc1_b=fc1_b, fc2_w=fc2_w, fc2_b=fc2_b,
                self_norm=_Norm.of(layer.self_attn_layer_norm, dtype), cross_norm=cross_norm,
                final_norm=_Norm.of(layer.final_layer_norm, dtype), activation=ff.activation,
            ))


def fold_cross_attention(keys: Tensor, values: Tensor, lw: _LayerWeights, padding_mask: Tensor | None
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """One layer's cross-attention for a single row with its query and output projections folded into the memory.

    With ``keys``/``values`` ``[1, H, S, hd]`` of the memory, the scaled score of head h at memory position s for
    an input y is ``K[h, s] . (Wq_h y + bq_h) / sqrt(hd)`` = ``score_w[(h, s)] . y + score_b[(h, s)]``, and the
    output is ``Wo (concat_h sum_s p[h, s] V[h, s]) + bo`` = ``value_w @ p`` with column (h, s) of ``value_w``
    equal to ``Wo_h V[h, s] + bo / H``: each head's probabilities sum to 1, so the bias comes out whole (padded
    positions have probability 0). Returns ``score_w [H*S, D]``, ``score_b [H*S]`` (-inf at padded positions of
    ``padding_mask [1, S]``) and ``value_w [D, H*S]``, in the keys' dtype.
    """
    _, h, s, hd = keys.shape
    k, v, dtype = keys[0], values[0], keys.dtype
    scale = hd**-0.5
    d = h * hd
    score_w = torch.bmm(k, lw.cross_q_w.to(dtype).view(h, hd, d)).mul_(scale).view(h * s, d)
    if lw.cross_q_b is None:
        score_b = k.new_zeros(h * s)
    else:
        score_b = torch.bmm(k, lw.cross_q_b.to(dtype).view(h, hd, 1)).mul_(scale).view(h * s)
    if padding_mask is not None:
        score_b = score_b.masked_fill(padding_mask[0].repeat(h), float("-inf"))
    per_head_out = lw.cross_out_w.to(dtype).view(d, h, hd).transpose(0, 1)  # [H, D, hd]
    value_w = torch.bmm(per_head_out, v.transpose(1, 2)).permute(1, 0, 2).reshape(d, h * s)
    if lw.cross_out_b is not None:
        value_w.add_(lw.cross_out_b.to(dtype)[:, None], alpha=1.0 / h)
    return score_w, score_b, value_w


def _folded(cache, lw: _LayerWeights, padding_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor] | None:
    """The folded cross-attention of a one-row cross cache when it reads fewer bytes than the projections, built
    on first use and kept on the cache (:attr:`KVCache.derived`, cleared when its keys/values change)."""
    if cache.derived is None:
        # heads * length <= width (= heads * head_dim): the folded matrices are no larger than the projections
        short = cache.keys.shape[2] <= cache.keys.shape[3]
        cache.derived = fold_cross_attention(cache.keys, cache.values, lw, padding_mask) if short else False
    return cache.derived or None


def decode_step(weights: FusedDecoderWeights, x: Tensor, self_caches: list[KVCache],
                cross_caches: list[KVCache] | None, memory_padding_mask: Tensor | None,
                self_padding_mask: Tensor | None = None) -> Tensor:
    """Run every layer on one new position ``x [B, D]`` (compute dtype); appends to the self-attention caches.

    ``cross_caches`` hold the keys/values of the memory (None: no memory, the cross-attention sublayer is
    skipped, as the module path does); ``memory_padding_mask [B, S]`` is True at padding. ``self_padding_mask
    [B, past + 1]`` is True at cached positions a row must not attend to (a shorter prompt's padding in a batch);
    None: every cached position counts.
    """
    b = x.shape[0]
    h, hd = weights.num_heads, weights.head_dim
    d = h * hd
    cd = x.dtype
    keep = None if memory_padding_mask is None else ~memory_padding_mask[:, None, None, :]
    keep_self = None if self_padding_mask is None else ~self_padding_mask[:, None, None, :]
    for i, (lw, self_cache) in enumerate(zip(weights.layers, self_caches)):
        # self-attention over the cache plus the new position (no causal mask: it is the newest)
        y = lw.self_norm(x) if weights.norm_first else x
        qkv = _product(y, lw.qkv_w, lw.qkv_b).to(cd).view(b, 3, h, 1, hd)
        k, v = self_cache.append_stacked(qkv[:, 1:].transpose(0, 1))
        if k.dtype != cd:  # filled by the module path in another dtype
            k, v = k.to(cd), v.to(cd)
        a = F.scaled_dot_product_attention(qkv[:, 0], k, v, attn_mask=keep_self).view(b, d)
        a = _product(a, lw.out_w, lw.out_b)
        x = x + a if weights.norm_first else lw.self_norm(x + a)  # the addition promotes a to x's dtype
        if cross_caches is not None:  # cross-attention to the memory
            y = lw.cross_norm(x) if weights.norm_first else x
            cross = cross_caches[i]
            folded = _folded(cross, lw, memory_padding_mask) if b == 1 and cross.keys.dtype == cd else None
            if folded is not None:  # the residual addition rides on the second product
                score_w, score_b, value_w = folded
                p = torch.softmax(torch.addmv(score_b, score_w, y.view(-1)).view(h, -1), -1)
                x = torch.addmv(x.view(-1), value_w, p.view(-1)).view(1, d)
                x = x if weights.norm_first else lw.cross_norm(x)
            else:
                q = _product(y, lw.cross_q_w, lw.cross_q_b).to(cd).view(b, h, 1, hd)
                k, v = cross.keys, cross.values
                if k.dtype != cd:
                    k, v = k.to(cd), v.to(cd)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).view(b, d)
                a = _product(a, lw.cross_out_w, lw.cross_out_b)
                x = x + a if weights.norm_first else lw.cross_norm(x + a)
        # feed-forward: the hidden layer stays in the weights' dtype between its two products
        y = lw.final_norm(x) if weights.norm_first else x
        f = _product(lw.activation(_product(y, lw.fc1_w, lw.fc1_b)), lw.fc2_w, lw.fc2_b)
        x = x + f if weights.norm_first else lw.final_norm(x + f)
    if weights.final_norm is not None:
        x = weights.final_norm(x)
    return x


class StepDecoder:
    """Runs a :class:`~mmseq.nn.transformer.TransformerDecoder` one new position at a time for one generation call.

    With ``fast=True`` and a decoder of plain modules (:func:`is_plain`), steps in eval mode without gradients run
    through :func:`decode_step` on weights fused once here; otherwise, and whenever the decoder is training or
    gradients are on, through the decoder's own ``forward`` with the cache (the reference path). Build one per
    generation call: the fused weights are a copy, taken on the first fused step.

    Args:
        decoder: the decoder stack.
        fast: allow the fused path.
    """

    def __init__(self, decoder: TransformerDecoder, fast: bool = True):
        self.decoder = decoder
        self.fast = fast and is_plain(decoder, DECODER_MODULES)
        self._fused: FusedDecoderWeights | None = None

    @property
    def uses_fused_path(self) -> bool:
        return self.fast and not self.decoder.training and not torch.is_grad_enabled()

    def __call__(self, x: Tensor, cache: DecoderCache, memory: Tensor | None = None,
                 memory_padding_mask: Tensor | None = None, self_padding_mask: Tensor | None = None) -> Tensor:
        """One new position ``x [B, 1, D]`` -> ``[B, 1, D]`` in x's dtype. ``self_padding_mask [B, past + 1]`` is
        True at cached positions to ignore (None: none)."""
        if not self.uses_fused_path:
            return self.decoder(x, self_padding_mask, memory, memory_padding_mask, cache=cache).last_hidden_state
        dtype = compute_dtype(x, self.decoder.weight_dtype)
        if self._fused is None or self._fused.dtype != dtype:
            self._fused = FusedDecoderWeights(self.decoder, dtype)
        if memory is not None and cache.cross_attn[0].keys is None:
            self.decoder.fill_cross_cache(cache, memory)
        cross = None if memory is None else cache.cross_attn
        out = decode_step(self._fused, x[:, 0].to(dtype), cache.self_attn, cross, memory_padding_mask,
                          self_padding_mask)
        return out.to(x.dtype)[:, None]
