"""Benchmark: TERA forward (every layer's hidden states) in mmseq against s3prl's model code, same weights.

s3prl's ``upstream/mockingjay/model.py`` (``TransformerModel``, random weights, eval mode) is written to an s3prl
checkpoint and loaded with ``mmseq.load``, so both sides hold identical weights. Each call encodes one zero-padded
batch of log-mel frames with lengths and returns all hidden states: s3prl as its upstream does it (``builder.
process_input_data``: lengths from non-zero frames, a 0/1 attention mask, positions from its sinusoid table, then
``TransformerModel(..., output_all_encoded_layers=True)``); mmseq through the TERA model's ``forward_features``. Times
are medians over ``--repeats`` runs that alternate between the two, under ``torch.inference_mode``; the last
column is the largest difference between the two outputs over valid frames.

    python bench/tera_vs_s3prl.py [--repeats 7] [--threads 2] [--variant base]

Needs s3prl's model code: ``pip install --no-deps s3prl``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mmseq
from timing import machine_line  # bench/timing.py

SIZES = {
    "base": {"hidden_size": 768, "num_hidden_layers": 3, "num_attention_heads": 12, "intermediate_size": 3072},
    "slim": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 8, "intermediate_size": 768},
}


def s3prl_file(relative: str, name: str):
    spec = importlib.util.find_spec("s3prl")
    if spec is None:
        sys.exit("s3prl is not installed: pip install --no-deps s3prl")
    root = Path(list(spec.submodule_search_locations)[0])
    module_spec = importlib.util.spec_from_file_location(name, root / relative)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def build_pair(variant: str):
    """s3prl TransformerModel with random weights, and the mmseq model loaded from its checkpoint."""
    model_py = s3prl_file("upstream/mockingjay/model.py", "s3prl_mockingjay_model")
    task_py = s3prl_file("pretrain/mockingjay/task.py", "s3prl_mockingjay_task")
    transformer_cfg = {"input_dim": -1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                       "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                       "share_layer": False, "pre_layer_norm": False, **SIZES[variant]}
    torch.manual_seed(0)
    config = model_py.TransformerConfig(transformer_cfg)
    theirs = model_py.TransformerModel(config, 80).eval()
    head = model_py.TransformerSpecPredictionHead(config, 80)
    states = {"Transformer": theirs.state_dict(), "SpecHead": head.state_dict(), "Config": {}, "Step": 0,
              "Args": argparse.Namespace(),
              "Upstream_Config": {"transformer": transformer_cfg, "task": {"sequence_length": 0}}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "states.ckpt"
        torch.save(states, path)
        ours = mmseq.load(path).eval()
    return theirs, task_py, ours


def make_batch(batch_size: int, min_frames: int, max_frames: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_frames, max_frames + 1, (batch_size,), generator=g)
    lengths[0] = max_frames
    frames = torch.randn(batch_size, max_frames, 80, generator=g)
    frames[torch.arange(max_frames)[None, :] >= lengths[:, None]] = 0
    return frames, lengths


def s3prl_forward(model, task_py, frames: torch.Tensor) -> list[torch.Tensor]:
    """s3prl upstream's ``process_input_data`` + ``TransformerModel`` forward."""
    spec_len = (frames.sum(dim=-1) != 0).long().sum(dim=-1).tolist()
    batch_size, seq_len = frames.shape[:2]
    pos_enc = task_py.fast_position_encoding(seq_len, model.config.hidden_size)
    attn_mask = np.ones((batch_size, seq_len))
    for idx in range(batch_size):
        attn_mask[idx][spec_len[idx]:] = 0
    pos_enc = pos_enc.to(dtype=torch.float32).expand(batch_size, *pos_enc.size())
    attn_mask = torch.FloatTensor(attn_mask)
    return model(frames, pos_enc, attn_mask, output_all_encoded_layers=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=sorted(SIZES), default="base")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    theirs, task_py, ours = build_pair(args.variant)
    task_py.get_sinusoid_table(SIZES[args.variant]["hidden_size"])  # s3prl's table is built once and cached
    print(f"{machine_line()}; TERA {args.variant}; median of {args.repeats} runs")
    print()
    print("| batch | frames (max) | padding | s3prl (ms) | mmseq (ms) | speed-up (s3prl / mmseq) | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch_size, min_frames, max_frames in ((1, 500, 500), (8, 300, 800), (8, 1500, 1500), (16, 200, 1500)):
        frames, lengths = make_batch(batch_size, min_frames, max_frames, seed=batch_size + max_frames)
        with torch.inference_mode():
            ref = s3prl_forward(theirs, task_py, frames)
            got = ours.forward_features(frames, lengths).hidden_states
            valid = torch.arange(frames.shape[1])[None, :] < lengths[:, None]
            diff = max((a - b).abs()[valid].max().item() for a, b in zip(got, ref, strict=True))
            t_s3prl, t_mmseq = [], []
            for _ in range(args.repeats):
                t_s3prl.append(timed(lambda: s3prl_forward(theirs, task_py, frames)))
                t_mmseq.append(timed(lambda: ours.forward_features(frames, lengths)))
        a, b = statistics.median(t_s3prl), statistics.median(t_mmseq)
        padding = 1 - lengths.sum().item() / (batch_size * max_frames)
        print(f"| {batch_size} | {max_frames} | {padding:.0%} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f}x | "
              f"{diff:.1e} |")


if __name__ == "__main__":
    main()
