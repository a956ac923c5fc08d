"""Seeded transforms of image samples (RGB, depth, labels) and the dataset wrapper that applies them.

A transform is a callable ``transform(sample, generator) -> sample`` on the dict items the readers return. Every
random choice is drawn from the ``torch.Generator`` it is given, never from global RNG state, and
:class:`TransformedDataset` gives item ``i`` of epoch ``e`` its own generator seeded from ``(seed, e, i)``: the same
item is augmented the same way in every run, whatever the DataLoader workers, and differently from epoch to epoch.

Geometric transforms (:class:`Resize`, :class:`RandomScale`, :class:`RandomCrop`, :class:`CenterCrop`,
:class:`RandomResizedCrop`, :class:`RandomHorizontalFlip`) move every map of a sample together through
``torchvision.transforms.v2.functional``: ``image_keys`` (default ``image``) bilinearly with antialiasing,
``nearest_keys`` (default ``depth`` and ``label``) by nearest neighbour, so labels stay labels and invalid depth
(0) is never blended into valid depth. They keep ``intrinsics`` (``[3, 3]``, when the sample has it) true to the
new pixel grid, so :class:`DepthToHHA` can run after them. Maps of different native sizes (ScanNet depth) are all
brought to the one output size.

Depth encodings (AdapNet++ feeds depth either jet-coloured or HHA-encoded):

* :func:`normalize_depth` -- depth to ``[0, 1]`` by a range, or standardised by a mean and std; invalid stays 0.
* :func:`colorize_depth_jet` -- MATLAB's jet colour map (near blue, far red), invalid pixels black.
* :func:`hha_encode` -- Gupta et al. (ECCV 2014) HHA with the constants of their ``saveHHA.m``: horizontal disparity
  ``310 / max(depth_m, 1)``, height above the lowest point in cm, and the angle of the surface normal with the up
  direction in degrees + 38, each rounded and saturated to ``uint8``. This is an **approximation** of their
  encoding: the up direction is given (a level camera by default, or from a pose) instead of being estimated
  iteratively from the normals, and normals come from differences of neighbouring back-projected points
  (one-sided at holes and borders, averaged over a small window) instead of square-support plane fits.

Point-cloud transforms are in :mod:`mmseq.data.vision.transforms_points`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from mmseq.errors import ConfigError, InputError

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "Transform", "item_generator", "Compose", "TransformedDataset", "Resize",
    "RandomScale", "RandomCrop", "CenterCrop", "RandomResizedCrop", "RandomHorizontalFlip", "ColourJitter", "Normalize",
    "NormalizeDepth", "DepthToJet", "DepthToHHA", "normalize_depth", "jet_colormap", "colorize_depth_jet",
    "depth_to_points", "surface_normals", "hha_encode", "camera_up_from_pose", "image_train_transform",
    "image_eval_transform", "rgbd_train_transform", "rgbd_eval_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Sample = dict[str, Any]


class Transform(Protocol):
    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample: ...


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator seeded from ``(seed, epoch, index)`` through numpy's ``SeedSequence`` (well-mixed, no overlap)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _uniform(generator: torch.Generator, low: float, high: float, n: int | None = None) -> torch.Tensor | float:
    u = torch.rand(n if n is not None else 1, generator=generator, dtype=torch.float64)
    values = low + (high - low) * u
    return values if n is not None else float(values)


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high]`` (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


class Compose:
    """Apply transforms in order, each with the same generator (which advances as each draws)."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


class TransformedDataset(Dataset):
    """A dataset whose items pass through a seeded transform.

    Args:
        dataset: Any map-style dataset of dict items.
        transform: ``transform(sample, generator) -> sample``.
        seed: Base seed; item ``i`` of epoch ``e`` uses :func:`item_generator` ``(seed, e, i)``.

    Call :meth:`set_epoch` at the start of every epoch for fresh augmentations.
    """

    def __init__(self, dataset: Dataset, transform: Transform, seed: int = 0) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        item = self.dataset[index]
        return self.transform(dict(item), item_generator(self.seed, self.epoch, index))


