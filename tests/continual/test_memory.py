"""Rehearsal memory: class-balanced quotas, the three selections against direct computations, its state."""

import json

import numpy as np
import pytest
import torch

from mmseq.continual.memory import RehearsalMemory, rank_closest_to_mean, rank_herding
from mmseq.errors import ConfigError, InputError


def herding_by_hand(x, k):
    """iCaRL Algorithm 4 written out with numpy loops."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mu = x.mean(axis=0)
    picked = []
    for m in range(1, k + 1):
        best, best_d = None, np.inf
        for i in range(len(x)):
            if i in picked:
                continue
            d = np.linalg.norm(mu - (x[picked].sum(axis=0) + x[i]) / m)
            if d < best_d:
                best, best_d = i, d
        picked.append(best)
    return picked


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_herding_equals_the_algorithm_written_out(seed):
    x = np.random.default_rng(seed).normal(size=(40, 8)) + 0.5
    assert rank_herding(torch.tensor(x), 12) == herding_by_hand(x, 12)


def test_herding_exemplars_are_closer_to_the_class_mean_than_random_ones():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0)) + 1.0
    f = torch.nn.functional.normalize(x.double(), dim=1)
    mu = f.mean(0)
    herd = (f[rank_herding(x, 10)].mean(0) - mu).norm()
    g = torch.Generator().manual_seed(1)
    random = [(f[torch.randperm(200, generator=g)[:10]].mean(0) - mu).norm() for _ in range(50)]
    assert herd < min(random) and herd < 0.5 * sum(random) / len(random)


def test_closest_to_mean_is_the_sorted_distance():
    x = np.random.default_rng(3).normal(size=(30, 5))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = np.argsort(np.linalg.norm(xn - xn.mean(0), axis=1), kind="stable").tolist()
    assert rank_closest_to_mean(torch.tensor(x)) == expected


def two_tasks():
    # task 0: classes 0, 1 (20 items each); task 1: classes 2, 3 (20 items each); positions 100.. in the train set
    labels0 = [0] * 20 + [1] * 20
    labels1 = [2] * 20 + [3] * 20
    return (list(range(100, 140)), labels0), (list(range(140, 180)), labels1)


def test_fixed_memory_quota_from_all_classes():
    (p0, y0), (p1, y1) = two_tasks()
    memory = RehearsalMemory(size=20, selection="random", fixed_memory=True)
    memory.update(p0, y0, total_classes=4)
    assert memory.quota == 5 and len(memory) == 10 and memory.classes == [0, 1]
    first = dict(memory.ranked)
    memory.update(p1, y1, total_classes=4)
    assert len(memory) == 20 and memory.ranked[0] == first[0]  # old classes keep their exemplars
    positions, labels = memory.items()
    for p, y in zip(positions, labels):
        assert (y0 + y1)[(p0 + p1).index(p)] == y  # every exemplar belongs to its class


def test_shared_memory_shrinks_old_classes_to_their_best():
    (p0, y0), (p1, y1) = two_tasks()
    feats = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    memory = RehearsalMemory(size=20, selection="herding", fixed_memory=False)
    memory.update(p0, y0, total_classes=4, features=feats)
    assert memory.quota == 10 and len(memory) == 20
    before = {c: list(v) for c, v in memory.ranked.items()}
    memory.update(p1, y1, total_classes=4, features=feats)
    assert memory.quota == 5 and len(memory) == 20
    assert memory.ranked[0] == before[0][:5] and memory.ranked[1] == before[1][:5]
    # class 1's exemplars are its herding ranking, mapped back to training-set positions
    assert memory.ranked[1] == [p0[20 + i] for i in rank_herding(feats[20:40], 10)][:5]


def test_fraction_of_the_training_set():
    (p0, y0), _ = two_tasks()
    memory = RehearsalMemory(fraction=0.02, selection="random")
    memory.update(p0, y0, total_classes=4, train_size=1000)  # 20 exemplars, 5 per class
    assert memory.capacity(1000) == 20 and memory.quota == 5 and len(memory) == 10
    with pytest.raises(ConfigError, match="train_size"):
        RehearsalMemory(fraction=0.01).update(p0, y0, total_classes=4)


def test_random_selection_is_seeded():
    (p0, y0), _ = two_tasks()
    a, b, c = (RehearsalMemory(size=8, seed=s) for s in (0, 0, 1))
    for m in (a, b, c):
        m.update(p0, y0, total_classes=2)
    assert a.ranked == b.ranked and a.ranked != c.ranked


def test_state_round_trip_is_json():
    (p0, y0), (p1, y1) = two_tasks()
    feats = torch.randn(40, 4, generator=torch.Generator().manual_seed(2))
    memory = RehearsalMemory(size=12, selection="closest")
    memory.update(p0, y0, total_classes=4, features=feats)
    state = json.loads(json.dumps(memory.state_dict()))
    again = RehearsalMemory.from_state_dict(state)
    assert again.ranked == memory.ranked and again.quota == memory.quota
    again.update(p1, y1, total_classes=4, features=feats)
    memory.update(p1, y1, total_classes=4, features=feats)
    assert again.items() == memory.items()
    with pytest.raises(ConfigError, match="selection"):
        RehearsalMemory(size=12, selection="random").load_state_dict(state)


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="exactly one of size or fraction"):
        RehearsalMemory()
    with pytest.raises(ConfigError, match="selection 'kmeans'"):
        RehearsalMemory(size=4, selection="kmeans")
    with pytest.raises(ConfigError, match="needs the items' features"):
        RehearsalMemory(size=4, selection="herding").update([0, 1], [0, 1], total_classes=2)
    memory = RehearsalMemory(size=4)
    with pytest.raises(InputError, match="2 positions but 1 labels"):
        memory.update([0, 1], [0], total_classes=2)
    memory.update([0, 1], [0, 1], total_classes=2)
    with pytest.raises(InputError, match="already in the memory"):
        memory.update([2], [1], total_classes=2)
    with pytest.raises(InputError, match="\\[N, D\\]"):
        rank_herding(torch.zeros(0, 3))
