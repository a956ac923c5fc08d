"""Continual-learning metrics from an accuracy matrix.

``R[i][j]`` is the accuracy on task ``j``'s test classes after training task ``i`` (rows: training steps,
columns: tasks; entries above the diagonal, tasks not yet learned, are not used). ``seen[i]`` is the accuracy on
the pooled test items of every class seen after task ``i`` (each item counts once, so a task with more test items
weighs more), which is what class-incremental SLU papers report:

* **Avg Acc** (average incremental accuracy): the mean of ``seen`` over the tasks;
* **Last Acc**: ``seen`` after the last task;
* **backward transfer** (Lopez-Paz & Ranzato 2017, Eq. 2): ``mean_{j < T-1} (R[T-1][j] - R[j][j])``;
* **forgetting** (Chaudhry et al. 2018, Eq. 3): ``mean_{j < T-1} (max_{l < T-1} R[l][j] - R[T-1][j])``.

``convention="continuum"`` computes backward transfer and forgetting as continuum 1.2.7's ``Logger`` does, the
library the authors' CL_SLU code logs with, so numbers compare with theirs: its backward transfer sums
``R[i][j] - R[j][j]`` over ``j <= i - 2`` (the task just before ``i`` is left out) and divides by ``T(T-1)/2``; its
forgetting takes ``j <= T-3`` and the best of rows ``j..T-3``, divided by ``T-1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmseq.errors import InputError

CONVENTIONS = ("paper", "continuum")


def _matrix(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    m = np.asarray(R, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise InputError(f"accuracy matrix must be square [T, T] with T > 0, got shape {m.shape}")
    return m


def _convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise InputError(f"metric convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")


def average_incremental_accuracy(seen: Sequence[float]) -> float:
    """Avg Acc: the mean over tasks of the accuracy on every class seen so far."""
    if len(seen) == 0:
        raise InputError("average incremental accuracy of an empty stream")
    return float(np.mean(np.asarray(seen, dtype=np.float64)))


def backward_transfer(R: Sequence[Sequence[float]] | np.ndarray, convention: str = "paper") -> float:
    """How learning later tasks changed the accuracy on earlier ones (negative: forgetting); 0 for one task."""
    m, _ = _matrix(R), _convention(convention)
    t = m.shape[0]
    if t <= 1:
        return 0.0
    if convention == "continuum":
        total = sum(m[i, j] - m[j, j] for i in range(1, t) for j in range(0, i - 1))
        return float(total / (t * (t - 1) / 2))
    return float(np.mean([m[t - 1, j] - m[j, j] for j in range(t - 1)]))


def forgetting(R: Sequence[Sequence[float]] | np.ndarray, convention: str = "paper") -> float:
    """Average drop from each old task's best earlier accuracy to its accuracy after the last task."""
    m, _ = _matrix(R), _convention(convention)
    t = m.shape[0]
    if t <= 1:
        return 0.0
    if convention == "continuum":
        total = sum(max(m[l, j] for l in range(j, t - 2)) - m[t - 1, j] for j in range(t - 2))
        return float(total / (t - 1))
    return float(np.mean([m[: t - 1, j].max() - m[t - 1, j] for j in range(t - 1)]))


def stream_summary(R: Sequence[Sequence[float]] | np.ndarray, seen: Sequence[float],
                   convention: str = "paper") -> dict[str, float]:
    """Every metric of one finished stream, keyed as ``metrics.json`` stores them."""
    m = _matrix(R)
    if len(seen) != m.shape[0]:
        raise InputError(f"{len(seen)} seen-class accuracies for a {m.shape[0]}-task matrix")
    return {"avg_acc": average_incremental_accuracy(seen), "last_acc": float(seen[-1]),
            "bwt": backward_transfer(m, convention), "forgetting": forgetting(m, convention)}


class AccuracyMatrix:
    """Builds ``R`` and ``seen`` from per-item predictions after each task.

    ``add(task, predictions, targets, item_tasks)``: after training ``task``, the predicted and true class ids of
    the test items of every seen class, and the task each item's class belongs to.
    """

    def __init__(self, num_tasks: int) -> None:
        if num_tasks <= 0:
            raise InputError(f"num_tasks must be positive, got {num_tasks}")
        self.num_tasks = num_tasks
        self.R = np.full((num_tasks, num_tasks), np.nan)
        self.seen: list[float] = []

    def add(self, task: int, predictions: Sequence[int], targets: Sequence[int], item_tasks: Sequence[int]) -> None:
        if task != len(self.seen):
            raise InputError(f"accuracy matrix: results for task {task} given after {len(self.seen)} tasks")
        p, y, k = (np.asarray(a) for a in (predictions, targets, item_tasks))
        if not (len(p) == len(y) == len(k)) or len(p) == 0:
            raise InputError(f"accuracy matrix: {len(p)} predictions, {len(y)} targets, {len(k)} task ids "
                             "(equal and non-zero)")
        if k.max() > task:
            raise InputError(f"accuracy matrix: test items of task {int(k.max())} after training task {task}")
        correct = p == y
        for j in range(task + 1):
            sel = k == j
            if not sel.any():
                raise InputError(f"accuracy matrix: no test item of task {j} after task {task}")
            self.R[task, j] = correct[sel].mean()
        self.seen.append(float(correct.mean()))

    def summary(self, convention: str = "paper") -> dict[str, float]:
        if len(self.seen) != self.num_tasks:
            raise InputError(f"accuracy matrix holds {len(self.seen)} of {self.num_tasks} tasks")
        return stream_summary(np.nan_to_num(self.R), self.seen, convention)

    def to_json(self) -> dict[str, object]:
        return {"R": [[None if np.isnan(x) else float(x) for x in row] for row in self.R], "seen": list(self.seen)}
