"""Point-cloud tasks of the Point-MAE / Point-M2AE / I2P-MAE family on the synthetic point sets (or the public
ShapeNet-55 / ModelNet40 / ScanObjectNN files in the same layouts; :mod:`mmseq.data.vision.readers_points`).

* ``point_views_teacher``: the embedded 2-D teacher (:class:`~mmseq.models.i2p_mae.DepthViewTeacher`) learns the
  classes from the three projected depth views of each cloud (cross-entropy over views), so that its attention and
  features mean something when I2P-MAE pre-trains against it.
* ``point_pretrain``: masked point modelling on the pool (ShapeNet-55 role): the model's own loss (Chamfer L2; plus
  the 2-D term for I2P-MAE), with Point-MAE's scale-and-translate augmentation. Its ``evaluate`` is the frozen-feature
  protocols: the **linear SVM** (scikit-learn ``SVC(kernel="linear", C=0.01)`` on the pooled tokens of the clean
  set's train split, accuracy on its test split, as the official ``runner_test_svm``), and with
  ``fewshot_episodes > 0`` **few-shot episodes** (``way`` classes, ``shot`` train clouds each, ``query`` test clouds
  each; the same SVM on frozen features per episode; mean and standard deviation of the episode accuracies). The
  official few-shot protocol fine-tunes the whole network per episode; the frozen-feature variant is cheaper and is
  what this task measures.
* ``point_classification``: fine-tuning a classifier on the clean set (ModelNet40 role) or the hard scans
  (ScanObjectNN ``PB_T50_RS`` role), with accuracy and, in ``evaluate``, voting accuracy (logits averaged over
  ``votes`` scale-and-translate copies of each test cloud, as the official voting).

``mmseq eval CONFIG --checkpoint DIR`` runs the same evaluations on a saved model (the SVM and few-shot recipes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.data.vision.readers_points import SCANOBJECTNN_VARIANTS, ModelNet40H5, ScanObjectNN, ShapeNet55
from mmseq.data.vision.transforms import Compose, TransformedDataset
from mmseq.data.vision.transforms_points import (NormalizeUnitSphere, RandomSubsample, normalize_unit_sphere,
                                                 scale_and_translate)
from mmseq.errors import ConfigError, InputError
from mmseq.nn.points import farthest_point_sample, gather_points
from mmseq.tasks.base import ListDataset, Ratio, Task, register_task

SETS = ("clean", "hard")


# --- data ---------------------------------------------------------------------------------------------------------

def labelled_set(root: str, which: str, split: str, variant: str = "pb_t50_rs"):
    """The clean (``modelnet40_ply_hdf5_2048``) or hard (``h5_files``, ScanObjectNN ``variant``, by default
    PB_T50_RS) split under ``root``."""
    if which not in SETS:
        raise ConfigError(f"point set must be one of {SETS}, got {which!r}")
    if which == "clean":
        return ModelNet40H5(Path(root) / "modelnet40_ply_hdf5_2048", split)
    return ScanObjectNN(Path(root) / "h5_files", split, variant)


def subsampled(dataset, num_points: int, train: bool, seed: int) -> Dataset:
    """Training: a random ``num_points`` of each cloud (fixed per item), normalised to the unit sphere. Evaluation:
    FPS from index 0 (as the official CUDA kernel), normalised, computed once for the whole split in batches."""
    if train:
        return TransformedDataset(dataset, Compose([RandomSubsample(num_points), NormalizeUnitSphere()]), seed=seed)
    items = [dict(dataset[i]) for i in range(len(dataset))]
    for start in range(0, len(items), 64):
        chunk = items[start : start + 64]
        sizes = {item["points"].shape[0] for item in chunk}
        if len(sizes) == 1 and sizes.pop() > num_points:
            clouds = torch.stack([item["points"][:, :3] for item in chunk])
            picked = gather_points(clouds, farthest_point_sample(clouds, num_points))
        else:
            picked = [item["points"][:, :3] if len(item["points"]) <= num_points else
                      gather_points(item["points"][None, :, :3],
                                    farthest_point_sample(item["points"][None, :, :3], num_points))[0]
                      for item in chunk]
        for item, points in zip(chunk, picked):
            item["points"] = normalize_unit_sphere(points)
    split = ListDataset(items)
    split.classes = getattr(dataset, "classes", None) or getattr(dataset, "class_names", None)
    return split


def collate_points(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    batch = {"points": torch.stack([item["points"][:, :3] for item in items])}
    if "label" in items[0]:
        batch["label"] = torch.tensor([int(item["label"]) for item in items])
    return batch


def augment(points: Tensor) -> Tensor:
    """Point-MAE's training-loop ``PointcloudScaleAndTranslate``, drawn from the (seeded) global torch RNG."""
    seed = int(torch.randint(0, 2**62, (1,)))
    return scale_and_translate(points, torch.Generator(device=points.device).manual_seed(seed))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.zeros(())).device


