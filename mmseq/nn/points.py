"""Point-cloud operations in plain torch: farthest point sampling, kNN, grouping, a mini-PointNet token embedding,
Chamfer distances and inverse-distance feature propagation.

These replace the CUDA extensions of Point-MAE / Point-M2AE / I2P-MAE (``pointnet2_ops.furthest_point_sample``,
``knn_cuda.KNN``, ``extensions/chamfer_dist``) and run on any device. Clouds are batched ``[B, N, 3]`` tensors.
Distance matrices are built in chunks of query points (``max_elements`` numbers at a time), so 16k-point clouds
fit in memory; nearest-neighbour *indices* come from the matrix-product form ``|a|^2 + |b|^2 - 2 a.b`` (fast, no
gradient), and the distances returned are recomputed exactly as ``|a - b[idx]|^2`` from the picked neighbours,
which is also what carries the gradient (as the official Chamfer kernel's backward does).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from mmseq.errors import InputError

DEFAULT_MAX_ELEMENTS = 1 << 20
"""Distance-matrix numbers built at once (4 MiB in fp32) by the chunked operations: a block that stays in cache
and is reused beats a large one that the CPU allocator maps afresh (page faults on every touch) each time."""
_FPS_BLOCK = _ARG_BLOCK = 64


def _check_cloud(points: Tensor, name: str, channels: int | None = 3) -> None:
    if not isinstance(points, Tensor) or points.dim() != 3 or (channels is not None and points.shape[-1] != channels):
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        want = f"[B, N, {channels}]" if channels is not None else "[B, N, C]"
        raise InputError(f"{name} must be a tensor of shape {want}, got {shape}")
    if not points.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {points.dtype}")


def _check_pair(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    _check_cloud(a, name_a)
    _check_cloud(b, name_b)
    if a.shape[0] != b.shape[0]:
        raise InputError(f"{name_a} and {name_b} must have the same batch size, got {a.shape[0]} and {b.shape[0]}")
    if b.shape[1] == 0 or a.shape[1] == 0:
        raise InputError(f"{name_a} and {name_b} must hold at least one point each, got {a.shape[1]} and "
                         f"{b.shape[1]}")


def _chunk_rows(batch: int, rows: int, cols: int, max_elements: int | None) -> int:
    """Query rows per chunk so that one ``[B, chunk, cols]`` distance block holds at most ``max_elements``."""
    budget = DEFAULT_MAX_ELEMENTS if max_elements is None else max_elements
    if budget < 1:
        raise InputError(f"max_elements must be positive, got {budget}")
    return max(1, min(rows, budget // max(1, batch * cols)))


def gather_points(values: Tensor, index: Tensor) -> Tensor:
    """Per-batch gather: ``values [B, N, C]`` at ``index [B, ...]`` -> ``[B, ..., C]`` (``index_points`` of the
    PointNet++ ports)."""
    b, _, c = values.shape
    flat = index.reshape(b, -1, 1).expand(-1, -1, c)
    return values.gather(1, flat).reshape(*index.shape, c)


def _augmented(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``[a, |a|^2, 1]`` and ``[-2 b, 1, |b|^2]``: their products are the squared distances ``|a - b|^2``."""
    left = torch.cat([a, a.square().sum(-1, keepdim=True), a.new_ones(a.shape[:-1] + (1,))], dim=-1)
    right = torch.cat([-2 * b, b.new_ones(b.shape[:-1] + (1,)), b.square().sum(-1, keepdim=True)], dim=-1)
    return left, right


