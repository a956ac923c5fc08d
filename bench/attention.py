"""Attention forward+backward: mmseq's SDPA path against eager softmax attention on the same weights.

Peers, each given the same q/k/v/out projection weights:
  * naive  -- explicit ``softmax(q k^T / sqrt(d) + mask) v`` in plain torch ops;
  * hf     -- transformers' ``SpeechT5Attention`` (eager; the relative-position case is SpeechT5's encoder).

Prints the median time of several runs per shape and the ratios peer / mmseq (> 1 means mmseq is faster), and
checks that all three agree. Usage: ``python bench/attention.py [--repeats 7] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import math

import torch

from mmseq.nn.attention import MultiheadAttention
from mmseq.nn.positional import RelativePositionalEncoding
from timing import machine_line, median_time  # bench/timing.py

SHAPES = [  # (batch, length, dim, heads, relative positions)
    (8, 100, 768, 12, False),
    (8, 100, 768, 12, True),
    (4, 400, 768, 12, False),
    (4, 400, 768, 12, True),
    (32, 40, 256, 4, False),
]


def naive(mha: MultiheadAttention, x, padding_mask, rel):
    b, t, d = x.shape
    h, hd = mha.num_heads, mha.head_dim
    q = mha.q_proj(x).view(b, t, h, hd).transpose(1, 2) / math.sqrt(hd)
    k = mha.k_proj(x).view(b, t, h, hd).transpose(1, 2)
    v = mha.v_proj(x).view(b, t, h, hd).transpose(1, 2)
    scores = q @ k.transpose(-1, -2)
    if rel is not None:
        scores = scores + torch.einsum("bhtd,tsd->bhts", q, rel)
    scores = scores.masked_fill(padding_mask[:, None, None, :], float("-inf"))
    return mha.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from transformers.models.speecht5.modeling_speecht5 import SpeechT5Attention

    device = torch.device(args.device)
    print(f"{machine_line(str(device))}; forward+backward, median of {args.repeats}")
    header = f"{'B':>3} {'T':>4} {'D':>4} {'H':>3} {'rel':>4} | {'mmseq ms':>9} {'naive ms':>9} {'hf ms':>9} | " \
             f"{'naive/mmseq':>11} {'hf/mmseq':>9} | max|diff|"
    print(header)
    print("-" * len(header))
    for b, t, d, h, use_rel in SHAPES:
        torch.manual_seed(0)
        ours = MultiheadAttention(d, h).to(device)
        hf = SpeechT5Attention(d, h).to(device)
        hf.load_state_dict(ours.state_dict())
        x = torch.randn(b, t, d, device=device, requires_grad=True)
        lengths = torch.randint(t // 2, t + 1, (b,), device=device)
        lengths[0] = t
        pad = torch.arange(t, device=device)[None, :] >= lengths[:, None]
        rel = RelativePositionalEncoding(d // h, 160).to(device)(t).detach() if use_rel else None
        additive = torch.zeros(b, 1, t, t, device=device).masked_fill(pad[:, None, None, :], torch.finfo(x.dtype).min)

        runs = {
            "mmseq": lambda: ours(x, padding_mask=pad, rel_pos_key=rel)[0],
            "naive": lambda: naive(ours, x, pad, rel),
            "hf": lambda: hf(x, attention_mask=additive, position_bias=rel)[0],
        }
        outs = {k: f().detach() for k, f in runs.items()}
        valid = ~pad
        diff = max((outs[k] - outs["mmseq"])[valid].abs().max().item() for k in ("naive", "hf"))

        def fwd_bwd(f):
            def step():
                x.grad = None
                f().sum().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            return step

        ms = {k: 1e3 * median_time(fwd_bwd(f), args.repeats) for k, f in runs.items()}
        print(f"{b:>3} {t:>4} {d:>4} {h:>3} {str(use_rel):>4} | {ms['mmseq']:>9.2f} {ms['naive']:>9.2f} "
              f"{ms['hf']:>9.2f} | {ms['naive'] / ms['mmseq']:>11.2f} {ms['hf'] / ms['mmseq']:>9.2f} | {diff:.1e}")


if __name__ == "__main__":
    main()
