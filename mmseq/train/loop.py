"""The training loop every recipe uses: small functions around one ``train(cfg, task=None, model=None, callbacks=())``.

One optimizer step = ``grad_accum`` micro-batches; one micro-batch = ``batch_size`` items over all processes
(each DDP rank gets its share of every global batch, so 1 and N processes see the same data). Checkpoints are
taken at step boundaries and hold the model, optimizer, scheduler, loss scaler, every RNG state and the data
position, so a run killed at any moment and started again ends with the same weights as one never stopped.

A run, read top to bottom: import the config's user code, build the task and the model (or take the ones given),
load ``init_from`` weights, freeze what ``freeze`` names, build the optimizer and schedule, resume if a checkpoint
exists, then step; validate every ``val_every`` steps (the loss's metrics averaged over the validation set, and the
task's own ``evaluate``), keep the best model in ``best/``; at the end evaluate the best model on the test split,
write ``metrics.json`` and the curves, and call the callbacks.

A task with an adversary (a GAN's discriminator, :class:`~mmseq.tasks.Adversary`) trains it too: a second
optimizer (``adversary_optim``, the same schedule) steps first on every batch, then the model's
(``adversarial_step`` inside :func:`train`). The adversary's weights and optimizer are part of the resumable state; ``best/`` and
the checkpoints' models are the model alone.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmseq.atomic import atomic_write_text
from mmseq.checkpoint import build_model, load, save_pretrained
from mmseq.config import load_config, to_dict
from mmseq.data.samplers import FixedSizeBatches, ShardedBatchSampler
from mmseq.errors import CheckpointError, ConfigError
from mmseq.tasks import Callback, Ratio, RunContext, Task, build_task
from mmseq.train import distributed
from mmseq.train.config import RunConfig, TrainerConfig
from mmseq.train.init import Freezer, init_from
from mmseq.train.log import RunLog, plot_curves
from mmseq.train.schedules import make_optimizer, make_scheduler
from mmseq.train.state import (Progress, latest_checkpoint, load_trainer_state, progress_dict, rng_state,
                               save_checkpoint, set_rng_state)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def import_user_code(paths: Sequence[str], base: Path | None = None) -> None:
    """Import each entry of a config's ``imports``: a ``.py`` file (relative to ``base``, the config's folder,
    else to the working directory) or a dotted module name. What it registers (tasks, models) is then available."""
    for entry in paths:
        if entry.endswith(".py"):
            path = Path(entry)
            if not path.is_absolute() and base is not None and (base / path).is_file():
                path = base / path
            if not path.is_file():
                raise ConfigError(f"imports: {entry!r} does not exist (relative paths are taken from the config's "
                                  "folder, then the working directory)")
            name = f"mmseq_user_{path.resolve().stem}_{abs(hash(str(path.resolve()))) % 10**8}"
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            try:
                importlib.import_module(entry)
            except ModuleNotFoundError as e:
                raise ConfigError(f"imports: cannot import module {entry!r}: {e}") from None


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """A :class:`RunConfig` from a recipe YAML and ``key=value`` overrides, its ``imports`` imported (relative to
    the YAML's folder)."""
    cfg = load_config(RunConfig, path, overrides)
    base = Path(path).resolve().parent if path is not None else None
    if base is not None:  # recorded absolute, so train() and the run's config.yaml find them from anywhere
        cfg.imports = [str(base / e) if e.endswith(".py") and not Path(e).is_absolute() and (base / e).is_file()
                       else e for e in cfg.imports]
    import_user_code(cfg.imports)
    return cfg


def make_loader(dataset: Dataset, sampler: ShardedBatchSampler, task: Task, cfg: TrainerConfig,
                seed: int, evaluation: bool = False) -> DataLoader:
    # An explicit generator: worker seeds must not draw from (and so shift) the global RNG stream.
    collate = task.eval_collate if evaluation and task.eval_collate is not None else task.collate
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False)