# --- frozen-feature protocols -------------------------------------------------------------------------------------

@torch.no_grad()
def frozen_features(model: nn.Module, dataset, pooling: str, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``model.features`` of every cloud of ``dataset`` (eval mode) and their labels."""
    if not hasattr(model, "features"):
        raise InputError(f"a {type(model).__name__} has no features(points) for the frozen-feature protocols")
    was_training = model.training
    model.eval()
    device, feats, labels = _device(model), [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate_points([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        feats.append(model.features(batch["points"].to(device), pooling=pooling).float().cpu().numpy())
        labels.append(batch["label"].numpy())
    model.train(was_training)
    return np.concatenate(feats), np.concatenate(labels)


def linear_svm_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                        c: float = 0.01) -> float:
    """Accuracy of ``SVC(kernel="linear", C=c)`` fitted on ``train`` features, on ``test``."""
    from sklearn.svm import SVC

    svm = SVC(kernel="linear", C=c).fit(*train)
    return float((svm.predict(test[0]) == test[1]).mean())


def few_shot_episodes(train_labels: np.ndarray, test_labels: np.ndarray, way: int, shot: int, query: int,
                      episodes: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``episodes`` pairs of (support indices into train, query indices into test): ``way`` classes with at least
    ``shot`` train and ``query`` test clouds, ``shot`` and ``query`` of each drawn without replacement."""
    rng = np.random.default_rng(seed)
    classes = [c for c in np.unique(train_labels)
               if (train_labels == c).sum() >= shot and (test_labels == c).sum() >= query]
    if len(classes) < way:
        raise ConfigError(f"few-shot: only {len(classes)} classes have {shot} train and {query} test clouds, "
                          f"{way} wanted")
    out = []
    for _ in range(episodes):
        chosen = rng.choice(classes, way, replace=False)
        support = np.concatenate([rng.choice(np.flatnonzero(train_labels == c), shot, replace=False) for c in chosen])
        queries = np.concatenate([rng.choice(np.flatnonzero(test_labels == c), query, replace=False) for c in chosen])
        out.append((support, queries))
    return out


# --- point_views_teacher ------------------------------------------------------------------------------------------

@dataclass
class TeacherConfig:
    """Args: ``root`` of the point product; ``num_points`` per cloud."""

    root: str = "data/synth_points"
    num_points: int = 1024


@register_task(config=TeacherConfig)
def point_views_teacher(cfg: TeacherConfig) -> Task:
    train = subsampled(labelled_set(cfg.root, "clean", "train"), cfg.num_points, True, 0)
    test = subsampled(labelled_set(cfg.root, "clean", "test"), cfg.num_points, False, 1)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Ratio]]:
        points = augment(batch["points"]) if model.training else batch["points"]
        images, _ = model.project(points)  # three views, view-major
        logits = model(images)
        labels = batch["label"].repeat(3)
        correct = float((logits.argmax(-1) == labels).sum())
        return F.cross_entropy(logits, labels), {"accuracy": Ratio(correct, float(len(labels)))}

    return Task(train, test, collate_points, loss, test_set=test, info={"classes": list(test.classes or [])})


# --- point_pretrain -----------------------------------------------------------------------------------------------

@dataclass
class PretrainConfig:
    """Args:
        root: the point product (``ShapeNet55-34`` pool, ``modelnet40_ply_hdf5_2048`` clean set).
        num_points: points per pre-training cloud (official: 1024 Point-MAE, 2048 Point-M2AE / I2P-MAE).
        svm_points: points per SVM cloud (official: 1024).
        pooling: token pooling of the frozen features (``sum`` = mean + max, ``max``, ``mean``, ``concat``).
        svm_c: the SVM's C (official 0.01).
        fewshot_way / fewshot_shot / fewshot_query / fewshot_episodes: episodes on the clean set (0 episodes: off).
        seed: seed of the subsampling and the episodes.
    """

    root: str = "data/synth_points"
    num_points: int = 1024
    svm_points: int = 1024
    pooling: str = "sum"
    svm_c: float = 0.01
    fewshot_way: int = 5
    fewshot_shot: int = 10
    fewshot_query: int = 20
    fewshot_episodes: int = 0
    seed: int = 0