# ------------------------------------------------------------------------------------------ geometric helpers
_IMAGE_KEYS = ("image",)
_NEAREST_KEYS = ("depth", "label")


def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"{what} must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


class _Geometric:
    """Shared by the geometric transforms: which keys are images, which are nearest-neighbour maps."""

    def __init__(self, image_keys: Sequence[str] = _IMAGE_KEYS, nearest_keys: Sequence[str] = _NEAREST_KEYS):
        self.image_keys, self.nearest_keys = tuple(image_keys), tuple(nearest_keys)

    def size(self, sample: Sample) -> tuple[int, int]:
        """``(H, W)`` of the sample: its first image key, else its first nearest-neighbour map."""
        for key in self.image_keys + self.nearest_keys:
            if sample.get(key) is not None:
                return tuple(sample[key].shape[-2:])  # type: ignore[return-value]
        raise InputError(f"sample has none of the keys {list(self.image_keys + self.nearest_keys)} "
                         f"(keys: {sorted(sample)})")  # fmt: skip

    def apply(self, sample: Sample, fn: Callable[[torch.Tensor, bool, str], torch.Tensor]) -> Sample:
        """``fn(map, is_image, key)`` on every present map key; nearest maps travel as ``tv_tensors.Mask``."""
        out = dict(sample)
        for key in self.image_keys:
            if out.get(key) is not None:
                out[key] = fn(out[key], True, key).as_subclass(torch.Tensor)
        for key in self.nearest_keys:
            if out.get(key) is not None:
                out[key] = fn(tv_tensors.Mask(out[key]), False, key).as_subclass(torch.Tensor)
        return out

    def resize_to(self, sample: Sample, size: tuple[int, int]) -> Sample:
        h0, w0 = self.size(sample)

        def resize(x: torch.Tensor, is_image: bool, key: str) -> torch.Tensor:
            if tuple(x.shape[-2:]) == size:
                return x
            if is_image:
                return F.resize(x, list(size), interpolation=F.InterpolationMode.BILINEAR, antialias=True)
            return F.resize(x, list(size), interpolation=F.InterpolationMode.NEAREST)

        out = self.apply(sample, resize)
        if out.get("intrinsics") is not None:
            k = out["intrinsics"].clone()
            sx, sy = size[1] / w0, size[0] / h0
            # pixel centres: x' + 0.5 = (x + 0.5) * sx
            k[0, 0], k[0, 2] = k[0, 0] * sx, (k[0, 2] + 0.5) * sx - 0.5
            k[1, 1], k[1, 2] = k[1, 1] * sy, (k[1, 2] + 0.5) * sy - 0.5
            out["intrinsics"] = k
        return out

    def crop(self, sample: Sample, top: int, left: int, height: int, width: int, fills: dict[str, float]) -> Sample:
        """Crop (padding bottom/right with ``fills[key]`` where the crop leaves the map)."""

        def crop(x: torch.Tensor, is_image: bool, key: str) -> torch.Tensor:
            x = F.crop(x, top, left, height, width)  # torchvision pads with 0 outside the map
            fill = fills.get(key, 0)
            if fill != 0:
                h0, w0 = self.size(sample)
                inside = torch.zeros(x.shape[-2:], dtype=torch.bool)
                inside[max(0, -top): max(0, min(height, h0 - top)), max(0, -left): max(0, min(width, w0 - left))] = True
                x = torch.where(inside, x, torch.as_tensor(fill, dtype=x.dtype))
            return x

        out = self.apply(sample, crop)
        if out.get("intrinsics") is not None:
            k = out["intrinsics"].clone()
            k[0, 2], k[1, 2] = k[0, 2] - left, k[1, 2] - top
            out["intrinsics"] = k
        return out


