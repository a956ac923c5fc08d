"""Benchmark: batched SpeechT5 log-mel (mmseq) against per-file librosa on the same audio.

Both compute 16 kHz, n_fft 1024, hop 256, periodic Hann, centred reflect padding, magnitude, 80 Slaney mel bands
80-7600 Hz, ``log10(max(1e-10, mel))``. mmseq takes one zero-padded batch with lengths; librosa is called once per
utterance (its usual use). Times are medians of ``--repeats`` runs, measured in the same process; both sides
run on one core by default (torch threads and numpy's BLAS threads) and runs alternate between the two. The
last column checks that both compute the same features.

    python bench/features.py [--repeats 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

# numpy's BLAS (librosa's mel projection) gets one thread, like torch below, unless the caller says otherwise.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


import librosa
import numpy as np
import torch

from mmseq.data.features import SpeechT5LogMel
from timing import machine_line, median_times  # bench/timing.py


def make_batch(batch_size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(rng.uniform(3.0, 8.0) * 16000))).astype(np.float32)
            for _ in range(batch_size)]


def librosa_log_mel(wave: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=wave, sr=16000, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=True,
        pad_mode="reflect", power=1.0, n_mels=80, fmin=80, fmax=7600, htk=False, norm="slaney")
    return np.log10(np.maximum(1e-10, mel)).T  # [frames, 80]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: librosa runs on one core, and on a shared machine "
                             "a busy core stalls every multi-threaded op)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    extractor = SpeechT5LogMel()
    one_pass = SpeechT5LogMel(chunk_frames=None)  # whole padded batch at once (the non-CPU path)
    print(f"{machine_line()}, librosa {librosa.__version__}; median of {args.repeats} runs")
    print("| batch | audio (s) | mmseq batched (ms) | mmseq one pass (ms) | librosa per file (ms) | speed-up "
          "(librosa / mmseq) | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch_size in (1, 8, 32):
        waves = make_batch(batch_size, seed=batch_size)
        lengths = torch.tensor([len(w) for w in waves])
        padded = torch.zeros(batch_size, int(lengths.max()))
        for i, w in enumerate(waves):
            padded[i, : len(w)] = torch.from_numpy(w)

        def ours():
            with torch.inference_mode():
                return extractor(padded, lengths)

        def ours_one_pass():
            with torch.inference_mode():
                return one_pass(padded, lengths)

        def theirs():
            return [librosa_log_mel(w) for w in waves]

        mel, frames = ours()
        reference = theirs()
        diff = max(float(np.abs(mel[i, : frames[i]].numpy() - r).max()) for i, r in enumerate(reference))
        t_ours, t_one_pass, t_theirs = median_times([ours, ours_one_pass, theirs], args.repeats)
        print(f"| {batch_size} | {sum(len(w) for w in waves) / 16000:.1f} | {t_ours * 1e3:.1f} | "
              f"{t_one_pass * 1e3:.1f} | {t_theirs * 1e3:.1f} | {t_theirs / t_ours:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
