"""Batch plans: which dataset indices form each *global* batch of an epoch, and how ranks share them.

A batch plan is any object with ``batches(epoch) -> list[list[int]]`` that returns the same global batches for
the same ``epoch`` every time (seeded, never from global RNG state). The training loop never asks a sampler for
"the next batch": it asks the plan for the epoch's list, skips the batches already consumed (exact resume), and
gives each rank its share of every global batch (DDP), so 1 process and N processes see the same global batches.

Plans here: :class:`FixedSizeBatches`. The speech data layer adds length-bucketed plans with the same method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import Sampler

from mmseq.errors import ConfigError


class BatchPlan(Protocol):
    def batches(self, epoch: int) -> list[list[int]]:
        """Global batches of ``epoch`` (lists of dataset indices), deterministic for a given seed and epoch."""
        ...


class FixedSizeBatches:
    """``batch_size`` indices per global batch, reshuffled every epoch from ``seed + epoch``."""

    def __init__(self, num_items: int, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size, self.shuffle, self.seed, self.drop_last = (
            num_items, batch_size, shuffle, seed, drop_last)

    def batches(self, epoch: int) -> list[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        out = [order[i : i + self.batch_size] for i in range(0, self.num_items, self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's share of a global batch: every ``world_size``-th item (balances lengths in sorted batches)."""
    return batch[rank::world_size]


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of each global batch of one epoch, starting after ``skip`` global batches.

    Global batches with fewer items than ``world_size`` are left out on every rank alike, so all ranks take the
    same number of steps.
    """

    def __init__(self, plan: BatchPlan, epoch: int, rank: int = 0, world_size: int = 1, skip: int = 0):
        self.global_batches = [b for b in plan.batches(epoch) if len(b) >= world_size]
        self.rank, self.world_size, self.skip = rank, world_size, skip

    def __len__(self) -> int:
        return max(0, len(self.global_batches) - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches[self.skip :]:
            yield shard(batch, self.rank, self.world_size)
