"""Length-bucketed batch plans: determinism, coverage, budgets and DDP sharding."""

from __future__ import annotations

import random

import pytest
import torch

from mmseq.data.samplers import ShardedBatchSampler
from mmseq.data.samplers import LengthBucketBatches
from mmseq.errors import ConfigError, InputError


def _lengths(n: int = 200, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(1.0, 12.0), 2) for _ in range(n)]


def _flatten(batches: list[list[int]]) -> list[int]:
    return sorted(i for b in batches for i in b)


def test_same_seed_and_epoch_give_the_same_batches():
    lengths = _lengths()
    first = LengthBucketBatches(lengths, max_total=40.0, seed=3).batches(5)
    assert LengthBucketBatches(lengths, max_total=40.0, seed=3).batches(5) == first


def test_epochs_and_seeds_differ():
    plan = LengthBucketBatches(_lengths(), max_total=40.0, seed=3)
    assert plan.batches(0) != plan.batches(1)
    assert LengthBucketBatches(_lengths(), max_total=40.0, seed=4).batches(0) != plan.batches(0)


def test_global_rng_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LengthBucketBatches(_lengths(), max_total=40.0).batches(0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("padded", [False, True])
def test_every_item_once_and_budget_respected(padded):
    lengths = _lengths()
    plan = LengthBucketBatches(lengths, max_total=40.0, padded=padded)
    for epoch in range(3):
        batches = plan.batches(epoch)
        assert _flatten(batches) == list(range(len(lengths)))
        for batch in batches:
            values = [lengths[i] for i in batch]
            cost = max(values) * len(values) if padded else sum(values)
            assert cost <= 40.0
        # Greedy packing: adding the next-longest item would have broken the budget, so batches are full-ish.
        assert len(batches) <= 2 * sum(lengths) / 40.0 + 1


def test_batches_group_similar_lengths():
    lengths = _lengths(400)
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in
             LengthBucketBatches(lengths, max_total=30.0).batches(0)]
    assert sum(spans) / len(spans) < 0.5  # random batches would span about 6 s


def test_no_shuffle_goes_shortest_first():
    lengths = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert LengthBucketBatches(lengths, max_total=6.0, shuffle=False).batches(0) == [[1, 3, 2], [4], [0]]


def test_max_items():
    batches = LengthBucketBatches([1.0] * 10, max_total=100.0, max_items=4).batches(0)
    assert sorted(len(b) for b in batches) == [2, 4, 4]


def test_too_long_items_get_their_own_batch_or_are_dropped():
    lengths = [1.0, 2.0, 50.0, 1.5, 60.0]
    batches = LengthBucketBatches(lengths, max_total=10.0).batches(0)
    assert sorted(batches, key=len)[:2] in ([[2], [4]], [[4], [2]])
    assert _flatten(batches) == list(range(5))
    with pytest.warns(UserWarning, match=r"dropping 2 of 5 items longer than max_total=10 .*\[2, 4\]"):
        plan = LengthBucketBatches(lengths, max_total=10.0, drop_too_long=True)
    assert _flatten(plan.batches(0)) == [0, 1, 3]


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_ddp_sharding_covers_every_item_once_with_equal_steps(epoch):
    lengths = _lengths(101) + [100.0]  # an odd count and one too-long item
    plan = LengthBucketBatches(lengths, max_total=35.0, min_items=2, seed=7)
    assert all(len(b) >= 2 for b in plan.batches(epoch))
    shards = [list(ShardedBatchSampler(plan, epoch, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(plan.batches(epoch))
    seen = [i for rank in shards for step in rank for i in step]
    assert sorted(seen) == list(range(len(lengths)))
    # Resuming after k consumed global batches yields the remaining shards exactly.
    resumed = list(ShardedBatchSampler(plan, epoch, rank=1, world_size=2, skip=3))
    assert resumed == shards[1][3:]


def test_invalid_arguments():
    with pytest.raises(InputError, match="item 1 has length -1.0"):
        LengthBucketBatches([1.0, -1.0], max_total=5.0)
    with pytest.raises(ConfigError, match="max_total must be > 0"):
        LengthBucketBatches([1.0], max_total=0)
    with pytest.raises(ConfigError, match=r"max_items \(1\) must be >= min_items \(2\)"):
        LengthBucketBatches([1.0, 2.0], max_total=5.0, max_items=1, min_items=2)
    with pytest.raises(ConfigError, match="only 1 items, fewer than min_items=2"):
        LengthBucketBatches([1.0], max_total=5.0, min_items=2)


def test_fixed_buckets_are_s3prls_bucketing():
    # max_total=inf, max_items=N, shuffle_ties=False: items sorted by length (ties by index) cut into runs of N;
    # every epoch has the same runs in another order.
    lengths = [5, 3, 9, 3, 1, 7, 7, 2]
    plan = LengthBucketBatches(lengths, float("inf"), seed=4, max_items=3, shuffle_ties=False)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    runs = [order[i : i + 3] for i in range(0, len(order), 3)]
    epochs = [plan.batches(e) for e in range(4)]
    for batches in epochs:
        assert sorted(batches) == sorted(runs)
    assert len({tuple(map(tuple, b)) for b in epochs}) > 1  # the order changes
    assert plan.batches(2) == epochs[2]