def square_distances(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``[B, N, M]`` between ``a [B, N, C]`` and ``b [B, M, C]`` in the matrix-product
    form ``|a|^2 + |b|^2 - 2 a.b``, as one batched product of augmented coordinates (no separate pass adding the
    norms). Rounding can make it slightly negative for (nearly) coincident points; it is used to pick
    neighbours, not as a distance value."""
    left, right = _augmented(a, b)
    return torch.bmm(left, right.transpose(1, 2))


def _nearest_index(query: Tensor, points: Tensor, max_elements: int | None) -> Tensor:
    """Index ``[B, M]`` of the nearest of ``points [B, N, 3]`` for every ``query [B, M, 3]`` point (no gradient).

    The distance rows are cut into blocks of ``_ARG_BLOCK``: the smallest block minimum (``amin``, vectorised)
    picks a block and ``argmin`` (a scalar loop on the CPU) runs only on it and on the block minima; the first
    smallest block and its first smallest entry is the first minimum overall, as ``argmin`` finds. Padded columns
    get the largest finite distance, so they never win."""
    b, m, _ = query.shape
    n = points.shape[1]
    blocks = -(-n // _ARG_BLOCK)
    left, right = _augmented(query, points)
    if blocks * _ARG_BLOCK > n:
        pad = right.new_zeros(b, blocks * _ARG_BLOCK - n, right.shape[-1])
        pad[..., -1] = torch.finfo(right.dtype).max  # times the 1 in ``left``: the largest finite distance
        right = torch.cat([right, pad], dim=1)
    right = right.transpose(1, 2).contiguous()
    rows = _chunk_rows(b, m, blocks * _ARG_BLOCK, max_elements)
    buffer = left.new_empty(b * rows * blocks * _ARG_BLOCK)
    index = []
    for s in range(0, m, rows):
        part = left[:, s : s + rows]
        block = buffer[: b * part.shape[1] * right.shape[-1]].view(b, part.shape[1], -1)  # reused, contiguous
        torch.bmm(part, right, out=block)
        block = block.view(b, -1, blocks, _ARG_BLOCK)
        best = block.amin(3).argmin(2, keepdim=True)  # [B, rows, 1]
        within = block.gather(2, best.unsqueeze(3).expand(-1, -1, 1, _ARG_BLOCK)).squeeze(2).argmin(2, keepdim=True)
        index.append((best * _ARG_BLOCK + within).squeeze(2))
    return torch.cat(index, dim=1)


def farthest_point_sample(points: Tensor, npoint: int, *, random_start: bool = False,
                          generator: torch.Generator | None = None) -> Tensor:
    """Indices ``[B, npoint]`` of farthest point sampling: each pick is the point farthest (squared Euclidean)
    from all earlier picks; ties go to the lowest index.

    Args:
        points: ``[B, N, 3]``.
        npoint: picks per cloud, ``1 <= npoint <= N``.
        random_start: start from a uniformly drawn point per cloud (drawn with ``generator`` on its device)
            instead of point 0, which is what ``pointnet2_ops.furthest_point_sample`` does (that kernel also
            skips points within ``sqrt(1e-3)`` of the origin; this function does not).
    """
    _check_cloud(points, "points")
    b, n, _ = points.shape
    if not 1 <= npoint <= n:
        raise InputError(f"npoint must be in [1, N={n}] for points of shape {tuple(points.shape)}, got {npoint}")
    points = points.detach()
    device = points.device
    coords = points.permute(2, 0, 1).contiguous()  # [3, B, N]: each coordinate a contiguous row
    if random_start:
        current = torch.randint(n, (b, 1), generator=generator, device=device)
    else:
        current = torch.zeros(b, 1, dtype=torch.long, device=device)
    # argmax is a slow scalar loop on the CPU; amax over blocks, then argmax within the winning block, is not.
    # The padding past N holds -inf, so it never wins; the first maximal block and its first maximum is the
    # first maximum overall, as argmax picks.
    blocks = -(-n // _FPS_BLOCK)
    nearest_padded = torch.full((b, blocks * _FPS_BLOCK), -float("inf"), dtype=points.dtype, device=device)
    nearest = nearest_padded[:, :n]
    nearest.fill_(float("inf"))
    in_blocks = nearest_padded.view(b, blocks, _FPS_BLOCK)
    diff = torch.empty_like(coords)
    dist = torch.empty(b, n, dtype=points.dtype, device=device)
    picks = []
    for _ in range(npoint):  # each iteration needs the previous pick; everything stays on the device
        picks.append(current)
        centre = coords.gather(2, current.unsqueeze(0).expand(3, b, 1))  # [3, B, 1]
        torch.sub(coords, centre, out=diff)
        diff.mul_(diff)
        torch.sum(diff, 0, out=dist)
        torch.minimum(nearest, dist, out=nearest)
        block = in_blocks.amax(2).argmax(1, keepdim=True)  # [B, 1]
        within = in_blocks.gather(1, block.unsqueeze(2).expand(b, 1, _FPS_BLOCK)).squeeze(1).argmax(1, keepdim=True)
        current = block * _FPS_BLOCK + within
    return torch.cat(picks, dim=1)


def knn(query: Tensor, points: Tensor, k: int, *, max_elements: int | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest ``points`` of every query point, nearest first.

    Args:
        query: ``[B, M, 3]``.
        points: ``[B, N, 3]``, ``k <= N``.
        max_elements: distance-matrix numbers built at once (chunks of query points).

    Returns:
        ``(square_dist [B, M, k], index [B, M, k])``; the distances are exact ``|q - p|^2`` and differentiable.
    """
    _check_pair(query, points, "query", "points")
    b, m, _ = query.shape
    n = points.shape[1]
    if not 1 <= k <= n:
        raise InputError(f"k must be in [1, N={n}] for points of shape {tuple(points.shape)}, got {k}")
    rows = _chunk_rows(b, m, n, max_elements)
    with torch.no_grad():
        q, p = query.detach(), points.detach()
        index = torch.cat([square_distances(q[:, s : s + rows], p).topk(k, dim=-1, largest=False, sorted=True)[1]
                           for s in range(0, m, rows)], dim=1)
    square_dist = (query.unsqueeze(2) - gather_points(points, index)).square().sum(-1)
    return square_dist, index


class PointGroups(NamedTuple):
    """Local neighbourhoods of a cloud: ``neighbourhoods [B, G, K, 3]`` relative to ``centres [B, G, 3]``;
    ``index [B, G, K]`` of the grouped points in the input cloud (per batch row, not offset by ``b * N`` as the
    official ``Group`` returns it)."""

    neighbourhoods: Tensor
    centres: Tensor
    index: Tensor


def group_points(points: Tensor, num_groups: int, group_size: int, *, random_start: bool = False,
                 generator: torch.Generator | None = None, max_elements: int | None = None) -> PointGroups:
    """FPS centres, then the ``group_size`` nearest points of each centre (itself first), moved to the centre
    (the official ``Group`` / ``Group_v2`` of Point-MAE and I2P-MAE; add ``centres[:, :, None]`` back for the
    un-normalised ``neighborhood_ori``)."""
    _check_cloud(points, "points")
    n = points.shape[1]
    if not 1 <= group_size <= n:
        raise InputError(f"group_size must be in [1, N={n}] for points of shape {tuple(points.shape)}, "
                         f"got {group_size}")
    centre_index = farthest_point_sample(points, num_groups, random_start=random_start, generator=generator)
    centres = gather_points(points, centre_index)
    _, index = knn(centres, points, group_size, max_elements=max_elements)
    neighbourhoods = gather_points(points, index) - centres.unsqueeze(2)
    return PointGroups(neighbourhoods, centres, index)


class PointTokenEmbedding(nn.Module):
    """Mini-PointNet embedding of each group into one token: ``[B, G, K, C_in] -> [B, G, out_dim]``.

    Shared point-wise MLP (1x1 conv), max-pool over the group, the pooled vector concatenated to every point,
    a second MLP and a second max-pool. Layout and parameter names are those of the official modules, so their
    state dicts load as they are (``first_conv.{0,1,3}.*``, ``second_conv.{0,1,3}.*``; BatchNorm at index 1):

    - Point-MAE ``Encoder(encoder_channel)`` (keys ``MAE_encoder.encoder.*`` when pre-training, ``encoder.*`` when
      fine-tuning) is ``in_channels=3``: conv 3->128, BN, ReLU, conv 128->256; conv 512->512, BN, ReLU,
      conv 512->out_dim.
    - Point-M2AE / I2P-MAE ``Token_Embed(in_c, out_c)`` (keys ``h_encoder.token_embed.{i}.*``) is the same for
      ``in_c == 3``; for the merging embeddings of later scales (``in_c`` = previous scale's width): conv
      in->in, BN, ReLU, conv in->in; conv 2in->out, BN, ReLU, conv out->out.
    """

    def __init__(self, in_channels: int, out_dim: int):
        super().__init__()
        if in_channels == 3:
            hidden, pooled, second_hidden = 128, 256, 512
        else:
            hidden, pooled, second_hidden = in_channels, in_channels, out_dim
        self.in_channels, self.output_dim = in_channels, out_dim
        self.first_conv = nn.Sequential(nn.Conv1d(in_channels, hidden, 1), nn.BatchNorm1d(hidden),
                                        nn.ReLU(inplace=True), nn.Conv1d(hidden, pooled, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(2 * pooled, second_hidden, 1), nn.BatchNorm1d(second_hidden),
                                         nn.ReLU(inplace=True), nn.Conv1d(second_hidden, out_dim, 1))

    def forward(self, groups: Tensor) -> Tensor:
        """Args: groups ``[B, G, K, in_channels]``. Returns ``[B, G, out_dim]``."""
        if groups.dim() != 4 or groups.shape[-1] != self.in_channels:
            raise InputError(f"groups must have shape [B, G, K, {self.in_channels}], got {tuple(groups.shape)}")
        b, g, k, c = groups.shape
        feature = self.first_conv(groups.reshape(b * g, k, c).transpose(1, 2))  # [BG, pooled, K]
        pooled = feature.amax(dim=2, keepdim=True)
        feature = self.second_conv(torch.cat([pooled.expand(-1, -1, k), feature], dim=1))
        return feature.amax(dim=2).reshape(b, g, self.output_dim)


def nearest_neighbours(a: Tensor, b: Tensor, *, max_elements: int | None = None) -> tuple[Tensor, Tensor]:
    """Index of the nearest ``b`` point of every ``a`` point ``[B, N]`` and of the nearest ``a`` point of every
    ``b`` point ``[B, M]``, from chunked distance blocks (no gradient)."""
    _check_pair(a, b, "a", "b")
    with torch.no_grad():
        a, b = a.detach(), b.detach()
        return _nearest_index(a, b, max_elements), _nearest_index(b, a, max_elements)


def chamfer_square_distances(a: Tensor, b: Tensor, *, max_elements: int | None = None) -> tuple[Tensor, Tensor]:
    """Squared distance of every ``a`` point to its nearest ``b`` point ``[B, N]`` and the other way ``[B, M]``
    (``dist1, dist2`` of the official ``ChamferFunction``), differentiable in both clouds."""
    a_to_b, b_to_a = nearest_neighbours(a, b, max_elements=max_elements)
    dist1 = (a - gather_points(b, a_to_b)).square().sum(-1)
    dist2 = (b - gather_points(a, b_to_a)).square().sum(-1)
    return dist1, dist2


def chamfer_distance_l2(a: Tensor, b: Tensor, *, max_elements: int | None = None) -> Tensor:
    """``mean(dist1) + mean(dist2)`` over batch and points: the official ``ChamferDistanceL2``."""
    dist1, dist2 = chamfer_square_distances(a, b, max_elements=max_elements)
    return dist1.mean() + dist2.mean()


def chamfer_distance_l1(a: Tensor, b: Tensor, *, max_elements: int | None = None) -> Tensor:
    """``(mean(sqrt(dist1)) + mean(sqrt(dist2))) / 2``: the official ``ChamferDistanceL1`` (its gradient is
    infinite where two points coincide, as the official one's)."""
    dist1, dist2 = chamfer_square_distances(a, b, max_elements=max_elements)
    return (dist1.sqrt().mean() + dist2.sqrt().mean()) / 2


def interpolate_features(query: Tensor, known: Tensor, known_features: Tensor, k: int = 3, *,
                         max_elements: int | None = None) -> Tensor:
    """PointNet++ feature propagation: features of ``known [B, S, 3]`` carried to ``query [B, N, 3]`` as the
    average of the ``k`` nearest known points' ``known_features [B, S, C]`` weighted by ``1 / (d^2 + 1e-8)``,
    ``d^2`` the squared distance (as Point-M2AE / I2P-MAE's ``PointNetFeaturePropagation``); ``k`` is cut to
    ``S`` when fewer points are known (one known point: its features everywhere). Returns ``[B, N, C]``."""
    _check_pair(query, known, "query", "known")
    _check_cloud(known_features, "known_features", channels=None)
    if known_features.shape[:2] != known.shape[:2]:
        raise InputError(f"known_features [B, S, C] must match known {tuple(known.shape)} in B and S, got "
                         f"{tuple(known_features.shape)}")
    if k < 1:
        raise InputError(f"k must be positive, got {k}")
    square_dist, index = knn(query, known, min(k, known.shape[1]), max_elements=max_elements)
    weight = 1.0 / (square_dist + 1e-8)
    weight = weight / weight.sum(-1, keepdim=True)
    return (gather_points(known_features, index) * weight.unsqueeze(-1)).sum(2)
