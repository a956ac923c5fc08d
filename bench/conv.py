"""mmseq's time-major convolution (``mmseq.nn.conv``) against ``torch.nn.functional.conv1d`` on the layers of the
wav2vec 2.0 / SpeechT5 feature encoder, forward and forward+backward, on the same weights and inputs.

Each side gets its natural layout (conv1d channel-major ``[B, C, T]``, mmseq time-major ``[B, T, C]``); the
transposes are not timed. Ratios are conv1d time / mmseq time (> 1: mmseq is faster); the last column is the
largest difference of the forward outputs.

Usage: python bench/conv.py [--batch 2] [--seconds 4] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from mmseq.nn.conv import conv1d_time_major
from timing import machine_line, median_time  # bench/timing.py

# (kernel, stride) of layers 2..7 of the feature encoder; 512 channels in and out
LAYERS = [(3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_line()}; batch {args.batch} x {args.seconds:g} s of 16 kHz audio; median of {args.repeats}\n")
    print("| layer | input steps | conv1d fwd ms | mmseq fwd ms | fwd speed-up | conv1d fwd+bwd ms | mmseq fwd+bwd ms "
          "| fwd+bwd speed-up | max abs diff |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    steps = (int(16000 * args.seconds) - 10) // 5 + 1  # after the first layer (kernel 10, stride 5)
    for i, (kernel, stride) in enumerate(LAYERS, start=2):
        w = (torch.randn(512, 512, kernel, generator=g) / (512 * kernel) ** 0.5).requires_grad_()
        x_cm = torch.randn(args.batch, 512, steps, generator=g).requires_grad_()
        x_tm = x_cm.detach().transpose(1, 2).contiguous().requires_grad_()
        with torch.no_grad():
            diff = (F.conv1d(x_cm, w, stride=stride).transpose(1, 2) - conv1d_time_major(x_tm, w, None, stride)).abs()
            ref_fwd = median_time(lambda: F.conv1d(x_cm, w, stride=stride), args.repeats)
            ours_fwd = median_time(lambda: conv1d_time_major(x_tm, w, None, stride), args.repeats)
        ref_both = median_time(lambda: F.conv1d(x_cm, w, stride=stride).sum().backward(), args.repeats)
        ours_both = median_time(lambda: conv1d_time_major(x_tm, w, None, stride).sum().backward(), args.repeats)
        print(f"| {i} (k{kernel}, s{stride}) | {steps} | {1e3 * ref_fwd:.1f} | {1e3 * ours_fwd:.1f} | "
              f"{ref_fwd / ours_fwd:.2f}x | {1e3 * ref_both:.1f} | {1e3 * ours_both:.1f} | {ref_both / ours_both:.2f}x "
              f"| {diff.max().item():.1e} |")
        steps = (steps - kernel) // stride + 1


if __name__ == "__main__":
    main()
