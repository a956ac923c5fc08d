"""Batch plans: which dataset indices form each *global* batch of an epoch, and how ranks share them.

One batching implementation serves every task. A batch plan is any object with ``batches(epoch) ->
list[list[int]]`` that returns the same global batches for the same ``epoch`` every time (seeded, never from global
RNG state). The training loop never asks a sampler for "the next batch": it asks the plan for the epoch's list,
skips the batches already consumed (exact resume), and gives each rank its share of every global batch
(:class:`ShardedBatchSampler`, DDP), so 1 process and N processes see the same global batches.

Plans:

* :class:`FixedSizeBatches` -- ``batch_size`` indices per batch, reshuffled every epoch.
* :class:`LengthBucketBatches` -- items of similar length under a total-length budget and/or an item count.
  How an epoch's batches are formed:

  1. Items are sorted by length; ties are broken by a random permutation of the epoch (so equal-length items
     change company from one epoch to the next), or by index with ``shuffle_ties=False`` (fixed buckets).
  2. Walking the sorted order, items are added to the current batch while its cost stays within ``max_total``
     (and it holds at most ``max_items``). The cost is the sum of lengths, or with ``padded=True`` the padded
     size ``max_len * count`` (what the model actually computes on).
  3. An item longer than ``max_total`` forms a batch alone, or is dropped with a warning if ``drop_too_long``.
  4. Batches with fewer than ``min_items`` items (set it to the DDP world size, since the sharded sampler leaves
     out global batches smaller than that) take the next items even over budget; a short last batch is merged
     into the one before it.
  5. With ``shuffle``, the batch order is permuted.

  ``lengths`` may be in any unit (seconds, samples, frames); ``max_total`` is in the same unit. With
  ``max_total=inf``, ``max_items=N`` and ``shuffle_ties=False`` it is s3prl's bucketing: items sorted by length
  cut into runs of N, the runs in a new order every epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch.utils.data import Sampler

from mmseq.errors import ConfigError, InputError

__all__ = ["BatchPlan", "FixedSizeBatches", "LengthBucketBatches", "ShardedBatchSampler", "shard"]


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


class LengthBucketBatches:
    """Global batches of similar-length items whose total (or padded) length is at most ``max_total``.

    Args:
        lengths: Length of every dataset item ``[N]`` (any unit).
        max_total: Budget per global batch, in the unit of ``lengths``.
        shuffle: Permute batch order (and tie order) per epoch; otherwise batches go shortest first.
        seed: Base seed; epoch ``e`` uses ``seed + e``.
        padded: Count a batch's cost as ``max_len * count`` instead of the sum of lengths.
        max_items: Largest number of items per batch; ``None`` for no limit.
        min_items: Smallest number of items per batch (use the DDP world size); may exceed the budget.
        drop_too_long: Leave out items longer than ``max_total`` (with a warning) instead of giving each a batch.
        shuffle_ties: Break ties between equal lengths at random per epoch (with ``shuffle``); False: by index,
            so the batches themselves are the same every epoch and only their order changes.
    """

    def __init__(
        self,
        lengths: Sequence[float] | torch.Tensor,
        max_total: float,
        shuffle: bool = True,
        seed: int = 0,
        padded: bool = False,
        max_items: int | None = None,
        min_items: int = 1,
        drop_too_long: bool = False,
        shuffle_ties: bool = True,
    ) -> None:
        values = torch.as_tensor(lengths, dtype=torch.float64).flatten()
        if values.numel() and (not torch.isfinite(values).all() or bool((values < 0).any())):
            bad = next(i for i, v in enumerate(values.tolist()) if not math.isfinite(v) or v < 0)
            raise InputError(f"item lengths must be finite and >= 0; item {bad} has length {values[bad].item()}")
        if not max_total > 0:
            raise ConfigError(f"max_total must be > 0, got {max_total}")
        if min_items < 1:
            raise ConfigError(f"min_items must be >= 1, got {min_items}")
        if max_items is not None and max_items < min_items:
            raise ConfigError(f"max_items ({max_items}) must be >= min_items ({min_items})")
        self.lengths = values
        self.max_total, self.shuffle, self.seed, self.padded = float(max_total), shuffle, seed, padded
        self.max_items, self.min_items, self.drop_too_long = max_items, min_items, drop_too_long
        self.shuffle_ties = shuffle_ties
        too_long = (values > self.max_total).nonzero().flatten().tolist()
        self.too_long: list[int] = too_long
        """Indices of items longer than ``max_total``."""
        if too_long and drop_too_long:
            warnings.warn(
                f"dropping {len(too_long)} of {len(values)} items longer than max_total={max_total:g} "
                f"(the longest is {values.max().item():g}); first indices: {too_long[:10]}", stacklevel=2)
        if len(values) - (len(too_long) if drop_too_long else 0) < min_items and len(values):
            raise ConfigError(f"only {len(values)} items, fewer than min_items={min_items}")

    def __len__(self) -> int:
        """Number of global batches (the same for every epoch)."""
        return len(self.batches(0))

    def _cost(self, count: int, total: float, longest: float) -> float:
        return longest * count if self.padded else total

    def batches(self, epoch: int) -> list[list[int]]:
        """Global batches of ``epoch``: lists of item indices, deterministic for ``(seed, epoch)``.

        Args:
            epoch: Epoch number (0-based).

        Returns:
            Every kept item exactly once, grouped into batches within the budget (see the module notes).
        """
        generator = torch.Generator().manual_seed(self.seed + epoch)
        count = len(self.lengths)
        if self.shuffle and self.shuffle_ties:
            tie_order = torch.randperm(count, generator=generator)
        else:
            tie_order = torch.arange(count)
        # Stable sort of the randomly permuted items by length: equal lengths keep their random order.
        by_length = tie_order[torch.sort(self.lengths[tie_order], stable=True).indices].tolist()
        lengths = self.lengths.tolist()

        out: list[list[int]] = []
        batch: list[int] = []
        total = 0.0
        for index in by_length:
            length = lengths[index]
            if length > self.max_total:
                if self.drop_too_long:
                    continue
                if len(batch) >= self.min_items:  # close the open batch; this item goes alone (or with fill)
                    out.append(batch)
                    batch, total = [], 0.0
                batch.append(index)
                total += length
                continue
            full = self.max_items is not None and len(batch) >= self.max_items
            over = self._cost(len(batch) + 1, total + length, max(length, lengths[batch[-1]] if batch else 0.0))
            if batch and len(batch) >= self.min_items and (full or over > self.max_total
                                                            or lengths[batch[-1]] > self.max_total):
                out.append(batch)
                batch, total = [], 0.0
            batch.append(index)
            total += length
        if batch:
            if len(batch) < self.min_items and out:
                out[-1].extend(batch)
            else:
                out.append(batch)

        if self.shuffle and len(out) > 1:
            order = torch.randperm(len(out), generator=generator).tolist()
            out = [out[i] for i in order]
        return out
