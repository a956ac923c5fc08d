"""Seeded point-cloud transforms: augmentations, subsampling (FPS or random) and unit-sphere normalisation.

Functions take ``points [..., N, C]`` -- one cloud or a batch, xyz in the first 3 columns and, when ``C >= 6``,
normals in columns 3..5 -- and a ``torch.Generator`` for every random draw (never global RNG state). They are
vectorised over the batch and the points; only farthest point sampling loops, once per selected point.

The dict transforms (:class:`ScaleAndTranslate`, ... ) apply them to a sample's ``points`` with the
``transform(sample, generator)`` signature of :mod:`mmseq.data.vision.transforms`; those that select or reorder points
apply the same indices to every per-point key (``points`` and ScanObjectNN's ``mask``).

What matches which reference (facts from Point-MAE ``datasets/data_transforms.py`` and its loaders):

* :func:`scale_and_translate` -- ``PointcloudScaleAndTranslate``: per cloud, xyz times a per-axis scale in
  ``[2/3, 3/2]`` plus a per-axis shift in ``[-0.2, 0.2]``. Normals, which Point-MAE leaves alone, are transformed as
  normals (divided by the scale, renormalised).
* :func:`rotate_about_up` -- ``PointcloudRotate``: an angle uniform in ``[0, 2 pi)`` about the up axis (y), applied
  as ``points @ R`` with Point-MAE's ``R``.
* :func:`jitter` -- ``PointcloudJitter``: Gaussian noise ``std=0.01`` clipped to ``[-0.05, 0.05]`` on xyz.
* :func:`random_point_dropout` -- ``PointcloudRandomInputDropout`` (PointNet++): a ratio uniform in
  ``[0, max_dropout_ratio)``, points with ``u <= ratio`` replaced by the first point (the shape stays ``N``).
* :func:`random_subsample` -- ShapeNet-55's ``random_sample``: a random permutation, the first ``n`` kept.
* :func:`normalize_unit_sphere` -- ``pc_norm``: minus the centroid, divided by the largest radius.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as nnf

from mmseq.data.vision.transforms import Compose, Sample
from mmseq.errors import ConfigError, InputError

__all__ = [
    "scale_and_translate", "rotate_about_up", "rotation_about_axis", "jitter", "random_point_dropout",
    "farthest_point_sample", "random_subsample", "gather_points", "shuffle_points", "normalize_unit_sphere",
    "ScaleAndTranslate", "RotateAboutUp", "Jitter", "RandomPointDropout", "FarthestPointSubsample",
    "RandomSubsample", "ShufflePoints", "NormalizeUnitSphere", "point_mae_pretrain_transform",
    "modelnet_finetune_transform",
]

POINT_KEYS = ("points", "mask")


def _check(points: torch.Tensor) -> torch.Tensor:
    if points.dim() < 2 or points.shape[-1] < 3:
        raise InputError(f"points must be [..., N, C>=3], got shape {tuple(points.shape)}")
    return points


def _batch_shape(points: torch.Tensor) -> tuple[int, ...]:
    return tuple(points.shape[:-2])


def _rand(generator: torch.Generator, shape: Sequence[int], points: torch.Tensor) -> torch.Tensor:
    """Uniform ``[0, 1)`` of ``shape`` drawn on the CPU (so results do not depend on the device), moved to points."""
    return torch.rand(tuple(shape), generator=generator).to(points.device, points.dtype)


def _with_normals(points: torch.Tensor, xyz: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
    parts = [xyz] + ([normals] if normals is not None else []) + ([points[..., 6:]] if points.shape[-1] > 6 else [])
    return torch.cat(parts, dim=-1) if len(parts) > 1 else xyz


def scale_and_translate(points: torch.Tensor, generator: torch.Generator, scale_low: float = 2 / 3,
                        scale_high: float = 3 / 2, translate_range: float = 0.2) -> torch.Tensor:
    """Per-cloud anisotropic scale and shift of xyz (Point-MAE's ``PointcloudScaleAndTranslate``).

    Args:
        points: ``[..., N, C]``.
        generator: Source of the per-cloud draws (3 scales, then 3 shifts).
        scale_low: Smallest per-axis scale.
        scale_high: Largest per-axis scale.
        translate_range: Shifts are uniform in ``[-translate_range, translate_range]``.

    Returns:
        ``[..., N, C]``: ``xyz * s + t``; normals (``C >= 6``) become ``normalize(n / s)``.
    """
    _check(points)
    batch = _batch_shape(points)
    scale = scale_low + (scale_high - scale_low) * _rand(generator, (*batch, 1, 3), points)
    shift = translate_range * (2 * _rand(generator, (*batch, 1, 3), points) - 1)
    xyz = points[..., :3] * scale + shift
    normals = nnf.normalize(points[..., 3:6] / scale, dim=-1) if points.shape[-1] >= 6 else None
    return _with_normals(points, xyz, normals)


def rotation_about_axis(angle: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` for ``points @ R`` about coordinate ``axis`` (Point-MAE's for ``axis=1``).

    For the y axis ``R = [[c, 0, s], [0, 1, 0], [-s, 0, c]]``; the other axes use the same pattern on their plane.
    """
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis}")
    c, s = torch.cos(angle), torch.sin(angle)
    r = torch.zeros((*angle.shape, 3, 3), dtype=angle.dtype, device=angle.device)
    a, b = [(1, 2), (2, 0), (0, 1)][axis]  # the rotated plane, ordered so that axis=1 is Point-MAE's matrix
    r[..., axis, axis] = 1
    r[..., a, a], r[..., b, b] = c, c
    r[..., b, a], r[..., a, b] = s, -s
    return r


