"""One continual stream's wall time: a frozen upstream's frames cached and the teacher run once per batch, against
the plain path that runs the upstream for every item it reads and the teacher once for every term that needs it.

The stream is COCONUT's (`strategy.name=coconut`, NSPT + MM) with audio-KD (weight 1) added from the second task
on, so two of a batch's terms read the teacher's outputs; the model is the synthetic FSC-6 recipe's
(`recipes/coconut/configs/synth_fsc6.yaml`: 3 x 128 encoder on frames stacked 4 to a step, 2 x 128 decoder) on the
hidden states of a frozen TERA (3 x 192, `runs/tera/pretrain/best` when it exists, else the same architecture
with random weights, which costs the same). Each configuration runs the same stream from scratch, in this process,
one after the other:

* plain: `task_args.cache_upstream=false` (TERA runs on every item read: training batches, validation, the test
  rows, the memory) and a teacher that computes its outputs twice per batch, as one call per term would;
* cached, teacher twice: frames computed once per utterance (the cost of that first pass is in the time: the
  disk and memory caches are cleared before the run), the teacher as above;
* cached: what `mmseq continual run` does;
* cached, warm: the same again with the disk cache of the previous run (every stream of a table after the first).

With one thread the CPU time is the work done, steadier than the wall time when other jobs share the cores.

    python bench/continual.py [--corpus data/synth_speech/slu] [--tasks 2] [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import mmseq
import mmseq.tasks.slu as slu
from mmseq.data import feature_cache
import mmseq.train.continual as continual
from mmseq.train.continual import load_continual_config, run_stream

from timing import machine_line  # bench/timing.py

CONFIG = "recipes/coconut/configs/synth_fsc6.yaml"


class TwiceTeacher(torch.nn.Module):
    """A teacher that computes its outputs twice per call (the plain path's one call per term)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.projection_heads = getattr(inner, "projection_heads", None)

    def forward(self, *args, **kwargs):
        self.inner(*args, **kwargs)
        return self.inner(*args, **kwargs)


def upstream_checkpoint(tmp: Path) -> str:
    trained = Path("runs/tera/pretrain/best")
    if trained.is_dir():
        return str(trained)
    torch.manual_seed(0)
    model = mmseq.create_model("tera_base", dim=192, heads=3, ffn_dim=768, layers=3)
    mmseq.save_pretrained(model, tmp / "tera")
    return str(tmp / "tera")


def clear_cache(corpus: Path) -> None:
    feature_cache._MEMORY.clear()
    for f in corpus.glob("*.jsonl.upstream-*.pt"):
        f.unlink()


def run(args: argparse.Namespace, out: Path, upstream: str, cache: bool, twice: bool) -> tuple[float, float]:
    overrides = [f"run.task_args.corpus={args.corpus}", f"run.task_args.upstream={upstream}",
                 f"run.task_args.cache_upstream={str(cache).lower()}",
                 "strategy.name=coconut", "memory.size=62",
                 f"run.trainer.max_steps={args.steps}", f"run.trainer.val_every={args.steps // 2}",
                 f"run.trainer.save_every={args.steps // 2}", "run.trainer.log_every=1000", f"out_dir={out}"]
    cfg = load_continual_config(CONFIG, overrides)
    cfg.memory.fraction = None  # memory.size instead
    cfg.stream.preset = None  # the 31 intents in args.tasks tasks
    cfg.stream.increment = 31 // args.tasks
    cfg.stream.initial_increment = 31 - cfg.stream.increment * (args.tasks - 1)
    real = slu.load_teacher
    real_args = continual.StrategyConfig.task_args

    def with_audio_kd(self, teacher):  # COCONUT's terms and audio-KD on the same teacher outputs
        args = real_args(self, teacher)
        return {**args, "audio_kd": 1.0} if teacher is not None else args

    continual.StrategyConfig.task_args = with_audio_kd
    if twice:
        slu.load_teacher = lambda path: TwiceTeacher(real(path))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        run_stream(cfg)
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        slu.load_teacher = real
        continual.StrategyConfig.task_args = real_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/synth_speech/slu")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    print(f"{machine_line()}; {args.tasks} tasks x {args.steps} steps, batch 32, corpus {corpus}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        upstream = upstream_checkpoint(tmp_path)
        for name, cache, twice, cold in (("plain (upstream per item, teacher twice)", False, True, True),
                                         ("cached, teacher twice", True, True, True),
                                         ("cached, teacher once (mmseq)", True, False, True),
                                         ("cached (warm disk cache), teacher once", True, False, False)):
            if cold:
                clear_cache(corpus)
            else:
                feature_cache._MEMORY.clear()
            rows.append((name, run(args, tmp_path / f"run{len(rows)}", upstream, cache, twice)))
        clear_cache(corpus)
    plain_wall, plain_cpu = rows[0][1]
    print("| path | stream wall (s) | plain / this | stream CPU (s) | plain / this |")
    print("|---|---:|---:|---:|---:|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.1f} | {plain_wall / wall:.2f}x | {cpu:.1f} | {plain_cpu / cpu:.2f}x |")


if __name__ == "__main__":
    main()
