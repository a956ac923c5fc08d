"""``mmseq.pipeline("segmentation", model=...)``: label maps from RGB and optional depth, with colour overlays.

The model is any segmentation model of :mod:`mmseq.models.adapnet` / :mod:`mmseq.models.ssma` (RGB, depth, early or
late fusion, SSMA, DeepLabV3). Inputs are prepared as :mod:`mmseq.tasks.segmentation` prepares them in training:
RGB ImageNet-normalised, depth (metres, 0 invalid) through :func:`~mmseq.tasks.segmentation.encode_depth` with the
encoding the model was trained with (``depth_encoding``, ``max_depth``, ``min_depth``: the task's defaults unless
given).

Two modes for the size of the input:

* ``whole`` (default): the image is resized to ``size`` when given (the training resolution), else padded at the
  bottom and right to multiples of 16; the logits are resized (bilinear) or cropped back to the input's size.
* ``sliding``: windows of ``window`` pixels (multiples of 16) every ``stride`` pixels (default: half a window) cover
  the image (padded where the last window leaves it); each pixel's class probabilities are averaged over the windows
  that saw it. For inputs much larger than the training crops.

Each result is ``{"labels": int64 [H, W] numpy array, "overlay": path or None}``; with ``out`` an overlay PNG (the
labels blended over the RGB, a legend of the classes present) is written per input as ``<name>_overlay.png``.
Class names come from the checkpoint's ``labels.json`` (the task stores them), else ``class <i>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.tasks.segmentation import (DEPTH_ENCODINGS, STRIDE, class_colours, encode_depth, encode_rgb,
                                      overlay)

MODES = ("whole", "sliding")
ImageInput = str | os.PathLike | np.ndarray | Tensor


def load_rgb(item: ImageInput, name: str) -> Tensor:
    """An RGB image (path, ``uint8 [H, W, 3]`` array or ``[3, H, W]`` tensor) as ``uint8 [3, H, W]``."""
    if isinstance(item, (str, os.PathLike)):
        from mmseq.data.vision.readers_common import load_image

        return load_image(Path(item))
    x = torch.as_tensor(np.asarray(item)) if not isinstance(item, Tensor) else item
    if x.dim() == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)
    if x.dim() != 3 or x.shape[0] != 3:
        raise InputError(f"{name}: an RGB image must be [H, W, 3] or [3, H, W], got shape {list(x.shape)}")
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round()
    return x.to(torch.uint8)


def load_depth(item: ImageInput, name: str, depth_scale: float) -> Tensor:
    """Depth in metres ``[H, W]`` (0 invalid): a ``.npy`` file (metres), a PNG (values x ``depth_scale``), or an
    array / tensor in metres."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise InputError(f"{name}: depth file {str(path)!r} does not exist")
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False).astype(np.float32)
        else:
            from mmseq.data.vision.readers_common import load_png

            values = load_png(path, "depth map").astype(np.float32) * depth_scale
        x = torch.from_numpy(values)
    else:
        x = torch.as_tensor(np.asarray(item, dtype=np.float32)) if not isinstance(item, Tensor) else item.float()
    if x.dim() == 3 and 1 in (x.shape[0], x.shape[-1]):
        x = x.squeeze(0) if x.shape[0] == 1 else x.squeeze(-1)
    if x.dim() != 2:
        raise InputError(f"{name}: depth must be one [H, W] map, got shape {list(x.shape)}")
    return torch.nan_to_num(x.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0)


def _windows(length: int, window: int, stride: int) -> list[int]:
    """Window starts covering ``[0, length)`` (the last one may run past the end; the input is padded there)."""
    starts = list(range(0, max(length - window, 0) + 1, stride))
    if starts[-1] + window < length:
        starts.append(starts[-1] + stride)
    return starts