def train_batches(task: Task, cfg: TrainerConfig, progress: Progress,
                  dist: distributed.DistInfo) -> Iterator[Any]:
    """Micro-batches for this rank from the current data position on, epoch after epoch (forever).

    Advances ``progress.epoch`` / ``progress.batches_in_epoch`` as batches are handed out.
    """
    plan = task.plan(cfg.batch_size, cfg.seed)
    while True:
        sampler = ShardedBatchSampler(plan, progress.epoch, dist.rank, dist.world_size, skip=progress.batches_in_epoch)
        if len(sampler.global_batches) == 0:
            raise ConfigError(f"the training set yields no batch of at least {dist.world_size} items")
        for batch in make_loader(task.train_set, sampler, task, cfg, cfg.seed * 100_003 + progress.epoch):
            progress.batches_in_epoch += 1
            yield batch
        progress.epoch += 1
        progress.batches_in_epoch = 0


class MetricSums:
    """Running sums of a loss's metrics: per-item averages weighted by item counts, :class:`Ratio` s summed."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, metrics: dict[str, Any], items: float) -> None:
        for key, value in metrics.items():
            num, den = (float(value[0]), float(value[1])) if isinstance(value, Ratio) else (float(value) * items,
                                                                                            float(items))
            self.sums[key] = self.sums.get(key, 0.0) + num
            self.weights[key] = self.weights.get(key, 0.0) + den

    def result(self) -> dict[str, float]:
        return {k: self.sums[k] / self.weights[k] if self.weights[k] else float("nan") for k in self.sums}


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, split: str, cfg: TrainerConfig, device: torch.device) -> dict[str, float]:
    """Metrics of ``split`` (``"val"`` or ``"test"``) in eval mode: the loss's metrics over the whole split (see
    :class:`MetricSums`), then the task's ``evaluate`` (which replaces same-named ones)."""
    dataset = task.split(split)
    if dataset is None:
        raise ConfigError(f"the task has no {split} split")
    was_training = model.training
    model.eval()
    plan = FixedSizeBatches(len(dataset), cfg.eval_batch_size or cfg.batch_size, shuffle=False)
    loader = make_loader(dataset, ShardedBatchSampler(plan, 0), task, cfg, seed=0, evaluation=True)
    sums = MetricSums()
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(cfg.precision, device):
            loss, metrics = task.loss(model, batch)
        sums.add({"loss": loss.item(), **metrics}, task.batch_size_of(batch))
    result = sums.result()
    if task.evaluate is not None:
        result.update(task.evaluate(model, split))
    model.train(was_training)
    return result


def detach(value: Any) -> Any:
    """``value`` with every tensor in it (alone, or nested in dicts, lists and tuples) detached."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: detach(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detach(v) for v in value)
    return value


def _check_finite(loss: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} is {loss.item()} at step {step}")


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def train(cfg: RunConfig, task: Task | None = None, model: nn.Module | None = None,
          callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Run (or resume) a training run; returns the summary written to ``metrics.json``.

    Args:
        cfg: the run's configuration (``cfg.task`` / ``cfg.model`` name what to build unless given here).
        task: a built task (a recipe's own); default: ``build_task(cfg.task, cfg.task_args)``.
        model: a built model (from :func:`mmseq.create_model` or :func:`mmseq.load`, so that it can be saved);
            default: built from ``cfg.model`` and ``cfg.model_args``.
        callbacks: more :class:`~mmseq.tasks.Callback` s beside the task's own.

    The output directory receives ``config.yaml``, ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/step_N``
    (resumable), ``best/`` (the model with the best validation metric), ``metrics.json`` and ``loss.png``.
    """
    dist, device = distributed.setup(cfg.trainer.device)
    finished = False
    try:
        summary = _train(cfg, task, model, list(callbacks), dist, device)
        finished = True
        return summary
    finally:
        distributed.teardown(dist, synchronize=finished)