@register_task(config=PretrainConfig)
def point_pretrain(cfg: PretrainConfig) -> Task:
    pool = Path(cfg.root) / "ShapeNet55-34"
    train = subsampled(ShapeNet55(pool, "train", normalize=False), cfg.num_points, True, cfg.seed)
    val = subsampled(ShapeNet55(pool, "test", normalize=False), cfg.num_points, False, cfg.seed + 1)
    svm_train = subsampled(labelled_set(cfg.root, "clean", "train"), cfg.svm_points, False, cfg.seed)
    svm_test = subsampled(labelled_set(cfg.root, "clean", "test"), cfg.svm_points, False, cfg.seed)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        points = augment(batch["points"]) if model.training else batch["points"]
        out = model(points)
        metrics = {"loss_3d": out.loss_3d.item()}
        if out.loss_2d is not None:
            metrics["loss_2d"] = out.loss_2d.item()
        return out.loss, metrics

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        train_feats = frozen_features(model, svm_train, cfg.pooling)
        test_feats = frozen_features(model, svm_test, cfg.pooling)
        metrics = {"svm_accuracy": linear_svm_accuracy(train_feats, test_feats, cfg.svm_c)}
        if cfg.fewshot_episodes > 0:
            scores = [linear_svm_accuracy((train_feats[0][s], train_feats[1][s]), (test_feats[0][q], test_feats[1][q]),
                                          cfg.svm_c)
                      for s, q in few_shot_episodes(train_feats[1], test_feats[1], cfg.fewshot_way, cfg.fewshot_shot,
                                                    cfg.fewshot_query, cfg.fewshot_episodes, cfg.seed)]
            metrics["fewshot_accuracy"] = float(np.mean(scores))
            metrics["fewshot_std"] = float(np.std(scores))
        return metrics

    return Task(train, val, collate_points, loss, test_set=val, evaluate=evaluate,
                info={"pool_clouds": len(train), "svm_train": len(svm_train), "svm_test": len(svm_test)})


# --- point_classification -----------------------------------------------------------------------------------------

@dataclass
class ClassificationConfig:
    """Args: ``root``; ``set`` (``clean`` or ``hard``); ``variant``: the ScanObjectNN variant the hard set reads
    (``obj_bg``, ``obj_only``, ``pb_t50_rs``, ...; the synthetic product writes ``pb_t50_rs`` only); ``num_points``;
    ``label_smoothing``; ``votes`` (voting copies per test cloud in ``evaluate``, 0: off); ``seed``."""

    root: str = "data/synth_points"
    set: str = "hard"
    variant: str = "pb_t50_rs"
    num_points: int = 1024
    label_smoothing: float = 0.0
    votes: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.set not in SETS:
            raise ConfigError(f"task_args.set must be one of {SETS}, got {self.set!r}")
        if self.variant not in SCANOBJECTNN_VARIANTS:
            raise ConfigError(f"task_args.variant must be one of {tuple(SCANOBJECTNN_VARIANTS)}, got "
                              f"{self.variant!r}")


@register_task(config=ClassificationConfig)
def point_classification(cfg: ClassificationConfig) -> Task:
    train = subsampled(labelled_set(cfg.root, cfg.set, "train", cfg.variant), cfg.num_points, True, cfg.seed)
    test = subsampled(labelled_set(cfg.root, cfg.set, "test", cfg.variant), cfg.num_points, False, cfg.seed)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Ratio]]:
        points = augment(batch["points"]) if model.training else batch["points"]
        logits = model(points)
        correct = float((logits.argmax(-1) == batch["label"]).sum())
        return (F.cross_entropy(logits, batch["label"], label_smoothing=cfg.label_smoothing),
                {"accuracy": Ratio(correct, float(len(batch["label"])))})

    @torch.no_grad()
    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        if cfg.votes < 1:
            return {}
        model.eval()
        device, correct = _device(model), 0
        generator = torch.Generator().manual_seed(cfg.seed)
        for start in range(0, len(test), 32):
            batch = collate_points([test[i] for i in range(start, min(start + 32, len(test)))])
            points = batch["points"]
            logits = sum(model(scale_and_translate(points, generator).to(device)) for _ in range(cfg.votes))
            correct += int((logits.argmax(-1).cpu() == batch["label"]).sum())
        return {"vote_accuracy": correct / len(test)}

    return Task(train, test, collate_points, loss, test_set=test, evaluate=evaluate,
                info={"set": cfg.set, "variant": cfg.variant if cfg.set == "hard" else None,
                      "classes": list(test.classes or [])})
