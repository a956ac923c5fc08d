"""Segmentation metrics: the confusion matrix against a per-pixel loop, IoU / mIoU against torchmetrics'
MulticlassJaccardIndex, pixel accuracy against its definition, accumulation over batches, and bad input."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from mmseq.errors import InputError
from mmseq.metrics.segmentation import confusion_matrix


def _batch(seed, classes=5, ignore_index=0, shape=(2, 6, 7), absent=(3,)):
    """Random predictions and targets; classes in ``absent`` appear in neither; some targets are void."""
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor([c for c in range(classes) if c not in absent])
    target = present[torch.randint(len(present), shape, generator=g)]
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target,
                       present[torch.randint(len(present), shape, generator=g)])
    if ignore_index is not None:
        target = torch.where(torch.rand(shape, generator=g) < 0.2, torch.full_like(target, ignore_index), target)
    return pred, target


def test_counts_equal_a_pixel_loop():
    pred, target = _batch(0, ignore_index=255)
    cm = confusion_matrix(pred, target, 5, ignore_index=255)
    expected = torch.zeros(5, 5, dtype=torch.long)
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != 255:
            expected[t, p] += 1
    assert torch.equal(cm.counts, expected)


@pytest.mark.parametrize("ignore_index", [0, 255, None])
def test_iou_equals_torchmetrics(ignore_index):
    batches = [_batch(seed, ignore_index=ignore_index) for seed in range(3)]
    macro = MulticlassJaccardIndex(5, average="macro", ignore_index=ignore_index)
    per_class = MulticlassJaccardIndex(5, average="none", ignore_index=ignore_index)
    total = None
    for pred, target in batches:
        macro.update(pred, target)
        per_class.update(pred, target)
        cm = confusion_matrix(pred, target, 5, ignore_index=ignore_index)
        total = cm if total is None else total + cm
    assert total.mean_iou == pytest.approx(float(macro.compute()), abs=1e-6)
    theirs, ours = per_class.compute().double(), total.iou
    undefined = ours.isnan()
    # Class 3 is absent from both; the ignored class has no IoU either. torchmetrics writes 0 there.
    assert undefined.tolist() == [c == 3 or c == ignore_index for c in range(5)]
    assert torch.allclose(ours[~undefined], theirs[~undefined], atol=1e-6)
    assert (theirs[undefined] == 0).all()


def test_accumulated_matrix_equals_one_matrix_of_everything():
    batches = [_batch(seed) for seed in range(3)]
    summed = sum((confusion_matrix(p, t, 5, ignore_index=0) for p, t in batches[1:]),
                 confusion_matrix(*batches[0], 5, ignore_index=0))
    whole = confusion_matrix(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]), 5,
                             ignore_index=0)
    assert torch.equal(summed.counts, whole.counts)


def test_pixel_accuracy_and_scores():
    pred, target = _batch(1)
    scores = torch.nn.functional.one_hot(pred, 5).permute(0, 3, 1, 2).float()
    cm = confusion_matrix(scores, target, 5, ignore_index=0)
    keep = target != 0
    assert cm.pixel_accuracy == pytest.approx(float((pred[keep] == target[keep]).float().mean()))
    assert torch.equal(cm.counts, confusion_matrix(pred, target, 5, ignore_index=0).counts)


def test_predicted_but_absent_class_counts_zero():
    target = torch.tensor([[[1, 1, 2, 2]]])
    pred = torch.tensor([[[1, 1, 2, 3]]])
    cm = confusion_matrix(pred, target, 4, ignore_index=0)
    assert cm.iou[3] == 0 and cm.iou[2] == 0.5 and cm.iou[1] == 1
    assert cm.mean_iou == pytest.approx(0.5)
    empty = confusion_matrix(target, torch.zeros_like(target), 4, ignore_index=0)
    assert math.isnan(empty.mean_iou) and math.isnan(empty.pixel_accuracy)


def test_bad_inputs_are_named():
    pred, target = _batch(2)
    with pytest.raises(InputError, match="targets must be class ids in \\[0, 4\\) or 0"):
        confusion_matrix(pred, target, 4, ignore_index=0)
    with pytest.raises(InputError, match="predictions .* must have the same shape"):
        confusion_matrix(pred[:, :3], target, 5)
    with pytest.raises(InputError, match="scores must be \\[B, 5, H, W\\]"):
        confusion_matrix(torch.randn(2, 4, 6, 7), target, 5)
    with pytest.raises(InputError, match="cannot add"):
        confusion_matrix(pred, target, 5, ignore_index=0) + confusion_matrix(pred, target, 5, ignore_index=None)
