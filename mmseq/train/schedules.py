"""Optimizers and learning-rate schedules (linear warmup, then constant / linear / cosine / Noam)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mmseq.train.config import OptimConfig, ScheduleConfig


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD; weight decay skips one-dimensional parameters (biases, norm weights, scalars)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def lr_factor(step: int, cfg: ScheduleConfig, max_steps: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps.

    Noam is normalised so that its peak (at the end of warmup) is the base rate: ``min(s/w, sqrt(w/s))``.
    """
    warmup = cfg.warmup_steps
    if cfg.name == "noam":
        s = max(step, 1)
        return min(s / warmup, math.sqrt(warmup / s)) if warmup > 0 else 1.0 / math.sqrt(s)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    floor = cfg.min_lr_ratio
    if cfg.name == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                   max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    # A closure (not a callable object), so the scheduler's state_dict holds only numbers.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, max_steps))
