"""I2P-MAE's orthographic depth projection of point clouds to three images, and the back-projection of per-pixel
maps (2-D features, attention) to points.

One view looks down the third coordinate: a point's first two coordinates give its pixel (row from the first,
column from the second) and its third coordinate is the value it adds to a ``splat x splat`` square of pixels
around it (summed over points, as the official ``torch_scatter.scatter(..., reduce='sum')``). The cloud's larger
extent of the two spans ``image_size - 3`` pixels, and the splatted object is centred in the image. Every pixel then
goes through a sigmoid (empty pixels become 0.5), is copied to three channels and normalised with the ImageNet
mean and standard deviation. The three views are the axis permutations ``(x, y, z)``, ``(z, x, y)`` and
``(y, z, x)`` (official ``I2P_MAE.proj2img`` / ``I2P``, which run one view per call; here all views are one
batch and one scatter).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmseq.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIEW_PERMUTATIONS = ((0, 1, 2), (2, 0, 1), (1, 2, 0))
"""Coordinate order of each view: image row, image column, depth."""


class ViewGeometry(NamedTuple):
    """Where a projected cloud landed, per image: ``origin [B, 2]`` (minimum of the two image coordinates),
    ``pixel_size [B]`` and ``offset [B, 2]`` (pixels added to centre the object); ``image_size`` in pixels."""

    origin: Tensor
    pixel_size: Tensor
    offset: Tensor
    image_size: int


def _check_cloud(points: Tensor, name: str) -> None:
    if not isinstance(points, Tensor) or points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise InputError(f"{name} must be a tensor of shape [B, N, 3] with N >= 1, got {shape}")
    if not points.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {points.dtype}")


def view_points(points: Tensor) -> Tensor:
    """The three views' coordinate permutations of ``points [B, N, 3]``, view-major: ``[3 * B, N, 3]`` (rows
    ``v * B + b``), the batch layout in which the official code feeds the 2-D model."""
    _check_cloud(points, "points")
    return torch.cat([points[..., list(order)] for order in VIEW_PERMUTATIONS], dim=0)


def _pixels(points: Tensor, geometry: ViewGeometry) -> Tensor:
    """Integer pixel ``[B, N, 2]`` (row, column) of each point's own (centre) pixel, before clamping."""
    cell = torch.floor((points[..., :2] - geometry.origin.unsqueeze(1)) / geometry.pixel_size.view(-1, 1, 1))
    return cell.long() + 1 + geometry.offset.unsqueeze(1)


def project_depth(points: Tensor, image_size: int = 224, splat: int = 5) -> tuple[Tensor, ViewGeometry]:
    """Depth images of clouds seen down their third coordinate (one view; see the module docstring).

    Args:
        points: ``[B, N, 3]`` (row coordinate, column coordinate, depth); ``view_points`` gives all three views.
        image_size: image height and width (224 in I2P-MAE).
        splat: odd side of the square each point is added to (5 in I2P-MAE).

    Returns:
        ``images [B, 3, image_size, image_size]`` (ImageNet-normalised) and the ``ViewGeometry`` that
        ``back_project`` needs.
    """
    _check_cloud(points, "points")
    if splat < 1 or splat % 2 == 0:
        raise InputError(f"splat must be a positive odd number, got {splat}")
    if image_size < splat + 3:
        raise InputError(f"image_size must be at least splat + 3 = {splat + 3}, got {image_size}")
    b, n, _ = points.shape
    points = points.detach()
    low, high = points.amin(dim=1), points.amax(dim=1)  # [B, 3]
    pixel_size = (high[:, :2] - low[:, :2]).amax(dim=1) / (image_size - 3)
    pixel_size = torch.where(pixel_size > 0, pixel_size, torch.ones_like(pixel_size))  # a one-point cloud
    origin = low[:, :2]
    cell = torch.floor((points[..., :2] - origin.unsqueeze(1)) / pixel_size.view(-1, 1, 1)).long()  # [B, N, 2]
    # The splatted object's bounding box, centred in the image (its half-way pixel lands on image_size / 2 - 1).
    half = splat // 2
    centre = torch.div(cell.amax(dim=1) + cell.amin(dim=1) + 2, 2, rounding_mode="floor")
    offset = image_size // 2 - centre - 1  # [B, 2]
    geometry = ViewGeometry(origin, pixel_size, offset, image_size)
    steps = torch.arange(-half, half + 1, device=points.device)
    square = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).view(1, 1, -1, 2)
    pixel = ((cell + 1 + offset.unsqueeze(1)).unsqueeze(2) + square).clamp_(0, image_size - 1)  # [B, N, S*S, 2]
    flat = pixel[..., 0] * image_size + pixel[..., 1] + torch.arange(b, device=points.device).view(b, 1, 1) * (
        image_size * image_size)
    depth = points[..., 2:3].expand(b, n, splat * splat)
    canvas = points.new_zeros(b * image_size * image_size).index_add_(0, flat.reshape(-1), depth.reshape(-1))
    canvas = torch.sigmoid(canvas.view(b, 1, image_size, image_size))
    mean = torch.tensor(IMAGENET_MEAN, dtype=points.dtype, device=points.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=points.dtype, device=points.device).view(1, 3, 1, 1)
    return (canvas - mean) / std, geometry


def back_project(points: Tensor, maps: Tensor, geometry: ViewGeometry) -> Tensor:
    """Per-pixel values read back at points: ``maps [B, C, h, w]`` (e.g. 14x14 ViT patch features or attention)
    are resized bicubically to the image size (unless already that size), and each point of ``points [B, N, 3]``
    (same view and geometry as the projected cloud) takes the value at its own pixel. Points outside the projected
    cloud's box take the nearest border pixel. Returns ``[B, N, C]``."""
    _check_cloud(points, "points")
    size = geometry.image_size
    if maps.dim() != 4 or maps.shape[0] != points.shape[0]:
        raise InputError(f"maps must have shape [B={points.shape[0]}, C, h, w], got {tuple(maps.shape)}")
    if maps.shape[-2:] != (size, size):
        maps = F.interpolate(maps, size=(size, size), mode="bicubic")
    pixel = _pixels(points.detach(), geometry).clamp_(0, size - 1)
    flat = (pixel[..., 0] * size + pixel[..., 1]).unsqueeze(1).expand(-1, maps.shape[1], -1)  # [B, C, N]
    return maps.flatten(2).gather(2, flat).transpose(1, 2)
