"""Tasks: what the shared training loop trains on. A task is data plus a loss, nothing else.

A task builder is registered with ``@register_task(config=SomeDataclass)``; the recipe's ``task_args`` are
validated against that dataclass and the builder returns a :class:`Task`. The loop owns batching, devices,
precision, DDP and checkpoints, so a task never touches them.

This module also defines ``sequence_reversal``, a small embedded seq2seq task (reverse a random token string)
that exercises the whole stack end to end with no download; method families register their own tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.config import from_dict
from mmseq.data.batching import BatchPlan, FixedSizeBatches
from mmseq.errors import ConfigError, unknown_choice

# loss(model, batch) -> (scalar loss averaged over items, {metric: per-item average})
LossFn = Callable[[nn.Module, Any], tuple[Tensor, dict[str, float]]]


@dataclass
class Task:
    """Datasets, how to batch them, and the loss.

    Attributes:
        train_set / val_set: map-style datasets.
        collate: list of items -> batch (tensors are moved to the device by the loop).
        loss: ``loss(model, batch) -> (loss, metrics)``; metrics are per-item averages over the batch,
            which validation averages over the whole set (weighted by batch size).
        train_plan: batch plan for training given ``(batch_size, seed)``; default: fixed-size shuffled batches.
        batch_size_of: number of items in a collated batch (for weighting validation averages).
    """

    train_set: Dataset
    val_set: Dataset | None
    collate: Callable[[list[Any]], Any]
    loss: LossFn
    train_plan: Callable[[int, int], BatchPlan] | None = None
    batch_size_of: Callable[[Any], int] = lambda batch: len(next(iter(batch.values())))

    def plan(self, batch_size: int, seed: int) -> BatchPlan:
        if self.train_plan is not None:
            return self.train_plan(batch_size, seed)
        return FixedSizeBatches(len(self.train_set), batch_size, shuffle=True, seed=seed)


_TASKS: dict[str, tuple[Callable[[Any], Task], type]] = {}


def register_task(config: type) -> Callable[[Callable[[Any], Task]], Callable[[Any], Task]]:
    """Register ``builder(cfg) -> Task`` under its function name, with ``config`` as its args dataclass."""

    def wrap(builder: Callable[[Any], Task]) -> Callable[[Any], Task]:
        _TASKS[builder.__name__] = (builder, config)
        return builder

    return wrap


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def build_task(name: str, args: dict[str, Any]) -> Task:
    if name not in _TASKS:
        raise ConfigError(unknown_choice("task", name, _TASKS))
    builder, config = _TASKS[name]
    return builder(from_dict(config, args, where="task_args"))


# --- sequence_reversal ------------------------------------------------------------------------------------------

PAD, BOS, EOS = 1, 0, 2
FIRST_SYMBOL = 3


@dataclass
class SequenceReversalConfig:
    vocab_size: int = 32  # including the 3 special ids
    min_length: int = 4
    max_length: int = 12
    num_train: int = 4000
    num_val: int = 200
    seed: int = 1234  # the data's own seed, independent of the training seed


class ReversalDataset(Dataset):
    """Random token strings (a fixed set, drawn from ``seed``) and their reversals."""

    def __init__(self, cfg: SequenceReversalConfig, num: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(cfg.min_length, cfg.max_length + 1, (num,), generator=g)
        self.items = [torch.randint(FIRST_SYMBOL, cfg.vocab_size, (int(n),), generator=g) for n in lengths]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tensor:
        return self.items[i]


def collate_reversal(items: list[Tensor]) -> dict[str, Tensor]:
    """Source, decoder input (BOS + reversed) and target (reversed + EOS), padded with PAD."""
    n = len(items)
    max_len = max(len(x) for x in items)
    src = torch.full((n, max_len), PAD)
    dec_in = torch.full((n, max_len + 1), PAD)
    target = torch.full((n, max_len + 1), PAD)
    lengths = torch.tensor([len(x) for x in items])
    for i, x in enumerate(items):
        rev = x.flip(0)
        src[i, : len(x)] = x
        dec_in[i, 0], dec_in[i, 1 : len(x) + 1] = BOS, rev
        target[i, : len(x)], target[i, len(x)] = rev, EOS
    return {"src": src, "src_lengths": lengths, "dec_in": dec_in, "target": target, "target_lengths": lengths + 1}


def reversal_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy per item (mean over its tokens), averaged over items; token and sequence accuracy."""
    logits = model(batch["src"], batch["src_lengths"], batch["dec_in"], batch["target_lengths"]).outputs
    target = batch["target"]
    valid = target.ne(PAD)
    token_loss = F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=PAD, reduction="none")
    loss = ((token_loss * valid).sum(1) / valid.sum(1)).mean()
    correct = (logits.argmax(-1) == target) | ~valid
    return loss, {
        "token_accuracy": ((correct & valid).sum() / valid.sum()).item(),
        "sequence_accuracy": correct.all(1).float().mean().item(),
    }


@register_task(config=SequenceReversalConfig)
def sequence_reversal(cfg: SequenceReversalConfig) -> Task:
    if cfg.vocab_size <= FIRST_SYMBOL or not 1 <= cfg.min_length <= cfg.max_length:
        raise ConfigError("sequence_reversal needs vocab_size > 3 and 1 <= min_length <= max_length")
    return Task(
        train_set=ReversalDataset(cfg, cfg.num_train, cfg.seed),
        val_set=ReversalDataset(cfg, cfg.num_val, cfg.seed + 1),
        collate=collate_reversal,
        loss=reversal_loss,
    )
