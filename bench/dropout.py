"""mmseq's dropout (``mmseq.nn.dropout``) against ``torch.nn.functional.dropout`` on the CPU, forward+backward, on
the tensors a training step drops: attention probabilities and hidden states of a TERA-sized and a base-sized
encoder. Ratios are F.dropout time / mmseq time (> 1: mmseq is faster); the last column is the fraction of
zeros in one more mmseq output.

Usage: python bench/dropout.py [--p 0.1] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from mmseq.nn.dropout import dropout
from timing import machine_line, median_time  # bench/timing.py

SHAPES = [
    ("attention probs, TERA 3 heads, 8 x 400 frames", (8, 3, 400, 400)),
    ("attention probs, base 12 heads, 4 x 200 frames", (4, 12, 200, 200)),
    ("hidden states 8 x 400 x 192", (8, 400, 192)),
    ("FFN activations 8 x 400 x 3072", (8, 400, 3072)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_line()}; p = {args.p}; median of {args.repeats}\n")
    print("| tensor | elements | F.dropout fwd+bwd ms | mmseq fwd+bwd ms | speed-up | mmseq drop rate |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, shape in SHAPES:
        x = torch.randn(shape, requires_grad=True)
        grad = torch.randn(shape)
        ref = median_time(lambda: F.dropout(x, args.p).backward(grad), args.repeats)
        ours = median_time(lambda: dropout(x, args.p).backward(grad), args.repeats)
        with torch.no_grad():
            rate = (dropout(x, args.p) == 0).float().mean().item()
        print(f"| {name} | {x.numel():,} | {1e3 * ref:.2f} | {1e3 * ours:.2f} | {ref / ours:.2f}x | {rate:.4f} |")


if __name__ == "__main__":
    main()
