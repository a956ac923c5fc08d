"""Optimizers with parameter groups, and learning-rate schedules (linear warmup, then constant / linear / cosine /
Noam / exponential / poly)."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import torch
import torch.nn as nn

from mmseq.errors import ConfigError
from mmseq.train.config import OptimConfig, ScheduleConfig


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Optimizer groups: each configured group (``cfg.param_groups``: patterns, lr, weight decay) and the default
    one, every group split into parameters with weight decay and one-dimensional ones without (biases, norm
    weights, scalars). Parameters that require no gradient (frozen for the whole run) are left out; groups that end
    up empty too."""
    chosen: list[list[tuple[str, nn.Parameter]]] = [[] for _ in range(len(cfg.param_groups) + 1)]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        index = next((i for i, g in enumerate(cfg.param_groups) if any(fnmatch.fnmatchcase(name, pat)
                                                                         for pat in g.params)),
                     len(cfg.param_groups))
        chosen[index].append((name, p))
    groups = []
    settings = [(g.lr, g.weight_decay) for g in cfg.param_groups] + [(None, None)]
    for members, (lr, decay) in zip(chosen, settings):
        lr = cfg.lr if lr is None else lr
        decay = cfg.weight_decay if decay is None else decay
        for params, wd in (([p for _, p in members if p.dim() >= 2], decay), ([p for _, p in members if p.dim() < 2],
                                                                               0.0)):
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": wd})
    return groups


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over :func:`parameter_groups`."""
    groups = parameter_groups(model, cfg)
    if not groups:
        raise ConfigError("no parameter of the model is trainable (all are frozen)")
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
    if cfg.name == "exponential":
        return cfg.gamma ** ((step - warmup) // cfg.decay_steps)
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    floor = cfg.min_lr_ratio
    if cfg.name == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    if cfg.name == "poly":  # (1 - progress) ** power, as DeepLab and AdapNet++ decay
        return floor + (1.0 - floor) * (1.0 - progress) ** cfg.power
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                   max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    # A closure (not a callable object), so the scheduler's state_dict holds only numbers.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, max_steps))
