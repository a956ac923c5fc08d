"""Continual-learning metrics: direct formulas, and continuum 1.2.7's Logger on the same predictions."""

import importlib.util
import sys
import types

import numpy as np
import pytest

from mmseq.continual.metrics import (AccuracyMatrix, average_incremental_accuracy, backward_transfer, forgetting,
                                     stream_summary)
from mmseq.errors import InputError


def continuum_logger():
    """continuum's ``Logger`` without running ``continuum/__init__`` (which imports its datasets and their
    dependencies; the metrics need numpy and torch only). Installed with ``pip install --no-deps``."""
    if "continuum" not in sys.modules:
        spec = importlib.util.find_spec("continuum")
        if spec is None:
            pytest.fail("continuum is a test dependency: pip install --no-deps continuum==1.2.7 (README)")
        package = types.ModuleType("continuum")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["continuum"] = package
    from continuum.metrics.logger import Logger

    return Logger(list_subsets=["test"])


def random_stream(num_tasks, seed, items=60, classes_per_task=3):
    """Per task: predictions, targets and item task ids of the test items of every seen class."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(num_tasks):
        k = rng.integers(0, t + 1, items)
        k[: t + 1] = np.arange(t + 1)  # every seen task has test items
        y = k * classes_per_task + rng.integers(0, classes_per_task, items)
        right = rng.random(items) < rng.uniform(0.3, 0.95, t + 1)[k]
        p = np.where(right, y, (y + 1) % (num_tasks * classes_per_task))
        out.append((p, y, k))
    return out


@pytest.mark.parametrize("num_tasks,seed", [(2, 0), (3, 1), (6, 2), (10, 3)])
def test_equal_continuum_logger(num_tasks, seed):
    stream = random_stream(num_tasks, seed)
    logger, acc = continuum_logger(), AccuracyMatrix(num_tasks)
    for t, (p, y, k) in enumerate(stream):
        logger.add([p, y, k], subset="test")
        acc.add(t, p, y, k)
        if t < num_tasks - 1:
            logger.end_task()
    ours = acc.summary(convention="continuum")
    assert ours["avg_acc"] == pytest.approx(logger.average_incremental_accuracy, abs=1e-12)
    assert ours["last_acc"] == pytest.approx(logger.accuracy, abs=1e-12)
    assert ours["bwt"] == pytest.approx(logger.backward_transfer, abs=1e-12)
    assert ours["forgetting"] == pytest.approx(logger.forgetting, abs=1e-12)


def test_paper_definitions_against_direct_formulas():
    R = np.array([[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.5, 0.7, 0.95]])
    # GEM: mean over j < T-1 of R[T-1, j] - R[j, j]
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    # Chaudhry: best of rows 0..T-2 minus the last row
    assert forgetting(R) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    R2 = np.array([[0.5, 0, 0], [0.8, 0.6, 0], [0.7, 0.9, 0.9]])  # accuracy on task 0 rose before it fell
    assert forgetting(R2) == pytest.approx(((0.8 - 0.7) + (0.6 - 0.9)) / 2)
    assert backward_transfer(R2) == pytest.approx(((0.7 - 0.5) + (0.9 - 0.6)) / 2)
    assert backward_transfer([[0.7]]) == 0.0 and forgetting([[0.7]]) == 0.0
    assert average_incremental_accuracy([0.9, 0.7, 0.5]) == pytest.approx(0.7)
    s = stream_summary(R, [0.9, 0.7, 0.6])
    assert s == pytest.approx({"avg_acc": 0.7333333333, "last_acc": 0.6, "bwt": -0.25, "forgetting": 0.25})


def test_accuracy_matrix_entries_and_pooled_accuracy():
    acc = AccuracyMatrix(2)
    acc.add(0, [0, 1, 1], [0, 1, 0], [0, 0, 0])
    acc.add(1, [0, 0, 2, 3, 3], [0, 1, 2, 3, 2], [0, 0, 1, 1, 1])
    assert acc.R[0, 0] == pytest.approx(2 / 3)
    assert acc.R[1].tolist() == pytest.approx([0.5, 2 / 3])
    assert acc.seen == pytest.approx([2 / 3, 3 / 5])  # pooled over items, not the mean of the row
    assert acc.to_json()["R"][0][1] is None


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="square"):
        backward_transfer([[1.0, 0.5]])
    with pytest.raises(InputError, match="convention"):
        forgetting([[1.0]], convention="avalanche")
    acc = AccuracyMatrix(2)
    with pytest.raises(InputError, match="task 1 given after 0"):
        acc.add(1, [0], [0], [0])
    with pytest.raises(InputError, match="test items of task 1 after training task 0"):
        acc.add(0, [0, 1], [0, 1], [0, 1])
    with pytest.raises(InputError, match="no test item of task 0"):
        acc.add(0, [0], [0], [-1])
    with pytest.raises(InputError, match="1 of 2 tasks"):
        acc.add(0, [0], [0], [0])
        acc.summary()
