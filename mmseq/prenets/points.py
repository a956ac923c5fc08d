"""Point-cloud pre-net: farthest point sampling picks group centres, k nearest neighbours form each group,
and a mini-PointNet embeds each group (centred on its centre) into one token; centre coordinates become
positions through an MLP, as in Point-MAE / I2P-MAE."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.errors import InputError


def farthest_point_sample(points: Tensor, num_samples: int) -> Tensor:
    """Indices ``[B, num_samples]`` of points chosen greedily to be far apart, starting from point 0.

    Args:
        points: ``[B, N, 3]``.
    """
    b, n, _ = points.shape
    chosen = torch.zeros(b, num_samples, dtype=torch.long, device=points.device)
    distance = torch.full((b, n), float("inf"), device=points.device)
    farthest = torch.zeros(b, dtype=torch.long, device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(num_samples):
        chosen[:, i] = farthest
        centre = points[rows, farthest][:, None, :]
        distance = torch.minimum(distance, ((points - centre) ** 2).sum(-1))
        farthest = distance.argmax(dim=1)
    return chosen


def group_points(points: Tensor, centres: Tensor, group_size: int) -> Tensor:
    """The ``group_size`` nearest points of each centre, relative to it: ``[B, G, K, 3]``."""
    nearest = torch.cdist(centres, points).topk(group_size, dim=-1, largest=False).indices  # [B, G, K]
    grouped = torch.gather(points[:, None].expand(-1, centres.shape[1], -1, -1), 2,
                           nearest[..., None].expand(-1, -1, -1, 3))
    return grouped - centres[:, :, None, :]


class PointGroupPrenet(nn.Module):
    """``[B, N, 3]`` point clouds -> ``[B, num_groups, D]`` group tokens (+ centre position embeddings).

    Args:
        num_groups: G centres from farthest point sampling.
        group_size: K neighbours per group.
        dim: output width D.
    """

    def __init__(self, num_groups: int, group_size: int, dim: int):
        super().__init__()
        self.num_groups, self.group_size = num_groups, group_size
        self.output_dim, self.downsample_rate = dim, group_size
        self.modality = "points"
        self.point_mlp = nn.Sequential(nn.Linear(3, 64), nn.GELU(), nn.Linear(64, 128))
        self.group_mlp = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, dim))
        self.pos_mlp = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))

    def forward(self, points: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``points [B, N, 3]`` with N >= group_size; ``lengths`` is ignored (clouds are not padded)."""
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] < self.group_size:
            raise InputError(f"points must be [B, N>={self.group_size}, 3], got {list(points.shape)}")
        centre_idx = farthest_point_sample(points, self.num_groups)
        centres = torch.gather(points, 1, centre_idx[..., None].expand(-1, -1, 3))
        groups = group_points(points, centres, self.group_size)  # [B, G, K, 3]
        per_point = self.point_mlp(groups)  # [B, G, K, 128]
        pooled = per_point.max(dim=2, keepdim=True).values.expand_as(per_point)
        tokens = self.group_mlp(torch.cat([per_point, pooled], dim=-1)).max(dim=2).values  # [B, G, D]
        x = tokens + self.pos_mlp(centres)
        return x, torch.full((x.shape[0],), self.num_groups, dtype=torch.long, device=x.device)

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, None]:
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch_size, 4 * self.num_groups, 3, generator=g), None
