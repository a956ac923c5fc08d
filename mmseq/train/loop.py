"""The training loop every recipe uses: small functions around one ``train(cfg)``.

One optimizer step = ``grad_accum`` micro-batches; one micro-batch = ``batch_size`` items over all processes
(each DDP rank gets its share of every global batch, so 1 and N processes see the same data). Checkpoints are
taken at step boundaries and hold the model, optimizer, scheduler, loss scaler, every RNG state and the data
position, so a run killed at any moment and started again ends with the same weights as one never stopped.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmseq.checkpoint import save_pretrained
from mmseq.config import to_dict
from mmseq.data.batching import FixedSizeBatches, ShardedBatchSampler
from mmseq.errors import ConfigError
from mmseq.registry import create_model
from mmseq.train import distributed
from mmseq.train.config import RunConfig, TrainerConfig
from mmseq.train.log import RunLog
from mmseq.train.schedules import make_optimizer, make_scheduler
from mmseq.train.state import (Progress, latest_checkpoint, load_trainer_state, progress_dict, rng_state,
                               save_checkpoint, set_rng_state)
from mmseq.train.tasks import Task, build_task


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


def make_loader(dataset: Dataset, sampler: ShardedBatchSampler, task: Task, cfg: TrainerConfig,
                seed: int) -> DataLoader:
    # An explicit generator: worker seeds must not draw from (and so shift) the global RNG stream.
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=task.collate, num_workers=cfg.num_workers,
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


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, dataset: Dataset, cfg: TrainerConfig, device: torch.device) -> dict:
    """Loss and task metrics averaged over ``dataset`` (weighted by batch sizes), in eval mode."""
    was_training = model.training
    model.eval()
    plan = FixedSizeBatches(len(dataset), cfg.batch_size, shuffle=False)
    loader = make_loader(dataset, ShardedBatchSampler(plan, 0), task, cfg, seed=0)
    totals: dict[str, float] = {}
    count = 0
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(cfg.precision, device):
            loss, metrics = task.loss(model, batch)
        n = task.batch_size_of(batch)
        for key, value in {"loss": loss.item(), **metrics}.items():
            totals[key] = totals.get(key, 0.0) + value * n
        count += n
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in totals.items()}


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def train(cfg: RunConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final validation metrics (empty without a val set).

    The output directory receives ``config.yaml``, ``metrics.jsonl``, ``tensorboard/``,
    ``checkpoints/step_N`` (resumable) and ``best/`` (a loadable model with the best validation metric).
    """
    tc = cfg.trainer
    dist, device = distributed.setup(tc.device)
    finished = False
    try:
        metrics = _train(cfg, dist, device)
        finished = True
        return metrics
    finally:
        distributed.teardown(dist, synchronize=finished)


def _train(cfg: RunConfig, dist: distributed.DistInfo, device: torch.device) -> dict[str, Any]:
    tc = cfg.trainer
    if tc.batch_size % dist.world_size:
        raise ConfigError(f"trainer.batch_size {tc.batch_size} is not divisible by {dist.world_size} processes")
    if tc.precision == "fp16" and device.type != "cuda":
        raise ConfigError("trainer.precision=fp16 needs a CUDA device; use bf16 on the CPU")
    out_dir = Path(tc.out_dir)
    ckpt_dir = out_dir / "checkpoints"

    # Setup: the same seed everywhere, so every rank builds identical initial weights.
    seed_everything(tc.seed)
    task = build_task(cfg.task, cfg.task_args)
    model = create_model(cfg.model, **cfg.model_args).to(device)
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.schedule, tc.max_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    progress = Progress()

    resume_from = latest_checkpoint(ckpt_dir) if tc.resume else None
    if resume_from is not None:
        from safetensors.torch import load_model

        state = load_trainer_state(resume_from)
        load_model(model, str(resume_from / "model.safetensors"), device=str(device))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        set_rng_state(state["rng"][dist.rank])
    else:
        seed_everything(tc.seed + dist.rank)  # ranks differ in dropout masks, not in initial weights

    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        OmegaConf.save(OmegaConf.create(to_dict(cfg)), out_dir / "config.yaml")
    log = RunLog(out_dir, dist.is_main, progress.step)
    wrapped: nn.Module = model
    if dist.enabled:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=tc.find_unused_parameters)

    def validate() -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if dist.is_main and task.val_set is not None:
            metrics = evaluate(model, task, task.val_set, tc, device)
            log.write(progress.step, "val", metrics)
            value = metrics.get(tc.best_metric)
            if value is None:
                raise ConfigError(f"trainer.best_metric {tc.best_metric!r} is not a validation metric; "
                                  f"valid: {', '.join(sorted(metrics))}")
            if _improved(value, progress.best, tc.best_mode):
                progress.best = value
                save_pretrained(model, out_dir / "best")
        progress.best = distributed.broadcast_object(progress.best, dist)
        return metrics

    def checkpoint() -> None:
        rngs = distributed.all_gather_objects(rng_state(), dist)
        if dist.is_main:
            save_checkpoint(ckpt_dir, model, {
                "progress": progress_dict(progress),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rngs,
            }, keep=tc.keep_checkpoints)
        distributed.barrier(dist)

    bar = tqdm(total=tc.max_steps, initial=progress.step, disable=not (tc.progress and dist.is_main),
               desc="train", dynamic_ncols=True)
    model.train()
    batches = train_batches(task, tc, progress, dist)
    metrics: dict[str, Any] = {}
    running: dict[str, float] = {}
    while progress.step < tc.max_steps:
        # One optimizer step over grad_accum micro-batches; DDP syncs gradients on the last one only.
        for micro in range(tc.grad_accum):
            batch = to_device(next(batches), device)
            last = micro == tc.grad_accum - 1
            sync = contextlib.nullcontext() if last or not dist.enabled else wrapped.no_sync()
            with sync:
                with autocast(tc.precision, device):
                    loss, batch_metrics = task.loss(wrapped, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {progress.step}")
                scaler.scale(loss / tc.grad_accum).backward()
            for key, value in {"loss": loss.item(), **batch_metrics}.items():
                running[key] = running.get(key, 0.0) + value / tc.grad_accum
        scaler.unscale_(optimizer)
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
                     if tc.clip_grad_norm > 0 else None)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        progress.step += 1
        bar.update(1)

        if progress.step % tc.log_every == 0 or progress.step == tc.max_steps:
            steps = tc.log_every if progress.step % tc.log_every == 0 else progress.step % tc.log_every
            record = {k: v / steps for k, v in running.items()}
            record["lr"] = scheduler.get_last_lr()[0]
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            log.write(progress.step, "train", record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            running = {}
        done = progress.step == tc.max_steps
        if done or (tc.val_every and progress.step % tc.val_every == 0):
            metrics = validate()
        if done or (tc.save_every and progress.step % tc.save_every == 0):
            checkpoint()
    bar.close()
    log.close()
    if dist.is_main and metrics and not math.isnan(metrics.get("loss", 0.0)):
        print("final validation: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics
