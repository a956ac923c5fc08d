"""Batch-1 matrix-vector products in fp32, bf16 and fp16 on this CPU: why mmseq's one-step decoding keeps small
matrices in fp32 and adds bf16 biases separately.

One decoding step at batch 1 multiplies every weight matrix by one vector. On a CPU without native bf16/fp16
arithmetic torch's reduced-precision ``mv`` converts every element, so it pays off only for large matrices
(``mmseq.nn.incremental._matrix`` keeps matrices under 2^20 elements in fp32 when the decoder is reduced), and
``addmv`` in bf16 costs more than ``mv`` plus an add (``mmseq.nn.linear.project``). Shapes: the speech decoder
pre-net's first layer (256 x 80), SpeechT5-base's attention projections (768 x 768), its feed-forward (3072 x 768)
and fused q/k/v (2304 x 768). Each product is timed in turn with the others, median of ``--repeats``, in µs.

    python bench/matvec.py [--repeats 300] [--threads N]
"""

from __future__ import annotations

import argparse

import torch

from timing import machine_line, median_times  # bench/timing.py

SHAPES = [(256, 80), (768, 768), (2304, 768), (3072, 768)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_line()}; median of {args.repeats}, µs per product\n")
    print("| shape | fp32 mv | bf16 mv | fp16 mv | bf16 addmv | bf16 mv + add | bf16 / fp32 | fp16 / fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for rows, cols in SHAPES:
            w = {n: torch.randn(rows, cols).to(d) for n, d in DTYPES.items()}
            x = {n: torch.randn(cols).to(d) for n, d in DTYPES.items()}
            bias = torch.randn(rows).to(torch.bfloat16)
            cases = [lambda n=n: torch.mv(w[n], x[n]) for n in DTYPES]
            cases += [lambda: torch.addmv(bias, w["bf16"], x["bf16"]), lambda: torch.mv(w["bf16"], x["bf16"]).add_(bias)]
            t = [1e6 * s for s in median_times(cases, args.repeats)]
            print(f"| {rows} x {cols} | {t[0]:.1f} | {t[1]:.1f} | {t[2]:.1f} | {t[3]:.1f} | {t[4]:.1f} | "
                  f"{t[1] / t[0]:.2f} | {t[2] / t[0]:.2f} |")


if __name__ == "__main__":
    main()