def rotate_about_up(points: torch.Tensor, generator: torch.Generator, up_axis: int = 1,
                    angle_range: tuple[float, float] = (0.0, 2 * math.pi)) -> torch.Tensor:
    """Rotate each cloud by a random angle about the up axis; normals rotate with it.

    Args:
        points: ``[..., N, C]``.
        generator: One angle per cloud, uniform in ``angle_range``.
        up_axis: 1 (y) for ModelNet40, ShapeNet-55 and ScanObjectNN as Point-MAE reads them.
        angle_range: Radians.

    Returns:
        ``[..., N, C]`` with norms, heights along ``up_axis`` and pairwise distances unchanged.
    """
    _check(points)
    batch = _batch_shape(points)
    angle = angle_range[0] + (angle_range[1] - angle_range[0]) * _rand(generator, batch, points)
    r = rotation_about_axis(angle, up_axis)
    xyz = points[..., :3] @ r
    normals = points[..., 3:6] @ r if points.shape[-1] >= 6 else None
    return _with_normals(points, xyz, normals)


def jitter(points: torch.Tensor, generator: torch.Generator, sigma: float = 0.01, clip: float = 0.05) -> torch.Tensor:
    """Add ``clamp(sigma * N(0, 1), -clip, clip)`` to every xyz coordinate (normals untouched)."""
    _check(points)
    noise = torch.randn(tuple(points.shape[:-1]) + (3,), generator=generator).to(points.device, points.dtype)
    out = points.clone()
    out[..., :3] += (sigma * noise).clamp(-clip, clip)
    return out


def random_point_dropout(points: torch.Tensor, generator: torch.Generator,
                         max_dropout_ratio: float = 0.875) -> torch.Tensor:
    """Replace a random share of each cloud's points by its first point (PointNet++'s input dropout).

    Args:
        points: ``[..., N, C]``.
        generator: One ratio per cloud (uniform in ``[0, max_dropout_ratio)``), then one draw per point.
        max_dropout_ratio: In ``[0, 1)``.

    Returns:
        ``[..., N, C]``; dropped rows (``u <= ratio``) are copies of row 0 (whole rows, normals included).
    """
    _check(points)
    if not 0 <= max_dropout_ratio < 1:
        raise ConfigError(f"max_dropout_ratio must be in [0, 1), got {max_dropout_ratio}")
    batch = _batch_shape(points)
    ratio = max_dropout_ratio * _rand(generator, (*batch, 1), points)
    drop = _rand(generator, (*batch, points.shape[-2]), points) <= ratio
    return torch.where(drop[..., None], points[..., :1, :].expand_as(points), points)