class Resize(_Geometric):
    """Resize every map of a sample to one size.

    Args:
        size: ``(height, width)``, or an int for the shorter side (the longer keeps the aspect ratio, as torchvision).
        max_size: With an int ``size``, cap the longer side.
        image_keys: Keys resized bilinearly (antialiased).
        nearest_keys: Keys resized by nearest neighbour.
    """

    def __init__(self, size: int | Sequence[int], max_size: int | None = None, image_keys: Sequence[str] = _IMAGE_KEYS,
                 nearest_keys: Sequence[str] = _NEAREST_KEYS) -> None:
        super().__init__(image_keys, nearest_keys)
        self.size_arg, self.max_size = size, max_size
        if not isinstance(size, int):
            _pair(size, "Resize size")

    def target(self, h: int, w: int) -> tuple[int, int]:
        if not isinstance(self.size_arg, int):
            return _pair(self.size_arg, "Resize size")
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.size_arg, int(self.size_arg * long / short)
        if self.max_size is not None and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        return (new_short, new_long) if h <= w else (new_long, new_short)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return self.resize_to(sample, self.target(*self.size(sample)))


class RandomScale(_Geometric):
    """Resize by a factor drawn uniformly from ``[low, high]`` (AdapNet++'s scale augmentation)."""

    def __init__(self, low: float = 0.5, high: float = 2.0, image_keys: Sequence[str] = _IMAGE_KEYS,
                 nearest_keys: Sequence[str] = _NEAREST_KEYS) -> None:
        super().__init__(image_keys, nearest_keys)
        if not 0 < low <= high:
            raise ConfigError(f"RandomScale needs 0 < low <= high, got {low}, {high}")
        self.low, self.high = low, high

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        factor = _uniform(generator, self.low, self.high)
        h, w = self.size(sample)
        return self.resize_to(sample, (max(1, round(h * factor)), max(1, round(w * factor))))


class RandomCrop(_Geometric):
    """A random ``size`` window; maps smaller than ``size`` are padded at the bottom/right first.

    Args:
        size: ``(height, width)`` or an int.
        label_fill: Value of padded label pixels (the dataset's ``ignore_index``: 255 for Cityscapes train ids, 0
            where 0 is void). Images and depth are padded with 0 (black, invalid).
    """

    def __init__(self, size: int | Sequence[int], label_fill: int = 255, image_keys: Sequence[str] = _IMAGE_KEYS,
                 nearest_keys: Sequence[str] = _NEAREST_KEYS) -> None:
        super().__init__(image_keys, nearest_keys)
        self.crop_size, self.fills = _pair(size, "RandomCrop size"), {"label": label_fill}

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        h, w = self.size(sample)
        ch, cw = self.crop_size
        top = _randint(generator, 0, max(0, h - ch))
        left = _randint(generator, 0, max(0, w - cw))
        return self.crop(sample, top, left, ch, cw, self.fills)


