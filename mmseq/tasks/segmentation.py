"""``semantic_segmentation``: RGB-D semantic segmentation (AdapNet++, SSMA and their baselines) on the synthetic
scenes or a public RGB-D dataset, for every model of :mod:`mmseq.models.adapnet` / :mod:`mmseq.models.ssma`.

* **Data**: ``dataset`` names the reader (:data:`DATASETS`): ``synth_scenes`` (``mmseq data synth scenes``, 11
  classes + void, each frame's condition from its ``scenes.json``), ``cityscapes`` (``label_set`` ``adapnet11``:
  AdapNet++'s 11 classes + void, or ``train_ids``: the standard 19, void 255), ``freiburg_forest`` (5 + void),
  ``sunrgbd`` (37 + void) and ``scannet`` (``benchmark20``: 20 + void). Datasets without a validation split
  (Freiburg Forest, SUN RGB-D) hold out a seeded ``val_fraction`` of the training frames.
* **Augmentation** (training only, :mod:`mmseq.data.vision.transforms`): resize to ``size``, random scale in
  ``scale``, random crop back to ``size`` (padding labelled void), horizontal flip, colour jitter on the RGB only.
  Every draw comes from a generator seeded from the global RNG in the collate function, which the training loop
  checkpoints, so a resumed run augments as an uninterrupted one and every epoch differently. Evaluation resizes
  to ``size`` (labels by nearest neighbour) and nothing else.
* **Inputs**: RGB ImageNet-normalised; depth encoded by :func:`encode_depth` (``linear``: metres / ``max_depth``,
  ``inverse``: ``min_depth / depth``, both one channel; ``jet`` or ``hha``: three channels, ImageNet-normalised);
  invalid depth is 0 in the one-channel encodings. The model's ``depth_channels`` must match (checked). Every model
  gets both maps and reads those in its ``inputs``.
* **Loss**: :func:`~mmseq.models.adapnet.segmentation_loss`, ``main + 0.6 aux1 + 0.5 aux2`` (the model's
  ``aux_weights``) with the void class ignored and optional ``class_weights``. In training, BatchNorm layers whose
  parameters are all frozen (stage 2's experts) stay in eval mode, so a frozen expert keeps its statistics too.
* **Evaluation** (:func:`segmentation_metrics`): one confusion matrix per split (:mod:`mmseq.metrics.segmentation`)
  gives ``miou``, ``pixel_accuracy`` and ``iou/<class>``; the synthetic scenes add ``miou/<condition>`` and
  ``pixel_accuracy/<condition>`` for each recorded condition (clear, low light, fog, camouflage, motion blur,
  overexposure). Validation keeps the best ``miou`` when the recipe says so.
* **Grid**: at the end, ``predictions.png`` draws RGB / depth / prediction / ground truth of ``grid_samples`` test
  frames (one per condition first) with a legend, from the best checkpoint.

The three SSMA stages are three runs of this task (``recipes/adapnet``): the unimodal experts; ``ssma_*`` with
``init_from`` the RGB expert and ``init_also`` the depth expert, their encoders and eASPP frozen; then everything
at a low learning rate from stage 2's best model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

from mmseq.data.vision.show import depth_for_display, draw_panel
from mmseq.data.vision.transforms import (IMAGENET_MEAN, IMAGENET_STD, ColourJitter, Compose, RandomCrop,
                                          RandomHorizontalFlip, RandomScale, Resize, colorize_depth_jet, hha_encode)
from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.metrics.segmentation import ConfusionMatrix, confusion_matrix
from mmseq.models.adapnet import segmentation_loss
from mmseq.tasks.base import Callback, Ratio, RunContext, Task, register_task

DATASETS = ("synth_scenes", "cityscapes", "freiburg_forest", "sunrgbd", "scannet")
DEPTH_ENCODINGS = {"linear": 1, "inverse": 1, "jet": 3, "hha": 3}  # encoding -> channels
STRIDE = 16  # AdapNet++'s output stride: sizes must be multiples of it


@dataclass
class SegmentationConfig:
    dataset: str = "synth_scenes"  # one of DATASETS
    root: str = "data/synth_scenes"
    label_set: str = ""  # cityscapes: adapnet11 (default) | train_ids; scannet: benchmark20 (default)
    train_split: str = "train"
    val_split: str = "val"  # "": hold out val_fraction of the training frames
    test_split: str = "test"  # "": no test split
    val_fraction: float = 0.1  # only when val_split is ""
    size: list[int] = field(default_factory=lambda: [192, 384])  # (height, width), multiples of 16
    scale: list[float] = field(default_factory=lambda: [0.5, 2.0])  # random scale range (AdapNet++: 0.5-2.0)
    flip: bool = True
    colour_jitter: float = 0.2  # brightness, contrast and saturation strength on the RGB (0: none)
    depth_encoding: str = "linear"  # linear | inverse | jet | hha (see encode_depth)
    max_depth: float = 60.0  # linear / jet: depth shown as 1 / dark red (synthetic streets reach 60 m)
    min_depth: float = 0.5  # inverse: min_depth / depth (the synthetic sensor's nearest range)
    class_weights: list[float] = field(default_factory=list)  # one per class (void's is unused); []: all 1
    max_train: int = 0  # > 0: only the first N training frames (tests)
    max_eval: int = 0  # > 0: only the first N validation and test frames
    eval_batch_size: int = 8
    grid_samples: int = 6
    seed: int = 0  # the held-out split's seed

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(unknown_choice("task_args.dataset", self.dataset, DATASETS))
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ConfigError(unknown_choice("task_args.depth_encoding", self.depth_encoding, DEPTH_ENCODINGS))
        if len(self.size) != 2 or any(s < STRIDE or s % STRIDE for s in self.size):
            raise ConfigError(f"task_args.size must be [height, width], multiples of {STRIDE}, got {self.size}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"task_args.scale must be [low, high] with 0 < low <= high, got {self.scale}")
        if not 0 <= self.colour_jitter < 1:
            raise ConfigError(f"task_args.colour_jitter must lie in [0, 1), got {self.colour_jitter}")
        if self.max_depth <= 0 or self.min_depth <= 0:
            raise ConfigError("task_args.max_depth and min_depth must be > 0")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"task_args.val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.eval_batch_size < 1:
            raise ConfigError(f"task_args.eval_batch_size must be >= 1, got {self.eval_batch_size}")


# --- inputs --------------------------------------------------------------------------------------------------------

def encode_depth(depth: Tensor, encoding: str, max_depth: float = 60.0, min_depth: float = 0.5,
                 intrinsics: Tensor | None = None) -> Tensor:
    """A depth map as network input.

    Args:
        depth: ``[H, W]`` metres (or the dataset's unit), 0 = invalid.
        encoding: ``linear`` (``clip(depth, 0, max_depth) / max_depth``), ``inverse`` (``min(min_depth / depth,
            1)``), ``jet`` (jet colours from 0 to ``max_depth``) or ``hha`` (needs ``intrinsics``); the three-channel
            ones ImageNet-normalised.
        intrinsics: ``[3, 3]`` pinhole matrix of ``depth``'s pixels (``hha`` only).

    Returns:
        ``float32 [C, H, W]`` with ``C`` = :data:`DEPTH_ENCODINGS` ``[encoding]``; invalid pixels 0 (one channel).
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ConfigError(unknown_choice("depth encoding", encoding, DEPTH_ENCODINGS))
    depth = torch.as_tensor(depth).float()
    if depth.dim() != 2:
        raise InputError(f"depth must be one [H, W] map, got shape {list(depth.shape)}")
    valid = depth > 0
    if encoding == "linear":
        return (depth.clamp(0, max_depth) / max_depth)[None]
    if encoding == "inverse":
        return torch.where(valid, (min_depth / depth.clamp(min=1e-6)).clamp(max=1.0), torch.zeros_like(depth))[None]
    if encoding == "jet":
        coloured = colorize_depth_jet(depth, 0.0, max_depth)
    else:
        if intrinsics is None:
            raise InputError("depth_encoding 'hha' needs the camera intrinsics of the depth map")
        coloured = hha_encode(depth, intrinsics)
    return _imagenet(coloured)


def _imagenet(image: Tensor) -> Tensor:
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def encode_rgb(image: Tensor) -> Tensor:
    """``uint8 [3, H, W]`` -> ImageNet-normalised ``float32 [3, H, W]``."""
    return _imagenet(image)


# --- datasets ------------------------------------------------------------------------------------------------------

@dataclass
class LabelSpace:
    classes: tuple[str, ...]
    ignore_index: int
    colours: np.ndarray  # [classes, 3] in [0, 1]


def class_colours(n: int) -> np.ndarray:
    """A distinct colour per class (matplotlib's tab20, then its lighter half), ``[n, 3]`` in [0, 1]."""
    from matplotlib import colormaps

    tab = colormaps["tab20"](np.linspace(0, 1, 20))[:, :3]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return np.array([tab[order[i % 20]] for i in range(n)])


def label_space(cfg: SegmentationConfig) -> LabelSpace:
    """Class names, void id and colours of the configured dataset and label set."""
    from mmseq.data.vision import readers_rgbd as rgbd
    from mmseq.data.vision import synth_scenes

    if cfg.dataset == "synth_scenes":
        return LabelSpace(synth_scenes.SCENE_CLASSES, 0, np.array(synth_scenes.CLASS_COLOURS) / 255.0)
    if cfg.dataset == "cityscapes":
        label_set = cfg.label_set or "adapnet11"
        if label_set == "adapnet11":
            return LabelSpace(rgbd.ADAPNET11_CLASSES, 0, class_colours(len(rgbd.ADAPNET11_CLASSES)))
        if label_set == "train_ids":
            return LabelSpace(rgbd.CITYSCAPES_CLASSES, 255, class_colours(len(rgbd.CITYSCAPES_CLASSES)))
        raise ConfigError(unknown_choice("task_args.label_set (cityscapes)", label_set, ["adapnet11", "train_ids"]))
    if cfg.dataset == "freiburg_forest":
        return LabelSpace(rgbd.FREIBURG_FOREST_CLASSES, 0, class_colours(len(rgbd.FREIBURG_FOREST_CLASSES)))
    if cfg.dataset == "sunrgbd":
        return LabelSpace(rgbd.SUNRGBD_CLASSES, 0, class_colours(len(rgbd.SUNRGBD_CLASSES)))
    label_set = cfg.label_set or "benchmark20"
    if label_set != "benchmark20":
        raise ConfigError(unknown_choice("task_args.label_set (scannet)", label_set, ["benchmark20"]))
    return LabelSpace(rgbd.SCANNET20_CLASSES, 0, class_colours(len(rgbd.SCANNET20_CLASSES)))


def open_split(cfg: SegmentationConfig, split: str) -> tuple[Dataset, list[str]]:
    """The reader of ``split`` and each frame's condition (``"all"`` where the dataset records none)."""
    from mmseq.data.vision import readers_rgbd as rgbd

    if cfg.dataset == "synth_scenes":
        reader: Dataset = rgbd.Cityscapes(cfg.root, split, label_set="label_ids")
        marker = Path(cfg.root) / "scenes.json"
        try:
            frames = json.loads(marker.read_text())["frames"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise InputError(f"cannot read the frame conditions of {str(marker)!r}: {e}") from None
        condition = {f["id"]: f["condition"] for f in frames}
        return reader, [condition.get(frame, "all") for frame in reader.frames]
    if cfg.dataset == "cityscapes":
        reader = rgbd.Cityscapes(cfg.root, split, label_set=cfg.label_set or "adapnet11")
    elif cfg.dataset == "freiburg_forest":
        reader = rgbd.FreiburgForest(cfg.root, split)
    elif cfg.dataset == "sunrgbd":
        reader = rgbd.SUNRGBD(cfg.root, split)
    else:
        reader = rgbd.ScanNet2D(cfg.root, split, label_set=cfg.label_set or "benchmark20")
    return reader, ["all"] * len(reader)


class SegmentationFrames(Dataset):
    """Frames of a reader (a subset of its indices) as dicts of ``image``, ``depth``, ``label``, ``intrinsics``
    (when known), ``index`` (position in this split) and ``condition``."""

    def __init__(self, reader: Dataset, conditions: list[str], indices: Sequence[int]):
        self.reader, self.indices = reader, list(indices)
        self.conditions = [conditions[i] for i in self.indices]
        self._all_conditions = conditions

    def take(self, n: int) -> SegmentationFrames:
        """The first ``n`` frames."""
        return SegmentationFrames(self.reader, self._all_conditions, self.indices[:n])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.reader[self.indices[i]]
        for key in ("image", "depth", "label"):
            if key not in item:
                raise InputError(f"frame {item.get('id', i)!r} has no {key!r}")
        out = {key: item[key] for key in ("image", "depth", "label", "intrinsics") if key in item}
        out.update(index=i, condition=self.conditions[i])
        return out


def build_splits(cfg: SegmentationConfig) -> dict[str, SegmentationFrames | None]:
    reader, conditions = open_split(cfg, cfg.train_split)
    indices = list(range(len(reader)))
    splits: dict[str, SegmentationFrames | None] = {"val": None, "test": None}
    if cfg.val_split:
        val_reader, val_conditions = open_split(cfg, cfg.val_split)
        splits["val"] = SegmentationFrames(val_reader, val_conditions, range(len(val_reader)))
    elif cfg.val_fraction > 0:
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        held = max(1, round(cfg.val_fraction * len(indices)))
        splits["val"] = SegmentationFrames(reader, conditions, sorted(order[:held]))
        indices = sorted(order[held:])
    if cfg.max_train:
        indices = indices[: cfg.max_train]
    splits["train"] = SegmentationFrames(reader, conditions, indices)
    if cfg.test_split:
        test_reader, test_conditions = open_split(cfg, cfg.test_split)
        splits["test"] = SegmentationFrames(test_reader, test_conditions, range(len(test_reader)))
    if cfg.max_eval:
        for name in ("val", "test"):
            if splits[name] is not None:
                splits[name] = splits[name].take(cfg.max_eval)
    if len(splits["train"]) < 2:
        raise ConfigError(f"semantic_segmentation needs at least 2 training frames (BatchNorm), "
                          f"{cfg.root} {cfg.train_split} has {len(splits['train'])}")
    return splits


# --- transforms and batches ----------------------------------------------------------------------------------------

class Prepared:
    """Geometric (and, in training, photometric) transforms, then the network inputs: ``rgb [3, H, W]``,
    ``depth [C, H, W]`` (:func:`encode_depth`) and ``label [H, W]``."""

    def __init__(self, cfg: SegmentationConfig, ignore_index: int, train: bool):
        size = tuple(cfg.size)
        steps: list[Any] = [Resize(size)]
        if train:
            steps += [RandomScale(*cfg.scale), RandomCrop(size, label_fill=ignore_index)]
            if cfg.flip:
                steps.append(RandomHorizontalFlip())
            if cfg.colour_jitter > 0:
                steps.append(ColourJitter(cfg.colour_jitter, cfg.colour_jitter, cfg.colour_jitter))
        self.transform, self.cfg = Compose(steps), cfg

    def __call__(self, item: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        sample = self.transform(dict(item), generator)
        depth = encode_depth(sample["depth"], self.cfg.depth_encoding, self.cfg.max_depth, self.cfg.min_depth,
                             sample.get("intrinsics"))
        return {"rgb": encode_rgb(sample["image"]), "depth": depth, "label": sample["label"].long(),
                "index": item["index"]}


def collate_frames(items: list[dict[str, Any]], prepare: Prepared, random: bool) -> dict[str, Tensor]:
    """Prepared frames stacked: ``rgb [B, 3, H, W]``, ``depth [B, C, H, W]``, ``label [B, H, W]``, ``index [B]``.
    ``random``: each frame's augmentation generator is seeded from the global torch RNG (checkpointed by the loop)."""
    prepared = []
    for item in items:
        seed = int(torch.randint(0, 2**62, (1,))) if random else 0
        prepared.append(prepare(item, torch.Generator().manual_seed(seed)))
    return {"rgb": torch.stack([p["rgb"] for p in prepared]), "depth": torch.stack([p["depth"] for p in prepared]),
            "label": torch.stack([p["label"] for p in prepared]),
            "index": torch.tensor([p["index"] for p in prepared])}


# --- loss and evaluation -------------------------------------------------------------------------------------------

def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """BatchNorm layers whose affine parameters are all frozen stop updating their running statistics."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def check_model(model: nn.Module, space: LabelSpace, cfg: SegmentationConfig) -> None:
    """The model reads RGB and/or depth with the encoding's channels and writes segmentation."""
    inner = unwrap(model)
    if getattr(inner, "writes", None) != "segmentation":
        raise ConfigError(f"semantic_segmentation needs a segmentation model (adapnet_pp*, ssma*, deeplabv3_*), "
                          f"got {type(inner).__name__}")
    channels = DEPTH_ENCODINGS[cfg.depth_encoding]
    if "depth" in inner.inputs and inner.depth_channels != channels:
        raise ConfigError(f"task_args.depth_encoding={cfg.depth_encoding!r} gives {channels} depth channel(s) but "
                          f"the model takes {inner.depth_channels}; set model_args.depth_channels={channels}")


@torch.no_grad()
def predict(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Arg-max labels ``[B, H, W]`` of a prepared batch (on the model's device)."""
    device = next(model.parameters()).device
    return model(rgb=batch["rgb"].to(device), depth=batch["depth"].to(device)).logits.argmax(1).cpu()


@torch.no_grad()
def segmentation_metrics(model: nn.Module, frames: SegmentationFrames, prepare: Prepared, space: LabelSpace,
                         batch_size: int) -> dict[str, float]:
    """mIoU, pixel accuracy and per-class IoU of ``frames`` (one confusion matrix), and per condition when the
    frames record more than one."""
    inner = unwrap(model)
    was_training = inner.training
    inner.eval()
    n = len(space.classes)
    per_condition: dict[str, ConfusionMatrix] = {}
    for start in range(0, len(frames), batch_size):
        items = [frames[i] for i in range(start, min(start + batch_size, len(frames)))]
        batch = collate_frames(items, prepare, random=False)
        predicted = predict(inner, batch)
        for item, pred, target in zip(items, predicted, batch["label"]):
            cm = confusion_matrix(pred[None], target[None], n, space.ignore_index)
            c = item["condition"]
            per_condition[c] = per_condition[c] + cm if c in per_condition else cm
    inner.train(was_training)
    if not per_condition:
        return {}
    total = sum(per_condition.values(), ConfusionMatrix(torch.zeros(n, n, dtype=torch.int64), space.ignore_index))
    metrics = {"miou": total.mean_iou, "pixel_accuracy": total.pixel_accuracy}
    for name, iou in zip(space.classes, total.iou.tolist()):
        if not np.isnan(iou):
            metrics[f"iou/{name}"] = iou
    if set(per_condition) != {"all"}:
        for condition, cm in sorted(per_condition.items()):
            metrics[f"miou/{condition}"] = cm.mean_iou
            metrics[f"pixel_accuracy/{condition}"] = cm.pixel_accuracy
    return metrics


# --- the grid of predictions ---------------------------------------------------------------------------------------

def colour_labels(labels: np.ndarray, colours: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``[H, W]`` ids -> ``[H, W, 3]`` colours in [0, 1] and the mask of pixels with a valid, non-void id."""
    labels = np.asarray(labels).astype(np.int64)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < len(colours))
    rgb = np.zeros((*labels.shape, 3))
    rgb[valid] = colours[labels[valid]]
    return rgb, valid


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, ignore_index: int,
            alpha: float = 0.6) -> np.ndarray:
    """Label colours blended over ``image`` (``[H, W, 3]`` uint8 or [0, 1]) with weight ``alpha``; void shows the
    image."""
    base = np.asarray(image, dtype=np.float64)
    base = base / 255.0 if base.max() > 1.0 else base
    rgb, valid = colour_labels(labels, colours, ignore_index)
    out = base.copy()
    out[valid] = (1 - alpha) * base[valid] + alpha * rgb[valid]
    return out


def draw_grid(rows: Sequence[dict[str, Any]], space: LabelSpace, path: Path, title: str = "") -> Path:
    """One row per frame: RGB, depth, prediction over RGB, ground truth over RGB; a legend of the classes shown.

    Args:
        rows: dicts with ``image`` (``uint8 [H, W, 3]``), ``depth`` (``[H, W]``, 0 invalid), ``prediction`` and
            ``label`` (``[H, W]`` ids) and ``name``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    h, w = rows[0]["label"].shape
    panel = 2.6
    fig, axes = plt.subplots(len(rows), 4, figsize=(4 * panel + 1.8, len(rows) * panel * h / w + 0.5), squeeze=False)
    shown: set[int] = set()
    for r, row in enumerate(rows):
        shown_depth, far = depth_for_display(np.asarray(row["depth"], dtype=np.float64))
        for ids in (row["prediction"], row["label"]):
            ids = np.asarray(ids)
            shown |= {int(i) for i in np.unique(ids) if i != space.ignore_index and 0 <= i < len(space.classes)}
        panels = [(row["image"], f"{row['name']}  RGB"), (shown_depth, "depth"),
                  (overlay(row["image"], row["prediction"], space.colours, space.ignore_index), "prediction"),
                  (overlay(row["image"], row["label"], space.colours, space.ignore_index), "ground truth")]
        for c, (image, name) in enumerate(panels):
            draw_panel(axes[r, c], image, name, 7, far if c == 1 else None)
    handles = [Patch(color=space.colours[i], label=f"{i} {space.classes[i]}") for i in sorted(shown)]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=1 - 1.8 / fig.get_figwidth(), bottom=0.01, top=0.93, wspace=0.03,
                        hspace=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grid_indices(frames: SegmentationFrames, count: int) -> list[int]:
    """One frame per condition first (in order of appearance), then the next frames, ``count`` in all."""
    chosen, seen = [], set()
    for i, c in enumerate(frames.conditions):
        if c not in seen:
            seen.add(c)
            chosen.append(i)
    chosen += [i for i in range(len(frames)) if i not in chosen]
    return chosen[:count]


class PredictionGrid(Callback):
    """``predictions.png`` in the run folder at the end: the best model on ``grid_samples`` test (else validation)
    frames."""

    def __init__(self, frames: SegmentationFrames | None, prepare: Prepared, space: LabelSpace, count: int):
        self.frames, self.prepare, self.space, self.count = frames, prepare, space, count

    def on_train_end(self, run: RunContext, summary: dict[str, Any]) -> None:
        if self.frames is None or self.count < 1 or len(self.frames) == 0:
            return
        model = run.best_model if run.best_model is not None else run.model
        model.eval()
        rows = []
        for i in grid_indices(self.frames, self.count):
            item = self.frames[i]
            shown = self.prepare.transform(dict(item), torch.Generator().manual_seed(0))  # the resize only
            batch = collate_frames([item], self.prepare, random=False)
            rows.append({"image": shown["image"].permute(1, 2, 0).numpy(), "depth": shown["depth"].numpy(),
                         "label": batch["label"][0].numpy(), "prediction": predict(model, batch)[0].numpy(),
                         "name": f"{i} {item['condition']}"})
        path = draw_grid(rows, self.space, run.out_dir / "predictions.png", f"step {run.step}")
        summary.setdefault("plots", []).append(path.name)


# --- the task ------------------------------------------------------------------------------------------------------

@register_task(config=SegmentationConfig)
def semantic_segmentation(cfg: SegmentationConfig) -> Task:
    space = label_space(cfg)
    splits = build_splits(cfg)
    weights = None
    if cfg.class_weights:
        if len(cfg.class_weights) != len(space.classes):
            raise ConfigError(f"task_args.class_weights has {len(cfg.class_weights)} values for "
                              f"{len(space.classes)} classes ({', '.join(space.classes)})")
        weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    train_prep, eval_prep = Prepared(cfg, space.ignore_index, True), Prepared(cfg, space.ignore_index, False)

    def prepare_model(model: nn.Module) -> None:
        check_model(model, space, cfg)
        unwrap(model).labels = list(space.classes)

    def loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        inner = unwrap(model)
        if inner.training:
            keep_frozen_norms_in_eval(inner)
        out = model(rgb=batch["rgb"], depth=batch["depth"])
        if out.logits.shape[1] != len(space.classes):
            raise ConfigError(f"the model writes {out.logits.shape[1]} classes but {cfg.dataset} has "
                              f"{len(space.classes)} (void included); set model_args.num_classes="
                              f"{len(space.classes)}")
        value = segmentation_loss(out, batch["label"], space.ignore_index,
                                  getattr(inner, "aux_weights", ()) if out.aux else (), weights)
        counted = batch["label"] != space.ignore_index
        correct = (out.logits.argmax(1) == batch["label"]) & counted
        return value, {"pixel_accuracy": Ratio(float(correct.sum()), float(counted.sum()))}

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        frames = splits[split]
        return segmentation_metrics(model, frames, eval_prep, space, cfg.eval_batch_size) if frames else {}

    conditions = {name: dict(sorted({c: s.conditions.count(c) for c in set(s.conditions)}.items()))
                  for name, s in splits.items() if s is not None}
    return Task(train_set=splits["train"], val_set=splits["val"], test_set=splits["test"],
                collate=lambda items: collate_frames(items, train_prep, random=True),
                eval_collate=lambda items: collate_frames(items, eval_prep, random=False),
                loss=loss, evaluate=evaluate, batch_size_of=lambda b: len(b["label"]),
                callbacks=[PredictionGrid(splits["test"] or splits["val"], eval_prep, space, cfg.grid_samples)],
                prepare_model=prepare_model,
                info={"dataset": cfg.dataset, "classes": list(space.classes), "ignore_index": space.ignore_index,
                      "size": list(cfg.size), "depth_encoding": cfg.depth_encoding, "frames": {
                          name: len(s) for name, s in splits.items() if s is not None}, "conditions": conditions})