class SegmentationPipeline:
    """Label maps (and overlays) from a segmentation model; see the module notes."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = device, dtype
        self.inputs = tuple(model.inputs)
        labels = getattr(model, "labels", None)
        self.classes: list[str] | None = list(labels) if labels else None

    def class_names(self, n: int) -> list[str]:
        return self.classes if self.classes and len(self.classes) == n else [f"class {i}" for i in range(n)]

    def colours(self, n: int) -> np.ndarray:
        from mmseq.data.vision.synth_scenes import CLASS_COLOURS, SCENE_CLASSES

        if self.class_names(n) == list(SCENE_CLASSES):
            return np.array(CLASS_COLOURS) / 255.0
        return class_colours(n)

    @torch.no_grad()
    def logits(self, rgb: Tensor, depth: Tensor | None) -> Tensor:
        """Model logits ``[1, classes, h, w]`` of prepared inputs (``[1, C, h, w]``, h and w multiples of 16)."""
        kwargs = {"rgb": rgb.to(self.device, self.dtype)}
        if depth is not None:
            kwargs["depth"] = depth.to(self.device, self.dtype)
        return self.model(**kwargs).logits.float()

    def probabilities(self, rgb: Tensor, depth: Tensor | None, mode: str, size: Sequence[int] | None,
                      window: Sequence[int], stride: Sequence[int] | None) -> Tensor:
        """Class probabilities ``[classes, H, W]`` at the input's size."""
        h, w = rgb.shape[-2:]
        if mode == "whole":
            if size is not None:
                rgb_in = F.interpolate(rgb, size=tuple(size), mode="bilinear", align_corners=False)
                depth_in = None if depth is None else F.interpolate(depth, size=tuple(size), mode="nearest")
                logits = F.interpolate(self.logits(rgb_in, depth_in), size=(h, w), mode="bilinear",
                                       align_corners=False)
            else:
                ph, pw = -h % STRIDE, -w % STRIDE
                rgb_in = F.pad(rgb, (0, pw, 0, ph))
                depth_in = None if depth is None else F.pad(depth, (0, pw, 0, ph))
                logits = self.logits(rgb_in, depth_in)[..., :h, :w]
            return logits.softmax(1)[0].cpu()
        wh, ww = window
        sh, sw = stride if stride is not None else (wh // 2, ww // 2)
        rows, cols = _windows(h, wh, sh), _windows(w, ww, sw)
        ph, pw = max(rows[-1] + wh - h, 0), max(cols[-1] + ww - w, 0)
        rgb_in = F.pad(rgb, (0, pw, 0, ph))
        depth_in = None if depth is None else F.pad(depth, (0, pw, 0, ph))
        total, seen = None, torch.zeros(h + ph, w + pw)
        for top in rows:
            for left in cols:
                crop = (slice(None), slice(None), slice(top, top + wh), slice(left, left + ww))
                p = self.logits(rgb_in[crop], None if depth_in is None else depth_in[crop]).softmax(1)[0].cpu()
                if total is None:
                    total = torch.zeros(p.shape[0], h + ph, w + pw)
                total[:, top : top + wh, left : left + ww] += p
                seen[top : top + wh, left : left + ww] += 1
        return (total / seen.clamp(min=1))[:, :h, :w]

    def __call__(self, rgb: ImageInput | list[ImageInput], depth: ImageInput | list[ImageInput] | None = None, *,
                 mode: str = "whole", size: Sequence[int] | None = None, window: Sequence[int] = (384, 768),
                 stride: Sequence[int] | None = None, depth_encoding: str = "linear", max_depth: float = 60.0,
                 min_depth: float = 0.5, depth_scale: float = 1.0, intrinsics: Any = None,
                 out: str | os.PathLike | None = None, batch_size: int = 1) -> dict[str, Any] | list[dict[str, Any]]:
        """Segment one input or a list of them.

        Args:
            rgb: image path(s), ``uint8 [H, W, 3]`` arrays or ``[3, H, W]`` tensors.
            depth: depth per image (``.npy`` metres, PNG values x ``depth_scale``, arrays in metres); required when
                the model reads depth.
            mode: ``whole`` or ``sliding`` (see the module notes); ``size`` / ``window`` / ``stride`` are
                ``(height, width)`` multiples of 16.
            depth_encoding, max_depth, min_depth: as the model was trained (``task_args`` of its recipe).
            intrinsics: ``[3, 3]`` camera matrix for the ``hha`` encoding.
            out: folder for the overlay PNGs (None: none written).
            batch_size: accepted for the common CLI; inputs are run one at a time.

        Returns:
            ``{"labels", "overlay"}`` per input (a list when ``rgb`` is a list).
        """
        if mode not in MODES:
            raise ConfigError(unknown_choice("segmentation mode", mode, MODES))
        if depth_encoding not in DEPTH_ENCODINGS:
            raise ConfigError(unknown_choice("depth encoding", depth_encoding, DEPTH_ENCODINGS))
        for what, value in (("size", size), ("window", window), ("stride", stride)):
            if value is not None and (len(value) != 2 or min(value) < 1):
                raise ConfigError(f"segmentation {what} must be (height, width), got {value}")
        for what, value in (("size", size), ("window", window)):
            if value is not None and any(v % STRIDE for v in value):
                raise ConfigError(f"segmentation {what} {list(value)} must be multiples of {STRIDE}")
        single = not isinstance(rgb, (list, tuple))
        images = [rgb] if single else list(rgb)
        depths = [depth] if single else (list(depth) if depth is not None else [None] * len(images))
        if len(depths) != len(images):
            raise InputError(f"{len(images)} RGB inputs but {len(depths)} depth inputs")
        needs_depth = "depth" in self.inputs
        results = []
        for i, (image, d) in enumerate(zip(images, depths)):
            name = str(image) if isinstance(image, (str, os.PathLike)) else f"input {i}"
            x = load_rgb(image, name)
            depth_in = None
            if needs_depth:
                if d is None:
                    raise InputError(f"{name}: the model reads {'+'.join(self.inputs)}; pass depth= for it")
                metres = load_depth(d, f"depth of {name}", depth_scale)
                if metres.shape != x.shape[1:]:
                    metres = F.interpolate(metres[None, None], size=tuple(x.shape[1:]), mode="nearest")[0, 0]
                k = None if intrinsics is None else torch.as_tensor(np.asarray(intrinsics, dtype=np.float32))
                depth_in = encode_depth(metres, depth_encoding, max_depth, min_depth, k)[None]
            probs = self.probabilities(encode_rgb(x)[None], depth_in, mode, size, window, stride)
            labels = probs.argmax(0).numpy().astype(np.int64)
            path = None
            if out is not None:
                stem = Path(image).stem if isinstance(image, (str, os.PathLike)) else f"{i:04d}"
                path = self.write_overlay(x.permute(1, 2, 0).numpy(), labels, probs.shape[0],
                                          Path(out) / f"{stem}_overlay.png")
            results.append({"labels": labels, "overlay": path})
        return results[0] if single else results

    def write_overlay(self, image: np.ndarray, labels: np.ndarray, num_classes: int, path: Path) -> Path:
        """The labels blended over ``image`` with a legend of the classes present, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        names, colours = self.class_names(num_classes), self.colours(num_classes)
        h, w = labels.shape
        width = 7.0
        fig = plt.figure(figsize=(width + 2.0, width * h / w + 0.3))
        ax = fig.add_axes([0.0, 0.0, width / (width + 2.0), 1.0])
        ax.imshow(overlay(image, labels, colours, ignore_index=-1), interpolation="nearest")
        ax.set_axis_off()
        present = sorted(int(i) for i in np.unique(labels))
        fig.legend(handles=[Patch(color=colours[i], label=f"{i} {names[i]}") for i in present],
                   loc="center right", fontsize=8, frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