class CenterCrop(_Geometric):
    """The central ``size`` window (padded as :class:`RandomCrop` when the map is smaller)."""

    def __init__(self, size: int | Sequence[int], label_fill: int = 255, image_keys: Sequence[str] = _IMAGE_KEYS,
                 nearest_keys: Sequence[str] = _NEAREST_KEYS) -> None:
        super().__init__(image_keys, nearest_keys)
        self.crop_size, self.fills = _pair(size, "CenterCrop size"), {"label": label_fill}

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        h, w = self.size(sample)
        ch, cw = self.crop_size
        return self.crop(sample, max(0, (h - ch) // 2), max(0, (w - cw) // 2), ch, cw, self.fills)


class RandomResizedCrop(_Geometric):
    """Torchvision's RandomResizedCrop drawn from the generator: a window of random area and aspect, resized.

    Up to 10 (area fraction in ``scale``, log-uniform aspect in ``ratio``) draws are made at once and the first that
    fits is taken; if none fits, the central window with the aspect clamped to ``ratio`` (torchvision's fallback).
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), image_keys: Sequence[str] = _IMAGE_KEYS,
                 nearest_keys: Sequence[str] = _NEAREST_KEYS) -> None:
        super().__init__(image_keys, nearest_keys)
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
            raise ConfigError(f"RandomResizedCrop needs 0 < scale <= 1 and 0 < ratio, got {scale}, {ratio}")
        self.out_size, self.scale, self.ratio = _pair(size, "RandomResizedCrop size"), scale, ratio

    def window(self, h: int, w: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the crop in an ``h x w`` map."""
        area = h * w
        target = area * _uniform(generator, self.scale[0], self.scale[1], 10)
        aspect = torch.exp(_uniform(generator, math.log(self.ratio[0]), math.log(self.ratio[1]), 10))
        cw = torch.round(torch.sqrt(target * aspect)).long()
        ch = torch.round(torch.sqrt(target / aspect)).long()
        fits = ((cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)).nonzero()
        if len(fits):
            k = int(fits[0])
            height, width = int(ch[k]), int(cw[k])
            return _randint(generator, 0, h - height), _randint(generator, 0, w - width), height, width
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            width, height = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            height, width = h, int(round(h * self.ratio[1]))
        else:
            width, height = w, h
        return (h - height) // 2, (w - width) // 2, height, width

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        top, left, height, width = self.window(*self.size(sample), generator)
        return self.resize_to(self.crop(sample, top, left, height, width, {}), self.out_size)


class RandomHorizontalFlip(_Geometric):
    """Mirror left-right with probability ``p`` (intrinsics: ``cx -> W - 1 - cx``)."""

    def __init__(self, p: float = 0.5, image_keys: Sequence[str] = _IMAGE_KEYS,
                 nearest_keys: Sequence[str] = _NEAREST_KEYS) -> None:
        super().__init__(image_keys, nearest_keys)
        self.p = p

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        if _uniform(generator, 0.0, 1.0) >= self.p:
            return sample
        w = self.size(sample)[1]
        out = self.apply(sample, lambda x, is_image, key: F.horizontal_flip(x))
        if out.get("intrinsics") is not None:
            k = out["intrinsics"].clone()
            k[0, 2] = w - 1 - k[0, 2]
            out["intrinsics"] = k
        return out


class ColourJitter:
    """Random brightness, contrast and saturation of the RGB image only (depth and labels untouched).

    Each factor is drawn uniformly from ``[1 - s, 1 + s]`` for its strength ``s`` (0: left out) and applied in that
    order through ``torchvision.transforms.v2.functional``, on the ``uint8`` (or float in [0, 1]) image of ``key``.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 key: str = "image") -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= value < 1:
                raise ConfigError(f"ColourJitter {name} must lie in [0, 1), got {value}")
        self.strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        self.key = key

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        out = dict(sample)
        x = out[self.key]
        adjust = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
                  "saturation": F.adjust_saturation}
        for name, strength in self.strengths.items():
            if strength > 0:
                x = adjust[name](x, _uniform(generator, 1 - strength, 1 + strength))
        out[self.key] = x
        return out


class Normalize:
    """``uint8`` image -> float in ``[0, 1]`` -> ``(x - mean) / std`` per channel (ImageNet statistics by default).

    Args:
        mean: Per-channel mean.
        std: Per-channel std.
        key: The image key (``image``; e.g. ``depth_jet`` or ``hha`` for encoded depth).
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 key: str = "image") -> None:
        self.mean, self.std, self.key = list(mean), list(std), key

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        out = dict(sample)
        x = out[self.key]
        x = F.to_dtype(x, torch.float32, scale=True) if x.dtype == torch.uint8 else x.float()
        out[self.key] = F.normalize(x, self.mean, self.std)
        return out


# -------------------------------------------------------------------------------------------------- depth
def normalize_depth(depth: torch.Tensor, max_depth: float | None = None, mean: float | None = None,
                    std: float | None = None) -> torch.Tensor:
    """Depth to a network's input range; invalid pixels (0) stay 0.

    Exactly one mode: ``max_depth`` (clip to ``[0, max_depth]``, divide: ``[0, 1]``) or ``mean`` and ``std``
    (standardise the valid pixels, ESANet's way).

    Args:
        depth: ``[..., H, W]`` metres (or the dataset's raw unit), 0 = invalid.

    Returns:
        ``float32 [..., H, W]``.
    """
    if (max_depth is None) == (mean is None or std is None):
        raise ConfigError("normalize_depth takes either max_depth, or mean and std")
    depth = depth.float()
    valid = depth > 0
    if max_depth is not None:
        if max_depth <= 0:
            raise ConfigError(f"max_depth must be > 0, got {max_depth}")
        out = depth.clamp(0, max_depth) / max_depth
    else:
        if std <= 0:
            raise ConfigError(f"std must be > 0, got {std}")
        out = (depth - mean) / std
    return torch.where(valid, out, torch.zeros_like(out))


def jet_colormap(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's jet: ``x`` in ``[0, 1]`` ``[...]`` -> RGB in ``[0, 1]`` ``[3, ...]`` (0 dark blue, 1 dark red)."""
    x = x.clamp(0, 1)
    r = (1.5 - (4 * x - 3).abs()).clamp(0, 1)
    g = (1.5 - (4 * x - 2).abs()).clamp(0, 1)
    b = (1.5 - (4 * x - 1).abs()).clamp(0, 1)
    return torch.stack([r, g, b])


def colorize_depth_jet(depth: torch.Tensor, min_depth: float | None = None,
                       max_depth: float | None = None) -> torch.Tensor:
    """Jet-coloured depth, as AdapNet++ feeds depth to an RGB-shaped encoder.

    Args:
        depth: ``[H, W]``, 0 = invalid.
        min_depth: Depth shown dark blue (default: the nearest valid pixel).
        max_depth: Depth shown dark red (default: the farthest valid pixel).

    Returns:
        ``uint8 [3, H, W]``; invalid pixels are black.
    """
    depth = depth.float()
    valid = depth > 0
    if not bool(valid.any()):
        return torch.zeros((3, *depth.shape), dtype=torch.uint8)
    lo = float(depth[valid].min()) if min_depth is None else min_depth
    hi = float(depth[valid].max()) if max_depth is None else max_depth
    x = (depth - lo) / (hi - lo) if hi > lo else torch.zeros_like(depth)
    rgb = (jet_colormap(x) * 255).round().to(torch.uint8)
    return torch.where(valid, rgb, torch.zeros_like(rgb))


def depth_to_points(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Back-project a depth map: pixel ``(u, v)`` -> ``((u - cx) z / fx, (v - cy) z / fy, z)``.

    Pixel ``(u, v)`` is the pixel in column ``u``, row ``v``, its centre at those integer coordinates (OpenCV's
    convention, in which ``cx = (W - 1) / 2`` is the image centre); with intrinsics written for centres at
    half-integers the points shift by half a pixel, which HHA does not notice.

    Args:
        depth: ``[H, W]`` metres (z along the optical axis).
        intrinsics: ``[3, 3]`` pinhole matrix.

    Returns:
        ``float32 [H, W, 3]`` in the camera frame (x right, y down, z forward).
    """
    h, w = depth.shape
    k = intrinsics.double()
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    z = depth.double()
    return torch.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], dim=-1).float()


def _tangent(points: torch.Tensor, valid: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Difference along ``dim`` (0 rows, 1 columns): central where both neighbours are valid, else one-sided."""
    n = points.shape[dim]
    idx = torch.arange(n)
    nxt, prv = (idx + 1).clamp(max=n - 1), (idx - 1).clamp(min=0)
    p_next, p_prev = points.index_select(dim, nxt), points.index_select(dim, prv)
    v_next = valid.index_select(dim, nxt) & (nxt != idx).view([-1, 1] if dim == 0 else [1, -1])
    v_prev = valid.index_select(dim, prv) & (prv != idx).view([-1, 1] if dim == 0 else [1, -1])
    fwd, bwd = p_next - points, points - p_prev
    central = (p_next - p_prev) / 2
    t = torch.where((v_next & v_prev)[..., None], central, torch.where(v_next[..., None], fwd, bwd))
    return t, valid & (v_next | v_prev)


def surface_normals(points: torch.Tensor, valid: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Unit surface normals of a back-projected depth map, oriented towards the camera.

    Args:
        points: ``[H, W, 3]`` from :func:`depth_to_points`.
        valid: ``[H, W]`` bool, pixels with depth.
        window: Side of the box over which the per-pixel normals are averaged (1 = none).

    Returns:
        ``float32 [H, W, 3]``; zero where no normal can be formed.
    """
    tu, ok_u = _tangent(points, valid, 1)
    tv, ok_v = _tangent(points, valid, 0)
    n = torch.linalg.cross(tu, tv, dim=-1)
    ok = ok_u & ok_v & (n.norm(dim=-1) > 0)
    n = torch.where(ok[..., None], nnf.normalize(n, dim=-1), torch.zeros_like(n))
    n = torch.where(((n * points).sum(-1, keepdim=True) > 0), -n, n)  # face the camera at the origin
    if window > 1:
        pad = window // 2
        summed = nnf.avg_pool2d(n.permute(2, 0, 1)[None], window, stride=1, padding=pad, count_include_pad=False)
        n = torch.where(ok[..., None], nnf.normalize(summed[0].permute(1, 2, 0), dim=-1), torch.zeros_like(n))
    return n


def camera_up_from_pose(pose: torch.Tensor, world_up: Sequence[float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """The world's up direction in camera coordinates, from a ``[4, 4]`` camera-to-world pose (ScanNet: z up)."""
    rotation = pose[:3, :3].double()
    up = rotation.T @ torch.tensor(world_up, dtype=torch.float64)
    return nnf.normalize(up, dim=0).float()


def hha_encode(depth: torch.Tensor, intrinsics: torch.Tensor, up: torch.Tensor | Sequence[float] | None = None,
               window: int = 3) -> torch.Tensor:
    """HHA encoding of a depth map (the approximation described in the module docstring).

    Channels, with Gupta et al.'s ``saveHHA.m`` constants, rounded and saturated to ``[0, 255]``:

    1. horizontal disparity ``31000 / max(depth_cm, 100)`` (= ``310 / max(depth_m, 1)``);
    2. height above the lowest valid point, in cm, along ``up``;
    3. angle between the surface normal and ``up`` in degrees, ``+ 128 - 90``: floors 38, walls 128, ceilings 218.

    Args:
        depth: ``[H, W]`` metres, 0 = invalid.
        intrinsics: ``[3, 3]`` pinhole matrix of the depth map's pixels.
        up: The up direction in camera coordinates (x right, y down, z forward); ``None`` assumes a level camera,
            ``(0, -1, 0)``. :func:`camera_up_from_pose` gives it from a pose.
        window: Normal averaging window (see :func:`surface_normals`).

    Returns:
        ``uint8 [3, H, W]``; every channel is 0 where the depth is invalid.
    """
    if depth.dim() != 2:
        raise InputError(f"hha_encode takes one [H, W] depth map, got shape {tuple(depth.shape)}")
    if tuple(intrinsics.shape) != (3, 3):
        raise InputError(f"intrinsics must be [3, 3], got shape {tuple(intrinsics.shape)}")
    up_vec = torch.tensor([0.0, -1.0, 0.0]) if up is None else torch.as_tensor(up, dtype=torch.float32)
    up_vec = nnf.normalize(up_vec.float(), dim=0)
    valid = depth > 0
    points = depth_to_points(depth, intrinsics)
    normals = surface_normals(points, valid, window)
    disparity = 310.0 / depth.float().clamp(min=1.0)
    height_cm = (points @ up_vec) * 100.0
    lowest = height_cm[valid].min() if bool(valid.any()) else torch.tensor(0.0)
    height_cm = height_cm - lowest
    angle = torch.rad2deg(torch.acos((normals @ up_vec).clamp(-1, 1))) + 38.0
    angle = torch.where(normals.norm(dim=-1) > 0, angle, torch.zeros_like(angle))
    hha = torch.stack([disparity, height_cm, angle]).round().clamp(0, 255).to(torch.uint8)
    return torch.where(valid, hha, torch.zeros_like(hha))


class NormalizeDepth:
    """:func:`normalize_depth` on ``key`` (written to ``out_key``, default in place)."""

    def __init__(self, max_depth: float | None = None, mean: float | None = None, std: float | None = None,
                 key: str = "depth", out_key: str | None = None) -> None:
        normalize_depth(torch.ones(1, 1), max_depth, mean, std)  # validate the mode now
        self.max_depth, self.mean, self.std, self.key, self.out_key = max_depth, mean, std, key, out_key or key

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        out = dict(sample)
        out[self.out_key] = normalize_depth(sample[self.key], self.max_depth, self.mean, self.std)
        return out


class DepthToJet:
    """:func:`colorize_depth_jet` of ``key`` written to ``out_key`` (``uint8 [3, H, W]``; normalise it after)."""

    def __init__(self, min_depth: float | None = None, max_depth: float | None = None, key: str = "depth",
                 out_key: str = "depth_jet") -> None:
        self.min_depth, self.max_depth, self.key, self.out_key = min_depth, max_depth, key, out_key

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        out = dict(sample)
        out[self.out_key] = colorize_depth_jet(sample[self.key], self.min_depth, self.max_depth)
        return out


class DepthToHHA:
    """:func:`hha_encode` of ``key`` written to ``out_key``, using the sample's ``intrinsics``.

    The up direction is the sample's ``up`` when it has one, else from its ``pose`` when ``use_pose`` (ScanNet), else
    a level camera. Run it after the geometric transforms (they keep ``intrinsics`` in step).
    """

    def __init__(self, key: str = "depth", out_key: str = "hha", use_pose: bool = True, window: int = 3) -> None:
        self.key, self.out_key, self.use_pose, self.window = key, out_key, use_pose, window

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if sample.get("intrinsics") is None:
            raise InputError(f"DepthToHHA needs the sample's 'intrinsics' (keys: {sorted(sample)})")
        up, pose = sample.get("up"), sample.get("pose")
        if up is None and self.use_pose and pose is not None and bool(torch.isfinite(pose).all()):
            up = camera_up_from_pose(pose)
        out = dict(sample)
        out[self.out_key] = hha_encode(sample[self.key], sample["intrinsics"], up, self.window)
        return out


# ------------------------------------------------------------------------------------------------- presets
def _depth_encoding(depth: str) -> list[Transform]:
    if depth == "hha":
        return [DepthToHHA(), Normalize(key="hha")]
    if depth == "jet":
        return [DepthToJet(), Normalize(key="depth_jet")]
    raise ConfigError(f"depth encoding must be 'hha' or 'jet', got {depth!r}")


def image_train_transform(size: int | Sequence[int] = 224, scale: tuple[float, float] = (0.08, 1.0),
                          mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Random resized crop, horizontal flip, ImageNet normalisation."""
    return Compose([RandomResizedCrop(size, scale=scale), RandomHorizontalFlip(), Normalize(mean, std)])


def image_eval_transform(size: int | Sequence[int] = 224, resize: int = 256, mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Shorter side to ``resize``, central ``size`` crop, ImageNet normalisation."""
    return Compose([Resize(resize), CenterCrop(size), Normalize(mean, std)])


def rgbd_train_transform(size: Sequence[int] = (384, 768), scale: tuple[float, float] = (0.5, 2.0),
                         label_fill: int = 255, depth: str = "hha") -> Compose:
    """AdapNet++'s pipeline: resize to ``size`` (768x384), random scale, crop back to ``size``, flip, then depth as
    ``hha`` (key ``hha``) or ``jet`` (key ``depth_jet``), every 3-channel map ImageNet-normalised."""
    encode = _depth_encoding(depth)
    return Compose([Resize(size), RandomScale(*scale), RandomCrop(size, label_fill=label_fill),
                    RandomHorizontalFlip(), *encode, Normalize()])  # fmt: skip


def rgbd_eval_transform(size: Sequence[int] = (384, 768), depth: str = "hha") -> Compose:
    """Resize to ``size`` and encode depth as :func:`rgbd_train_transform` does, without randomness."""
    encode = _depth_encoding(depth)
    return Compose([Resize(size), *encode, Normalize()])
