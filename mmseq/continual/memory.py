"""Rehearsal memory: a few exemplars of every learned class, replayed with the next tasks' data.

The memory holds positions into the stream's training set (and their class ids), never the audio: the runner
merges those items into the next task's training data. Its size is a number of exemplars or a fraction of the
whole training set (COCONUT compares 1% and 2%). Quotas are class-balanced:

* ``fixed_memory=True`` (the authors' ``RehearsalMemory`` default): every class gets ``size // total_classes``
  exemplars, ``total_classes`` being all classes of the stream, so the memory fills up over the stream and an
  old class never loses exemplars;
* ``fixed_memory=False``: the whole size is shared by the classes seen so far (``size // seen``); when new classes
  arrive, every old class keeps the first exemplars of its ranking.

Selection (after each task, on that task's new classes) ranks a class's training items:

* ``random``: a seeded permutation;
* ``closest``: ascending distance of each item's feature to the class mean;
* ``herding``: iCaRL's prioritised selection (Rebuffi et al. 2017, Algorithm 4): the k-th exemplar is the item
  that brings the mean of the k exemplars closest to the class mean.

Features for ``closest`` and ``herding`` are L2-normalised per item first (iCaRL's convention), and the class mean
is the mean of the normalised features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mmseq.errors import ConfigError, InputError

SELECTIONS = ("random", "closest", "herding")


def _normalised(features: Tensor) -> Tensor:
    if features.dim() != 2 or features.shape[0] == 0:
        raise InputError(f"exemplar features must be [N, D] with N > 0, got {tuple(features.shape)}")
    return torch.nn.functional.normalize(features.double(), dim=1)


def rank_closest_to_mean(features: Tensor) -> list[int]:
    """Item positions in ascending distance of their normalised feature to the class mean."""
    f = _normalised(features)
    dist = (f - f.mean(dim=0, keepdim=True)).norm(dim=1)
    return torch.argsort(dist, stable=True).tolist()


def rank_herding(features: Tensor, k: int | None = None) -> list[int]:
    """iCaRL herding: the first ``k`` (all by default) items in the order the algorithm picks them, each pick
    minimising ``|| mu - (phi(x) + sum of earlier picks) / m ||`` over the items not yet picked."""
    f = _normalised(features)
    n = f.shape[0]
    k = n if k is None else min(int(k), n)
    mu = f.mean(dim=0)
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool)
    order: list[int] = []
    for m in range(1, k + 1):
        dist = (mu[None, :] - (running[None, :] + f) / m).norm(dim=1)
        dist[taken] = float("inf")
        pick = int(torch.argmin(dist))
        order.append(pick)
        taken[pick] = True
        running += f[pick]
    return order


class RehearsalMemory:
    """Class-balanced exemplar memory (see the module notes).

    Args:
        size: total exemplars; or
        fraction: a fraction of the whole training set (``update`` needs ``train_size`` then).
        selection: ``random``, ``closest`` or ``herding``.
        fixed_memory: quota per class from all the stream's classes (True) or from the classes seen so far.
        seed: the ``random`` selection's seed (each class draws from ``seed`` and its class id).
    """

    def __init__(self, size: int | None = None, fraction: float | None = None, selection: str = "random",
                 fixed_memory: bool = True, seed: int = 0) -> None:
        if (size is None) == (fraction is None):
            raise ConfigError("a rehearsal memory needs exactly one of size or fraction")
        if size is not None and size < 0:
            raise ConfigError(f"memory size must be >= 0, got {size}")
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"memory fraction must be in [0, 1], got {fraction}")
        if selection not in SELECTIONS:
            raise ConfigError(f"memory selection {selection!r}: expected one of {', '.join(SELECTIONS)}")
        self.size, self.fraction, self.selection = size, fraction, selection
        self.fixed_memory, self.seed = fixed_memory, int(seed)
        self.ranked: dict[int, list[int]] = {}  # class id -> its exemplars' positions, best first
        self.quota = 0

    def capacity(self, train_size: int | None = None) -> int:
        """Total exemplars the memory may hold."""
        if self.size is not None:
            return int(self.size)
        if train_size is None:
            raise ConfigError("a memory sized as a fraction needs train_size")
        return int(round(self.fraction * train_size))

    def update(self, positions: Sequence[int], labels: Sequence[int], *, total_classes: int,
               features: Tensor | None = None, train_size: int | None = None) -> None:
        """Add the classes of one task: ``positions`` (into the stream's training set) and their ``labels``;
        ``features [N, D]`` of the same items for ``closest`` / ``herding``. Classes already held are an error."""
        if len(positions) != len(labels):
            raise InputError(f"memory update: {len(positions)} positions but {len(labels)} labels")
        if features is not None and features.shape[0] != len(positions):
            raise InputError(f"memory update: {features.shape[0]} feature rows for {len(positions)} items")
        if self.selection != "random" and features is None:
            raise ConfigError(f"memory selection {self.selection!r} needs the items' features")
        new = sorted({int(y) for y in labels})
        held = [c for c in new if c in self.ranked]
        if held:
            raise InputError(f"memory update: classes {held} are already in the memory")
        seen = len(self.ranked) + len(new)
        capacity = self.capacity(train_size)
        self.quota = capacity // (total_classes if self.fixed_memory else seen)
        for c in new:
            idx = [i for i, y in enumerate(labels) if int(y) == c]
            if self.selection == "random":
                g = torch.Generator().manual_seed(self.seed * 100003 + c)
                ranking = torch.randperm(len(idx), generator=g).tolist()
            elif self.selection == "closest":
                ranking = rank_closest_to_mean(features[idx])
            else:
                ranking = rank_herding(features[idx], self.quota)
            self.ranked[c] = [int(positions[idx[r]]) for r in ranking[: self.quota]]
        for c in self.ranked:  # old classes shrink to the new quota when the memory is shared (fixed_memory=False)
            self.ranked[c] = self.ranked[c][: self.quota]

    @property
    def classes(self) -> list[int]:
        return sorted(self.ranked)

    def items(self) -> tuple[list[int], list[int]]:
        """``(positions, labels)`` of every exemplar, class by class."""
        positions, labels = [], []
        for c in self.classes:
            positions += self.ranked[c]
            labels += [c] * len(self.ranked[c])
        return positions, labels

    def __len__(self) -> int:
        return sum(len(v) for v in self.ranked.values())

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (so a checkpoint stores it without pickling)."""
        return {"size": self.size, "fraction": self.fraction, "selection": self.selection,
                "fixed_memory": self.fixed_memory, "seed": self.seed, "quota": self.quota,
                "ranked": {str(c): list(v) for c, v in self.ranked.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("size", "fraction", "selection", "fixed_memory", "seed"):
            if state.get(key) != getattr(self, key):
                raise ConfigError(f"memory state: {key} is {state.get(key)!r}, this memory's {getattr(self, key)!r}")
        self.quota = int(state["quota"])
        self.ranked = {int(c): [int(i) for i in v] for c, v in state["ranked"].items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RehearsalMemory:
        memory = cls(size=state["size"], fraction=state["fraction"], selection=state["selection"],
                     fixed_memory=state["fixed_memory"], seed=state["seed"])
        memory.load_state_dict(state)
        return memory
