"""The task contract: :class:`Task`, exact metrics (:class:`Ratio`), callbacks and the task registry.

Tasks are what the shared training loop trains and evaluates: data, a loss and an evaluation.

A task builder is registered with ``@register_task(config=SomeDataclass)``; a recipe's ``task_args`` are validated
against that dataclass and the builder returns a :class:`Task`. The loop (:mod:`mmseq.train`) owns batching,
devices, precision, DDP, checkpoints and logs, so a task never touches them. One file per family:
:mod:`mmseq.tasks.core` (the embedded ``sequence_reversal``), :mod:`mmseq.tasks.tera`, ...

Metrics a loss returns are per-item averages over its batch (floats, averaged over a split weighted by batch size),
or exact ratios (:class:`Ratio`: numerator and denominator summed over the split, e.g. correct frames over labelled
frames). A task's optional ``evaluate(model, split)`` adds metrics that need more than a teacher-forced batch
(generation-based accuracy, WER, BLEU); the loop runs it on validation and, at the end, on the test split.
:class:`Callback` objects (the task's and the caller's) draw plots and samples at validation and at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.config import from_dict
from mmseq.data.samplers import BatchPlan, FixedSizeBatches
from mmseq.errors import ConfigError, unknown_choice


class Ratio(NamedTuple):
    """An exact metric: ``numerator / denominator`` with both summed over a split before dividing."""

    numerator: float
    denominator: float


# loss(model, batch) -> (scalar loss averaged over items, {metric: per-item average or Ratio})
LossFn = Callable[[nn.Module, Any], tuple[Tensor, dict[str, "float | Ratio"]]]


@dataclass
class RunContext:
    """What a callback sees: the run's output folder, the step, the model being trained, its task and config, and
    at the end the best checkpoint's model (``best_model``; None before the end or without a validation set)."""

    out_dir: Path
    step: int
    model: nn.Module
    task: Task
    config: Any
    best_model: nn.Module | None = None


class Callback:
    """Hooks the loop calls on rank 0; override the ones you need (each does nothing by default)."""

    def on_validation(self, run: RunContext, metrics: dict[str, float]) -> None:
        """After each validation, with its metrics."""

    def on_train_end(self, run: RunContext, summary: dict[str, Any]) -> None:
        """After training and the test evaluation, with the summary written to ``metrics.json``."""


class ListDataset(Dataset):
    """A map-style dataset over a list of prepared items."""

    def __init__(self, items: Sequence[Any]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def _batch_size(batch: Any) -> int:
    return len(next(iter(batch.values())))


@dataclass
class Adversary:
    """A second network trained against the model, as a GAN's discriminator is (:mod:`mmseq.tasks.hifigan`).

    With one, every training step of the loop takes two optimizer steps on the same batch: the adversary's
    (``adversary_loss``, on the model's output detached), then the model's (``model_loss``, against the
    just-updated adversary, whose parameters get no gradient then). ``generate`` runs the model once per batch and
    both steps share its output. The adversary has its own optimizer (``adversary_optim`` in the run config) and the
    run's schedule; its weights and optimizer state live in the resumable training state only, while ``best/`` and
    the checkpoints' models hold the model alone. ``Task.loss`` stays what validation and test evaluate.

    Attributes:
        module: the adversary (e.g. HiFi-GAN's discriminators); the loop moves, wraps (DDP) and trains it.
        generate: ``generate(model, batch) -> generated``, the model's output both steps judge.
        adversary_loss: ``(adversary, batch, generated) -> (loss, metrics)``; ``generated`` is detached.
        model_loss: ``(adversary, batch, generated) -> (loss, metrics)``, the loss the model is trained on.
    """

    module: nn.Module
    generate: Callable[[nn.Module, Any], Any]
    adversary_loss: Callable[[nn.Module, Any, Any], tuple[Tensor, dict[str, "float | Ratio"]]]
    model_loss: Callable[[nn.Module, Any, Any], tuple[Tensor, dict[str, "float | Ratio"]]]


@dataclass
class Task:
    """Datasets, how to batch them, the loss, and what else to evaluate.

    Attributes:
        train_set / val_set / test_set: map-style datasets (val and test optional).
        collate: list of items -> batch (tensors are moved to the device by the loop).
        eval_collate: the collate of validation and test batches when it differs (e.g. no random crops).
        loss: ``loss(model, batch) -> (loss, metrics)`` (see the module notes).
        train_plan: batch plan for training given ``(batch_size, seed)``; default: fixed-size shuffled batches.
        batch_size_of: number of items in a collated batch (weights the per-item averages of a split).
        evaluate: ``evaluate(model, split) -> metrics`` for ``split`` in ``"val"``, ``"test"``: metrics that are
            not per-batch averages of the loss (generation). They join, and replace same-named, loss metrics.
        callbacks: plots and exports the task makes (see :class:`Callback`).
        info: facts about the task recorded in the run's ``metrics.json`` (e.g. number of classes).
        adversary: trained against the model (a GAN's discriminator, see :class:`Adversary`); training steps then
            use its losses instead of ``loss``.
        prepare_model: ``prepare_model(model)``, called on the model before training (before ``init_from``) and
            before ``mmseq eval`` evaluates a checkpoint: checks the model fits the task and gives it what the
            task made for it, e.g. the tokenizer trained on the corpus, which every checkpoint then saves.
    """

    train_set: Dataset
    val_set: Dataset | None
    collate: Callable[[list[Any]], Any]
    loss: LossFn
    test_set: Dataset | None = None
    eval_collate: Callable[[list[Any]], Any] | None = None
    train_plan: Callable[[int, int], BatchPlan] | None = None
    batch_size_of: Callable[[Any], int] = _batch_size
    evaluate: Callable[[nn.Module, str], dict[str, float]] | None = None
    callbacks: Sequence[Callback] = ()
    info: dict[str, Any] = field(default_factory=dict)
    adversary: Adversary | None = None
    prepare_model: Callable[[nn.Module], None] | None = None

    def plan(self, batch_size: int, seed: int) -> BatchPlan:
        if self.train_plan is not None:
            return self.train_plan(batch_size, seed)
        return FixedSizeBatches(len(self.train_set), batch_size, shuffle=True, seed=seed)

    def split(self, name: str) -> Dataset | None:
        """The dataset of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ConfigError(unknown_choice("split", name, ["train", "val", "test"]))
        return {"train": self.train_set, "val": self.val_set, "test": self.test_set}[name]


_TASKS: dict[str, tuple[Callable[[Any], Task], type]] = {}


def register_task(config: type) -> Callable[[Callable[[Any], Task]], Callable[[Any], Task]]:
    """Register ``builder(cfg) -> Task`` under its function name, with ``config`` as its args dataclass."""

    def wrap(builder: Callable[[Any], Task]) -> Callable[[Any], Task]:
        name = builder.__name__
        if name in _TASKS and _TASKS[name][0] is not builder:
            raise ValueError(f"task {name!r} is registered twice")
        _TASKS[name] = (builder, config)
        return builder

    return wrap


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def task_config(name: str) -> type:
    """The dataclass a task's ``task_args`` are validated against."""
    if name not in _TASKS:
        raise ConfigError(unknown_choice("task", name, _TASKS))
    return _TASKS[name][1]


def build_task(name: str, args: dict[str, Any] | Any) -> Task:
    """Build a registered task from its ``task_args`` (a mapping, or its config dataclass)."""
    config = task_config(name)
    cfg = args if isinstance(args, config) else from_dict(config, dict(args), where="task_args")
    return _TASKS[name][0](cfg)