def _train(cfg: RunConfig, task: Task | None, model: nn.Module | None, callbacks: list[Callback],
           dist: distributed.DistInfo, device: torch.device) -> dict[str, Any]:
    tc = cfg.trainer
    if tc.batch_size % dist.world_size:
        raise ConfigError(f"trainer.batch_size {tc.batch_size} is not divisible by {dist.world_size} processes")
    if tc.precision == "fp16" and device.type != "cuda":
        raise ConfigError("trainer.precision=fp16 needs a CUDA device; use bf16 on the CPU")
    out_dir = Path(tc.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    import_user_code(cfg.imports)

    # Setup: the same seed everywhere, so every rank builds identical initial weights.
    seed_everything(tc.seed)
    if task is None:
        if cfg.task is None:
            raise ConfigError("no task: set `task:` in the config or pass train(cfg, task=...)")
        task = build_task(cfg.task, cfg.task_args)
    if model is None:
        if cfg.model is None:
            raise ConfigError("no model: set `model:` in the config or pass train(cfg, model=...)")
        model = build_model(cfg.model, cfg.model_args)
    if getattr(model, "mmseq_config", None) is None:
        raise ConfigError("the model was not built by mmseq.create_model / mmseq.load, so its checkpoints could "
                          "not be loaded again")
    if task.prepare_model is not None:
        task.prepare_model(model)
    init_report = init_from(model, cfg.init_from)
    also_reports = [init_from(model, extra) for extra in cfg.init_also]
    model = model.to(device)
    freezer = Freezer(model, cfg.freeze)
    always_frozen = freezer.always_frozen()  # left out of the optimizer; those frozen for a while stay in it
    for name, p in model.named_parameters():
        if name in always_frozen:
            p.requires_grad_(False)
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.schedule, tc.max_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    progress = Progress()
    adversary = task.adversary
    if adversary is not None:
        adversary.module.to(device).train()
        adversary_optimizer = make_optimizer(adversary.module, cfg.adversary_optim)
        adversary_scheduler = make_scheduler(adversary_optimizer, cfg.schedule, tc.max_steps)

    resume_from = latest_checkpoint(ckpt_dir) if tc.resume else None
    if resume_from is not None:
        from safetensors.torch import load_model

        state = load_trainer_state(resume_from)
        load_model(model, str(resume_from / "model.safetensors"), device=str(device))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if adversary is not None:
            if "adversary" not in state:
                raise CheckpointError(f"{str(resume_from)!r} holds no adversary state: it is not a checkpoint of "
                                      "this adversarial task (start in a new trainer.out_dir)")
            adversary.module.load_state_dict(state["adversary"]["module"])
            adversary_optimizer.load_state_dict(state["adversary"]["optimizer"])
            adversary_scheduler.load_state_dict(state["adversary"]["scheduler"])
        progress = Progress(**state["progress"])
        set_rng_state(state["rng"][dist.rank])
    else:
        seed_everything(tc.seed + dist.rank)  # ranks differ in dropout masks, not in initial weights
    freezer.apply(progress.step)

    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        record = to_dict(cfg)
        record["task"] = record["task"] or "(given to train())"
        record["model"] = record["model"] or model.mmseq_config["builder"]
        OmegaConf.save(OmegaConf.create(record), out_dir / "config.yaml")
        for report in (init_report, *also_reports):
            if report is not None:
                print(report.summary())
    log = RunLog(out_dir, dist.is_main, progress.step)
    callbacks = [*task.callbacks, *callbacks]

    def wrap() -> nn.Module:
        if not dist.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=tc.find_unused_parameters)

    wrapped = wrap()
    wrapped_adversary = None
    if adversary is not None:
        wrapped_adversary = adversary.module if not dist.enabled else DistributedDataParallel(
            adversary.module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=tc.find_unused_parameters)

    def context() -> RunContext:
        return RunContext(out_dir, progress.step, model, task, cfg)

    def validate() -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if dist.is_main and task.val_set is not None:
            metrics = evaluate(model, task, "val", tc, device)
            log.write(progress.step, "val", metrics)
            value = metrics.get(tc.best_metric)
            if value is None:
                raise ConfigError(f"trainer.best_metric {tc.best_metric!r} is not a validation metric; "
                                  f"valid: {', '.join(sorted(metrics))}")
            if _improved(value, progress.best, tc.best_mode):
                progress.best, progress.best_step = value, progress.step
                save_pretrained(model, out_dir / "best")
            for callback in callbacks:
                callback.on_validation(context(), metrics)
        progress.best = distributed.broadcast_object(progress.best, dist)
        return metrics

    def checkpoint() -> None:
        rngs = distributed.all_gather_objects(rng_state(), dist)
        if dist.is_main:
            state = {
                "progress": progress_dict(progress),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rngs,
            }
            if adversary is not None:
                state["adversary"] = {"module": adversary.module.state_dict(),
                                      "optimizer": adversary_optimizer.state_dict(),
                                      "scheduler": adversary_scheduler.state_dict()}
            save_checkpoint(ckpt_dir, model, state, keep=tc.keep_checkpoints)
        distributed.barrier(dist)

    def optimizer_step(opt: torch.optim.Optimizer, module: nn.Module) -> torch.Tensor | None:
        """Unscale, clip, step and clear the gradients of ``module``'s optimizer ``opt``; the gradient norm."""
        scaler.unscale_(opt)
        norm = (torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None],
                                               tc.clip_grad_norm) if tc.clip_grad_norm > 0 else None)
        scaler.step(opt)
        opt.zero_grad(set_to_none=True)
        return norm

    def no_sync(module: nn.Module, micro: int) -> contextlib.AbstractContextManager:
        last = micro == tc.grad_accum - 1
        return contextlib.nullcontext() if last or not dist.enabled else module.no_sync()

    def model_step() -> torch.Tensor | None:
        """One optimizer step over grad_accum micro-batches; DDP syncs gradients on the last one only."""
        for micro in range(tc.grad_accum):
            batch = to_device(next(batches), device)
            with no_sync(wrapped, micro):
                with autocast(tc.precision, device):
                    loss, batch_metrics = task.loss(wrapped, batch)
                _check_finite(loss, "loss", progress.step)
                scaler.scale(loss / tc.grad_accum).backward()
            running.add({"loss": loss.item(), **batch_metrics}, task.batch_size_of(batch))
        return optimizer_step(optimizer, model)

    def adversarial_step() -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One training step with an adversary: its optimizer step, then the model's, on the same micro-batches.
        Returns both gradient norms (model, adversary)."""
        micro_batches = [to_device(next(batches), device) for _ in range(tc.grad_accum)]
        keep = tc.grad_accum == 1  # the model's output is kept for its own step; with accumulation, recomputed
        generated = []
        # 1. The adversary learns to tell the data from the model's output (detached: nothing reaches the model).
        for micro, batch in enumerate(micro_batches):
            with no_sync(wrapped_adversary, micro), autocast(tc.precision, device):
                with contextlib.nullcontext() if keep else torch.no_grad():
                    out = adversary.generate(wrapped, batch)
                loss, batch_metrics = adversary.adversary_loss(wrapped_adversary, batch, detach(out))
            _check_finite(loss, "adversary loss", progress.step)
            scaler.scale(loss / tc.grad_accum).backward()
            running.add({"adversary_loss": loss.item(), **batch_metrics}, task.batch_size_of(batch))
            generated.append(out if keep else None)
        adversary_norm = optimizer_step(adversary_optimizer, adversary.module)
        # 2. The model learns against the updated adversary, whose parameters take no gradient meanwhile.
        adversary.module.requires_grad_(False)
        try:
            for micro, batch in enumerate(micro_batches):
                with no_sync(wrapped, micro), autocast(tc.precision, device):
                    out = generated[micro] if keep else adversary.generate(wrapped, batch)
                    loss, batch_metrics = adversary.model_loss(adversary.module, batch, out)
                _check_finite(loss, "loss", progress.step)
                scaler.scale(loss / tc.grad_accum).backward()
                running.add({"loss": loss.item(), **batch_metrics}, task.batch_size_of(batch))
        finally:
            adversary.module.requires_grad_(True)
        return optimizer_step(optimizer, model), adversary_norm

    bar = tqdm(total=tc.max_steps, initial=progress.step, disable=not (tc.progress and dist.is_main),
               desc="train", dynamic_ncols=True)
    model.train()
    batches = train_batches(task, tc, progress, dist)
    metrics: dict[str, Any] = {}
    running = MetricSums()
    started = time.time()
    while progress.step < tc.max_steps:
        if freezer.changes_at(progress.step) and freezer.apply(progress.step):
            wrapped = wrap()  # DDP syncs only the parameters that required gradients when it was built
        if adversary is None:
            grad_norm, adversary_norm = model_step(), None
        else:
            grad_norm, adversary_norm = adversarial_step()
            adversary_scheduler.step()
        scaler.update()
        scheduler.step()
        progress.step += 1
        bar.update(1)

        if progress.step % tc.log_every == 0 or progress.step == tc.max_steps:
            record = running.result()
            record["lr"] = scheduler.get_last_lr()[-1]
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            if adversary_norm is not None:
                record["adversary_grad_norm"] = float(adversary_norm)
            log.write(progress.step, "train", record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            running = MetricSums()
        done = progress.step == tc.max_steps
        if done or (tc.val_every and progress.step % tc.val_every == 0):
            metrics = validate()
        if done or (tc.save_every and progress.step % tc.save_every == 0):
            checkpoint()
    bar.close()
    log.close()
    summary: dict[str, Any] = {}
    if dist.is_main:
        summary = _finish(model, task, cfg, device, progress, metrics, callbacks, out_dir, time.time() - started,
                          init_report, [r for r in also_reports if r is not None])
    return summary


def _finish(model: nn.Module, task: Task, cfg: RunConfig, device: torch.device, progress: Progress,
            val: dict[str, Any], callbacks: list[Callback], out_dir: Path, seconds: float,
            init_report, also_reports: list) -> dict:
    """The end of a run on rank 0: test the best model, write ``metrics.json`` and curves, run callbacks."""
    tc = cfg.trainer
    best_model = load(out_dir / "best").to(device) if (out_dir / "best").is_dir() else None
    summary: dict[str, Any] = {
        "steps": progress.step,
        "train_seconds_this_session": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for n, p in model.named_parameters() if p.requires_grad),
        **({"adversary_parameters": sum(p.numel() for p in task.adversary.module.parameters())}
           if task.adversary is not None else {}),
        "task": task.info,
        "val": val,
    }
    if progress.best is not None:
        summary["best"] = {"metric": tc.best_metric, "value": progress.best, "step": progress.best_step}

    def record(r) -> dict[str, Any]:
        return {"checkpoint": r.checkpoint, "loaded": r.loaded, "missing": r.missing, "unexpected": r.unexpected}

    if init_report is not None:
        summary["init_from"] = record(init_report)
    if also_reports:
        summary["init_also"] = [record(r) for r in also_reports]
    if task.test_set is not None:
        summary["test"] = evaluate(best_model if best_model is not None else model, task, "test", tc, device)
    run = RunContext(out_dir, progress.step, model, task, cfg, best_model)
    for callback in callbacks:
        callback.on_train_end(run, summary)
    atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    metrics_log = out_dir / "metrics.jsonl"
    plot_curves(metrics_log, out_dir / "loss.png", "loss")
    if tc.best_metric != "loss" and val:
        plot_curves(metrics_log, out_dir / f"{tc.best_metric}.png", tc.best_metric)
    if val and not math.isnan(val.get("loss", 0.0)):
        print("final validation: " + ", ".join(f"{k}={v:.4g}" for k, v in val.items()))
    if "test" in summary:
        print("test (best checkpoint): " + ", ".join(f"{k}={v:.4g}" for k, v in summary["test"].items()))
    return summary
