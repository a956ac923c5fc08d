"""One-step incremental decoding with little Python and dispatch overhead.

Generating a token or a frame runs every decoder layer on one new position. At batch 1 each weight matrix is
multiplied by one vector, so the step is bound by how fast the weights stream from memory, and the module path
(about 25 small operators and several Python calls per layer) adds as much time again on a CPU. This path runs
the same arithmetic with fewer, larger operators:

* the self-attention q/k/v projections are one fused product (their weights concatenated once per generation
  call, when the :class:`~mmseq.nn.transformer.DecoderCache` is first used);
* a single row uses ``addmv`` (weights streamed once, bias fused), many rows ``addmm``;
* no masks are built (one query at the newest position sees every cached key; an unpadded memory needs none);
* with reduced-precision weights on a CPU (:func:`mmseq.inference.set_precision`), activations, layer norms and
  attention stay in fp32 and only the weight products run in the weights' dtype, which keeps the drift of long
  autoregressive outputs small while the weights stream at half the bytes.

:meth:`TransformerDecoder.forward` takes this path for one new step in eval mode without gradients; the module
path remains the reference (tests compare the two).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_REDUCED = (torch.bfloat16, torch.float16)


def compute_dtype(x: Tensor, weight_dtype: torch.dtype) -> torch.dtype:
    """fp32 for reduced-precision weights on a CPU (no native bf16/fp16 arithmetic there); else the input's."""
    if x.device.type == "cpu" and weight_dtype in _REDUCED:
        return torch.float32
    return x.dtype


def project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x [N, in] @ weight.T + bias``; ``x`` and ``bias`` in the compute dtype, ``weight`` in its own.

    One row streams the weights once (``mv``); with reduced-precision weights on a CPU the row is rounded to the
    weights' dtype and the product returned in the compute dtype. Many rows with reduced-precision CPU weights
    use an fp32 copy of the weights (CPU bf16/fp16 matrix products are compute-bound and slow there).
    """
    if weight.dtype == x.dtype:
        if x.shape[0] == 1:
            y = torch.mv(weight, x.view(-1)) if bias is None else torch.addmv(bias, weight, x.view(-1))
            return y.view(1, -1)
        return F.linear(x, weight, bias)
    if x.shape[0] == 1:
        y = torch.mv(weight, x.view(-1).to(weight.dtype)).to(x.dtype).view(1, -1)
        return y if bias is None else y.add_(bias)
    return F.linear(x, weight.to(x.dtype), bias)


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
    cross_q_w: Tensor
    cross_q_b: Tensor | None
    cross_out_w: Tensor
    cross_out_b: Tensor | None
    fc1_w: Tensor
    fc1_b: Tensor | None
    fc2_w: Tensor
    fc2_b: Tensor | None
    self_norm: _Norm
    cross_norm: _Norm
    final_norm: _Norm
    activation: object


class FusedDecoderWeights:
    """The decoder's weights arranged for one-step decoding (built once per generation call).

    Weight matrices keep their dtype (fused q/k/v is a concatenated copy); biases and layer-norm parameters are
    cast to the compute dtype.
    """

    def __init__(self, decoder, dtype: torch.dtype):
        self.dtype = dtype
        self.norm_first = decoder.norm_first
        first = decoder.layers[0].self_attn
        self.num_heads, self.head_dim = first.num_heads, first.head_dim
        self.final_norm = None if decoder.layer_norm is None else _Norm.of(decoder.layer_norm, dtype)
        self.layers = []
        for layer in decoder.layers:
            sa, ca, ff = layer.self_attn, layer.encoder_attn, layer.feed_forward
            self.layers.append(_LayerWeights(
                qkv_w=torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]).detach(),
                qkv_b=_param(_cat_bias(sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias), dtype),
                out_w=sa.out_proj.weight.detach(), out_b=_param(sa.out_proj.bias, dtype),
                cross_q_w=ca.q_proj.weight.detach(), cross_q_b=_param(ca.q_proj.bias, dtype),
                cross_out_w=ca.out_proj.weight.detach(), cross_out_b=_param(ca.out_proj.bias, dtype),
                fc1_w=ff.intermediate_dense.weight.detach(), fc1_b=_param(ff.intermediate_dense.bias, dtype),
                fc2_w=ff.output_dense.weight.detach(), fc2_b=_param(ff.output_dense.bias, dtype),
                self_norm=_Norm.of(layer.self_attn_layer_norm, dtype),
                cross_norm=_Norm.of(layer.encoder_attn_layer_norm, dtype),
                final_norm=_Norm.of(layer.final_layer_norm, dtype),
                activation=ff.activation,
            ))


def cross_keys_values(decoder, memory: Tensor, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
    """Cross-attention keys and values ``[B, H, S, head_dim]`` of every layer, in the compute dtype."""
    b, s, _ = memory.shape
    mem = memory.to(dtype).reshape(b * s, -1)
    out = []
    for layer in decoder.layers:
        attn = layer.encoder_attn
        k = project(mem, attn.k_proj.weight, _param(attn.k_proj.bias, dtype))
        v = project(mem, attn.v_proj.weight, _param(attn.v_proj.bias, dtype))
        out.append(tuple(t.view(b, s, attn.num_heads, attn.head_dim).transpose(1, 2) for t in (k, v)))
    return out


def decode_step(weights: FusedDecoderWeights, x: Tensor, self_caches, cross_caches,
                memory_padding_mask: Tensor | None) -> Tensor:
    """Run every layer on one new position ``x [B, D]`` (compute dtype); appends to the self-attention caches.

    ``cross_caches`` hold the keys/values of the memory (None: no memory, the cross-attention sublayer is
    skipped, as the module path does); ``memory_padding_mask [B, S]`` is True at padding.
    """
    b = x.shape[0]
    h, hd = weights.num_heads, weights.head_dim
    d = h * hd
    keep = None if memory_padding_mask is None else ~memory_padding_mask[:, None, None, :]
    for i, (lw, self_cache) in enumerate(zip(weights.layers, self_caches)):
        # self-attention over the cache plus the new position (no mask: it is the newest)
        y = lw.self_norm(x) if weights.norm_first else x
        qkv = project(y, lw.qkv_w, lw.qkv_b).view(b, 3, h, 1, hd)
        k, v = self_cache.append(qkv[:, 1], qkv[:, 2])
        if k.dtype != x.dtype:  # filled by the module path in another dtype
            k, v = k.to(x.dtype), v.to(x.dtype)
        a = F.scaled_dot_product_attention(qkv[:, 0], k, v).view(b, d)
        a = project(a, lw.out_w, lw.out_b)
        x = x + a if weights.norm_first else lw.self_norm(x + a)
        if cross_caches is not None:  # cross-attention to the memory
            y = lw.cross_norm(x) if weights.norm_first else x
            q = project(y, lw.cross_q_w, lw.cross_q_b).view(b, h, 1, hd)
            k, v = cross_caches[i].keys, cross_caches[i].values
            if k.dtype != x.dtype:
                k, v = k.to(x.dtype), v.to(x.dtype)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).view(b, d)
            a = project(a, lw.cross_out_w, lw.cross_out_b)
            x = x + a if weights.norm_first else lw.cross_norm(x + a)
        # feed-forward
        y = lw.final_norm(x) if weights.norm_first else x
        f = project(lw.activation(project(y, lw.fc1_w, lw.fc1_b)), lw.fc2_w, lw.fc2_b)
        x = x + f if weights.norm_first else lw.final_norm(x + f)
    if weights.final_norm is not None:
        x = weights.final_norm(x)
    return x
