"""Semantic segmentation metrics from one confusion matrix: per-class IoU, mIoU and pixel accuracy.

The matrix counts pixels (rows: target class, columns: predicted class) and adds up over batches exactly, so a
split's metrics come from the sum of its batches' matrices. Pixels whose target is ``ignore_index`` (the void class)
are not counted at all, whatever was predicted there; ``ignore_index`` may lie outside ``[0, classes)`` (255).

**Absent classes.** A class that appears neither in the targets nor in the predictions (of counted pixels) has an
undefined IoU (0 / 0): :attr:`ConfusionMatrix.iou` gives NaN for it, and for ``ignore_index`` itself, and
:attr:`ConfusionMatrix.mean_iou` averages over the other classes. That is the mean of torchmetrics'
``MulticlassJaccardIndex(average="macro", ignore_index=...)``; its ``average="none"`` writes 0 where this writes
NaN. A class that is predicted but never present (or present but never predicted) has IoU 0 and counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.errors import InputError


@dataclass(frozen=True)
class ConfusionMatrix:
    """Pixel counts ``[classes, classes]`` (int64, rows target, columns prediction); ``a + b`` adds them."""

    counts: Tensor
    ignore_index: int | None = None

    @property
    def num_classes(self) -> int:
        return self.counts.shape[0]

    @property
    def iou(self) -> Tensor:
        """Per-class IoU ``[classes]`` (float64): ``tp / (tp + fp + fn)``; NaN for absent classes and the ignored
        class (see the module notes)."""
        counts = self.counts.double()
        tp = counts.diagonal()
        union = counts.sum(0) + counts.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            iou[self.ignore_index] = float("nan")
        return iou

    @property
    def mean_iou(self) -> float:
        """Mean IoU over the classes with a defined IoU (NaN when no pixel was counted)."""
        iou = self.iou
        defined = ~iou.isnan()
        return float(iou[defined].mean()) if bool(defined.any()) else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        """Correctly classified counted pixels over all counted pixels (NaN when none was counted)."""
        total = int(self.counts.sum())
        return int(self.counts.diagonal().sum()) / total if total else float("nan")

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.counts.shape != self.counts.shape or other.ignore_index != self.ignore_index:
            raise InputError(f"cannot add confusion matrices of {self.num_classes} and {other.num_classes} classes "
                             f"(ignore_index {self.ignore_index} and {other.ignore_index})")
        return ConfusionMatrix(self.counts + other.counts, self.ignore_index)


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int,
                     ignore_index: int | None = None) -> ConfusionMatrix:
    """Count predictions against targets.

    Args:
        predictions: class ids ``[B, H, W]`` (integer), or scores ``[B, classes, H, W]`` (float; the arg-max over
            dim 1 is the prediction).
        targets: class ids ``[B, H, W]`` in ``[0, num_classes)`` or equal to ``ignore_index``.
        num_classes: classes of the matrix.
        ignore_index: target id left out of the counts (void); None counts every pixel.

    Returns:
        :class:`ConfusionMatrix` with counts on the CPU.
    """
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets)
    if predictions.is_floating_point():
        if predictions.dim() != 4 or predictions.shape[1] != num_classes:
            raise InputError(f"segmentation scores must be [B, {num_classes}, H, W], got shape "
                             f"{list(predictions.shape)}")
        predictions = predictions.argmax(1)
    if predictions.shape != targets.shape or targets.is_floating_point():
        raise InputError(f"segmentation predictions {list(predictions.shape)} and integer targets "
                         f"{list(targets.shape)} ({targets.dtype}) must have the same shape")
    predictions, targets = predictions.reshape(-1).long(), targets.reshape(-1).long()
    if ignore_index is not None:
        keep = targets != ignore_index
        predictions, targets = predictions[keep], targets[keep]
    for name, ids in (("targets", targets), ("predictions", predictions)):
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
            extra = f" or {ignore_index}" if ignore_index is not None and name == "targets" else ""
            raise InputError(f"segmentation {name} must be class ids in [0, {num_classes}){extra}, got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]")
    counts = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return ConfusionMatrix(counts.reshape(num_classes, num_classes).cpu(), ignore_index)
