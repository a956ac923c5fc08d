"""Classification accuracy (speaker identification, probes) as counts that add up over a split.

Accuracy is a count of equal labels; torchmetrics' ``multiclass_accuracy`` computes the same number but needs the
class count up front and returns only the ratio, so batches could not be summed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.errors import InputError


@dataclass(frozen=True)
class Accuracy:
    """``correct`` of ``total`` predictions; ``a + b`` adds the counts."""

    correct: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        """``correct / total`` (0 when nothing was counted)."""
        return self.correct / self.total if self.total else 0.0

    def __add__(self, other: Accuracy) -> Accuracy:
        return Accuracy(self.correct + other.correct, self.total + other.total)


def accuracy(predictions: Tensor, targets: Tensor, ignore_index: int | None = None) -> Accuracy:
    """Top-1 accuracy of class ids or logits.

    Args:
        predictions: class ids ``[N]`` (integer), or scores ``[N, C]`` (float; the arg-max is the prediction).
        targets: class ids ``[N]``.
        ignore_index: a target id that is not counted (e.g. padding).

    Returns:
        :class:`Accuracy` with the counts.
    """
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets)
    if predictions.is_floating_point():
        if predictions.dim() != 2:
            raise InputError(f"accuracy: scores must be [N, classes], got shape {list(predictions.shape)}")
        predictions = predictions.argmax(-1)
    if predictions.shape != targets.shape or targets.dim() != 1:
        raise InputError(f"accuracy: predictions {list(predictions.shape)} and targets {list(targets.shape)} must "
                         f"both be [N] class ids")
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    correct = int(((predictions == targets) & keep).sum())
    return Accuracy(correct, int(keep.sum()))