def farthest_point_sample(points: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Greedy farthest point sampling on xyz.

    Each step takes the point farthest (Euclidean) from those already taken, so the chosen set's smallest pairwise
    distance is at least its covering radius. Ties go to the lowest index.

    Args:
        points: ``[..., N, C]``.
        n: Points to choose, ``1 <= n <= N``.
        generator: Draws each cloud's first point; ``None`` starts at index 0 (as the pointnet2 CUDA kernel does).

    Returns:
        ``int64 [..., n]`` indices into the ``N`` axis, in selection order.
    """
    _check(points)
    num = points.shape[-2]
    if not 1 <= n <= num:
        raise InputError(f"cannot choose {n} of {num} points by farthest point sampling")
    batch = _batch_shape(points)
    xyz = points[..., :3].reshape(-1, num, 3)
    b = xyz.shape[0]
    if generator is None:
        current = torch.zeros(b, dtype=torch.long, device=points.device)
    else:
        current = torch.randint(0, num, (b,), generator=generator).to(points.device)
    chosen = torch.empty(b, n, dtype=torch.long, device=points.device)
    nearest = torch.full((b, num), float("inf"), dtype=xyz.dtype, device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(n):
        chosen[:, i] = current
        d = ((xyz - xyz[rows, current][:, None, :]) ** 2).sum(-1)
        nearest = torch.minimum(nearest, d)
        current = nearest.argmax(dim=1)
    return chosen.reshape(*batch, n)


def gather_points(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``points[..., index[...], :]`` for ``points [..., N, C]`` (or ``[..., N]``) and ``index [..., n]``."""
    if points.dim() == index.dim():
        return torch.gather(points, -1, index)
    return torch.gather(points, -2, index[..., None].expand(*index.shape, points.shape[-1]))


def _permutation(generator: torch.Generator, batch: tuple[int, ...], num: int, device: torch.device) -> torch.Tensor:
    """An independent random permutation of ``num`` per cloud (argsort of uniform keys)."""
    return torch.rand((*batch, num), generator=generator).argsort(dim=-1).to(device)


def random_subsample(points: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation's first ``n`` points per cloud (ShapeNet-55 pre-training draws 1024 of 8192)."""
    _check(points)
    num = points.shape[-2]
    if not 1 <= n <= num:
        raise InputError(f"cannot draw {n} of {num} points without replacement")
    return gather_points(points, _permutation(generator, _batch_shape(points), num, points.device)[..., :n])


def shuffle_points(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The points of each cloud in a random order."""
    _check(points)
    return gather_points(points, _permutation(generator, _batch_shape(points), points.shape[-2], points.device))


def normalize_unit_sphere(points: torch.Tensor) -> torch.Tensor:
    """Subtract each cloud's xyz centroid and divide xyz by its largest radius (normals unchanged)."""
    _check(points)
    xyz = points[..., :3] - points[..., :3].mean(dim=-2, keepdim=True)
    radius = xyz.norm(dim=-1).amax(dim=-1)[..., None, None]
    xyz = xyz / torch.where(radius > 0, radius, torch.ones_like(radius))
    return torch.cat([xyz, points[..., 3:]], dim=-1) if points.shape[-1] > 3 else xyz


# ------------------------------------------------------------------------------------------ dict transforms
def _select(sample: Sample, index: torch.Tensor, keys: Sequence[str]) -> Sample:
    out = dict(sample)
    for key in keys:
        if out.get(key) is not None:
            out[key] = gather_points(out[key], index)
    return out


class ScaleAndTranslate:
    """:func:`scale_and_translate` on ``sample["points"]``."""

    def __init__(self, scale_low: float = 2 / 3, scale_high: float = 3 / 2, translate_range: float = 0.2) -> None:
        self.scale_low, self.scale_high, self.translate_range = scale_low, scale_high, translate_range

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        points = scale_and_translate(sample["points"], generator, self.scale_low, self.scale_high,
                                     self.translate_range)  # fmt: skip
        return {**sample, "points": points}


class RotateAboutUp:
    """:func:`rotate_about_up` on ``sample["points"]``."""

    def __init__(self, up_axis: int = 1, angle_range: tuple[float, float] = (0.0, 2 * math.pi)) -> None:
        self.up_axis, self.angle_range = up_axis, angle_range

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        return {**sample, "points": rotate_about_up(sample["points"], generator, self.up_axis, self.angle_range)}


class Jitter:
    """:func:`jitter` on ``sample["points"]``."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        self.sigma, self.clip = sigma, clip

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        return {**sample, "points": jitter(sample["points"], generator, self.sigma, self.clip)}


class RandomPointDropout:
    """:func:`random_point_dropout` on ``sample["points"]``."""

    def __init__(self, max_dropout_ratio: float = 0.875) -> None:
        self.max_dropout_ratio = max_dropout_ratio

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        return {**sample, "points": random_point_dropout(sample["points"], generator, self.max_dropout_ratio)}


class FarthestPointSubsample:
    """Keep ``n`` points chosen by :func:`farthest_point_sample` (from a random start, or index 0)."""

    def __init__(self, n: int, random_start: bool = True, keys: Sequence[str] = POINT_KEYS) -> None:
        self.n, self.random_start, self.keys = n, random_start, tuple(keys)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        index = farthest_point_sample(sample["points"], self.n, generator if self.random_start else None)
        return _select(sample, index, self.keys)


class RandomSubsample:
    """Keep ``n`` points of a random permutation (:func:`random_subsample`), the same for every per-point key."""

    def __init__(self, n: int, keys: Sequence[str] = POINT_KEYS) -> None:
        self.n, self.keys = n, tuple(keys)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        points = _check(sample["points"])
        if not 1 <= self.n <= points.shape[-2]:
            raise InputError(f"cannot draw {self.n} of {points.shape[-2]} points without replacement")
        perm = _permutation(generator, _batch_shape(points), points.shape[-2], points.device)
        return _select(sample, perm[..., : self.n], self.keys)


class ShufflePoints:
    """Reorder the points at random (Point-MAE's ScanObjectNN training), the same for every per-point key."""

    def __init__(self, keys: Sequence[str] = POINT_KEYS) -> None:
        self.keys = tuple(keys)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        points = _check(sample["points"])
        return _select(sample, _permutation(generator, _batch_shape(points), points.shape[-2], points.device),
                       self.keys)  # fmt: skip


class NormalizeUnitSphere:
    """:func:`normalize_unit_sphere` on ``sample["points"]``."""

    def __call__(self, sample: Sample, generator: Any = None) -> Sample:
        return {**sample, "points": normalize_unit_sphere(sample["points"])}


def point_mae_pretrain_transform(num_points: int = 1024) -> Compose:
    """Point-MAE's ShapeNet-55 loading: a random ``num_points`` of the cloud, then unit-sphere normalisation.

    Use it on ``ShapeNet55(root, normalize=False)``; Point-MAE adds ``ScaleAndTranslate`` in its training loop.
    """
    return Compose([RandomSubsample(num_points), NormalizeUnitSphere()])


def modelnet_finetune_transform(train: bool, num_points: int = 1024, fps_points: int = 1200) -> Compose:
    """Point-MAE's ModelNet40 fine-tuning sampling on a normalised cloud.

    Training: FPS (from index 0, as its CUDA kernel) to ``fps_points`` (1200), a random ``num_points`` (1024) of
    those, then :class:`ScaleAndTranslate`. Test: FPS straight to ``num_points``.
    """
    if not train:
        return Compose([FarthestPointSubsample(num_points, random_start=False)])
    return Compose([FarthestPointSubsample(fps_points, random_start=False), RandomSubsample(num_points),
                    ScaleAndTranslate()])  # fmt: skip
