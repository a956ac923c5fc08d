import math

import pytest
import torch

from mmseq.nn.attention import KVCache, MultiheadAttention
from mmseq.nn.positional import RelativePositionalEncoding


def naive_attention(mha, query, key_value, padding_mask=None, causal=False, bias=None, rel=None):
    """Softmax attention written out by hand, as the reference."""
    b, t, d = query.shape
    kv = query if key_value is None else key_value
    h, hd = mha.num_heads, mha.head_dim
    q = mha.q_proj(query).view(b, t, h, hd).transpose(1, 2)
    k = mha.k_proj(kv).view(b, -1, h, hd).transpose(1, 2)
    v = mha.v_proj(kv).view(b, -1, h, hd).transpose(1, 2)
    scores = (q / math.sqrt(hd)) @ k.transpose(-1, -2)
    if rel is not None:
        for i in range(t):
            for j in range(k.shape[2]):
                scores[:, :, i, j] += (q[:, :, i] / math.sqrt(hd)) @ rel[i, j]
    if bias is not None:
        scores = scores + bias
    if causal:
        scores = scores.masked_fill(torch.ones(t, k.shape[2]).triu(1).bool(), float("-inf"))
    if padding_mask is not None:
        scores = scores.masked_fill(padding_mask[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ v
    return mha.out_proj(out.transpose(1, 2).reshape(b, t, d))


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiheadAttention(16, 4).eval()


def test_sdpa_equals_naive_with_padding_causal_and_bias(mha):
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True
    pad[2, 3:] = True
    bias = torch.randn(3, 4, 7, 7)
    for kw in [{}, {"padding_mask": pad}, {"is_causal": True}, {"attn_bias": bias},
               {"padding_mask": pad, "is_causal": True, "attn_bias": bias}]:
        ours = mha(x, **kw)[0]
        ref = naive_attention(mha, x, None, kw.get("padding_mask"), kw.get("is_causal", False), kw.get("attn_bias"))
        valid = ~pad if "padding_mask" in kw else torch.ones(3, 7, dtype=torch.bool)
        # Padded query rows are not compared: their values are unused downstream.
        torch.testing.assert_close(ours[valid], ref[valid], atol=1e-5, rtol=1e-5, msg=str(kw.keys()))


def test_relative_position_bias_equals_naive(mha):
    x = torch.randn(2, 9, 16)
    rel = RelativePositionalEncoding(4, max_distance=3)(9)
    torch.testing.assert_close(mha(x, rel_pos_key=rel)[0], naive_attention(mha, x, None, rel=rel), atol=1e-5,
                               rtol=1e-5)


def test_relative_positions_are_clipped():
    enc = RelativePositionalEncoding(4, max_distance=3)
    r = enc(10)
    torch.testing.assert_close(r[0, 9], enc.pe_k.weight[0])  # distance -9 clipped to -3 -> row 0
    torch.testing.assert_close(r[9, 0], enc.pe_k.weight[5])  # distance +9 clipped to +2 -> row 5
    torch.testing.assert_close(r[4, 4], enc.pe_k.weight[3])


def test_cross_attention_and_float_mask(mha):
    q, mem = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    float_mask = torch.randn(4, 6)
    ours = mha(q, mem, padding_mask=pad, attn_mask=float_mask)[0]
    torch.testing.assert_close(ours, naive_attention(mha, q, mem, pad, bias=float_mask), atol=1e-5, rtol=1e-5)


def test_need_weights_returns_probabilities(mha):
    x = torch.randn(2, 5, 16)
    out, w = mha(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(out, mha(x, is_causal=True)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))
    assert (w[..., 0, 1:] == 0).all()  # causal


def test_kv_cache_steps_equal_full_causal(mha):
    x = torch.randn(2, 40, 16)  # longer than the initial buffer, so the cache grows
    full = mha(x, is_causal=True)[0]
    cache = KVCache()
    steps = [mha(x[:, i : i + 1], is_causal=True, cache=cache)[0] for i in range(40)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    # A multi-step chunk after a cached prefix is causal with the right offset.
    cache = KVCache()
    a = mha(x[:, :10], is_causal=True, cache=cache)[0]
    b = mha(x[:, 10:], is_causal=True, cache=cache)[0]
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=1e-5)


def test_cache_select_reorders_rows(mha):
    x = torch.randn(3, 4, 16)
    cache = KVCache()
    mha(x, is_causal=True, cache=cache)
    cache.select(torch.tensor([2, 0]))
    nxt = torch.randn(2, 1, 16)
    got = mha(nxt, is_causal=True, cache=cache)[0]
    ref = mha(torch.cat([x[[2, 0]], nxt], 1), is_causal=True)[0][:, -1:]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
