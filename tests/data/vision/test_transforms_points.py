"""Point-cloud transforms: FPS against a naive loop, geometric invariants, bounds, seeding, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmseq.data.vision.transforms_points import (
    FarthestPointSubsample, RandomPointDropout, RandomSubsample, RotateAboutUp, ScaleAndTranslate,
    farthest_point_sample, jitter, modelnet_finetune_transform, normalize_unit_sphere, random_point_dropout,
    random_subsample, rotate_about_up, rotation_about_axis, scale_and_translate, shuffle_points,
)
from mmseq.errors import InputError


EXACT = "donot_use_mm_for_euclid_dist"


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cloud(n: int = 200, seed: int = 0, normals: bool = True) -> torch.Tensor:
    x = torch.randn(n, 3, generator=g(seed))
    if not normals:
        return x
    return torch.cat([x, torch.nn.functional.normalize(torch.randn(n, 3, generator=g(seed + 1)), dim=-1)], -1)


def naive_fps(xyz: np.ndarray, n: int, start: int = 0) -> list[int]:
    chosen = [start]
    for _ in range(n - 1):
        d = np.min(((xyz[:, None] - xyz[chosen][None]) ** 2).sum(-1), axis=1)
        chosen.append(int(np.argmax(d)))
    return chosen


def test_fps_matches_a_naive_loop_and_batches():
    points = torch.stack([cloud(100, seed=s, normals=False) for s in range(3)]).double()
    index = farthest_point_sample(points, 16)
    assert index.shape == (3, 16)
    for b in range(3):
        assert index[b].tolist() == naive_fps(points[b].numpy(), 16)
    seeded = farthest_point_sample(points, 16, g(4))
    assert torch.equal(seeded, farthest_point_sample(points, 16, g(4)))
    assert seeded[:, 0].tolist() != [0, 0, 0]  # a random start per cloud
    for b in range(3):
        assert seeded[b].tolist() == naive_fps(points[b].numpy(), 16, int(seeded[b, 0]))


def test_fps_spreads_points_out():
    far = torch.tensor([[10.0, 0, 0], [-10.0, 0, 0], [0, 10.0, 0], [0, 0, -10.0]])
    points = torch.cat([0.1 * torch.randn(300, 3, generator=g(1)), far])
    chosen = set(farthest_point_sample(points, 5).tolist())
    assert {300, 301, 302, 303} <= chosen
    x = cloud(500, normals=False)
    idx = farthest_point_sample(x, 32)
    sel = x[idx]
    separation = torch.pdist(sel).min()
    covering = torch.cdist(x, sel, compute_mode=EXACT).min(dim=1).values.max()
    assert separation >= covering - 1e-6  # the greedy property: chosen points are at least the covering radius apart
    random_sel = x[torch.randperm(500, generator=g(2))[:32]]
    assert separation > torch.pdist(random_sel).min()
    with pytest.raises(InputError, match="cannot choose 600 of 500"):
        farthest_point_sample(x, 600)


def test_rotation_about_up_preserves_geometry():
    r = rotation_about_axis(torch.tensor(math.pi / 2), 1)
    assert torch.allclose(torch.tensor([1.0, 0, 0]) @ r, torch.tensor([0.0, 0, 1]), atol=1e-6)  # Point-MAE's R
    for axis in (0, 1, 2):
        m = rotation_about_axis(torch.tensor([0.3, 1.7]), axis)
        assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
        assert torch.allclose(torch.linalg.det(m), torch.ones(2))
    points = torch.stack([cloud(64), cloud(64, seed=5)])
    out = rotate_about_up(points, g(3))
    assert torch.allclose(out[..., :3].norm(dim=-1), points[..., :3].norm(dim=-1), atol=1e-5)
    assert torch.allclose(out[..., 1], points[..., 1], atol=1e-6)  # heights along y unchanged
    assert torch.allclose(torch.pdist(out[0, :, :3]), torch.pdist(points[0, :, :3]), atol=1e-4)
    assert torch.allclose(out[..., 3:].norm(dim=-1), torch.ones(2, 64), atol=1e-5)  # normals rotate, stay unit
    assert torch.allclose((out[..., :3] * out[..., 3:]).sum(-1), (points[..., :3] * points[..., 3:]).sum(-1),
                          atol=1e-5)  # fmt: skip
    assert not torch.allclose(out[0, :, 0], points[0, :, 0])  # it did rotate


def test_scale_and_translate_bounds_and_normals():
    points = torch.stack([cloud(50, seed=s) for s in range(8)])
    out = scale_and_translate(points, g(1))
    # recover the per-axis scale and shift from two points of each cloud
    scale = (out[:, 1, :3] - out[:, 0, :3]) / (points[:, 1, :3] - points[:, 0, :3])
    shift = out[:, 0, :3] - points[:, 0, :3] * scale
    assert torch.all(scale >= 2 / 3 - 1e-4) and torch.all(scale <= 3 / 2 + 1e-4)
    assert torch.all(shift.abs() <= 0.2 + 1e-4)
    assert torch.allclose(out[..., :3], points[..., :3] * scale[:, None] + shift[:, None], atol=1e-4)
    expected_normals = torch.nn.functional.normalize(points[..., 3:] / scale[:, None], dim=-1)
    assert torch.allclose(out[..., 3:], expected_normals, atol=1e-4)
    assert len({tuple(s.tolist()) for s in scale.round(decimals=4)}) == 8  # one draw per cloud


def test_jitter_is_bounded_and_leaves_normals():
    points = cloud(2000)
    out = jitter(points, g(2), sigma=0.02, clip=0.03)
    noise = out[:, :3] - points[:, :3]
    assert noise.abs().max() <= 0.03 + 1e-6 and noise.abs().max() > 0.02
    assert noise.mean().abs() < 3e-3 and torch.equal(out[:, 3:], points[:, 3:])


def test_point_dropout():
    points = torch.stack([cloud(400, seed=s) for s in range(4)])
    out = random_point_dropout(points, g(3))
    assert out.shape == points.shape
    dropped = ~(out == points).all(-1)
    assert torch.all((out[dropped.nonzero(as_tuple=True)] == points[dropped.nonzero()[:, 0], 0]).all(-1))
    share = dropped.float().mean(-1)
    assert torch.all(share < 0.875 + 0.05) and share.max() > 0
    assert torch.equal(random_point_dropout(points, g(3), max_dropout_ratio=0.0), points)
    assert torch.equal(RandomPointDropout()({"points": points}, g(3))["points"], out)


def test_subsampling_shuffling_and_normalisation():
    points = cloud(100)
    sub = random_subsample(points, 30, g(4))
    rows = torch.cdist(sub, points, compute_mode=EXACT).argmin(dim=1)
    assert sub.shape == (30, 6) and len(set(rows.tolist())) == 30 and torch.equal(points[rows], sub)
    assert torch.equal(sub, random_subsample(points, 30, g(4)))
    with pytest.raises(InputError, match="cannot draw 101 of 100"):
        random_subsample(points, 101, g())
    shuffled = shuffle_points(points, g(5))
    assert torch.equal(shuffled[:, :3].sum(0).round(decimals=3), points[:, :3].sum(0).round(decimals=3))
    assert not torch.equal(shuffled, points)
    batch = torch.stack([points * 3 + 5, points])
    unit = normalize_unit_sphere(batch)
    assert torch.allclose(unit[..., :3].mean(-2), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(unit[..., :3].norm(dim=-1).amax(-1), torch.ones(2))
    assert torch.equal(unit[..., 3:], batch[..., 3:])


def test_dict_transforms_keep_per_point_keys_together_and_global_rng_alone():
    points = cloud(300)
    mask = torch.arange(300)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    fps = FarthestPointSubsample(20)({"points": points, "mask": mask, "label": 3}, g(1))
    assert torch.equal(fps["points"], points[fps["mask"]]) and fps["label"] == 3
    sub = RandomSubsample(50)({"points": points, "mask": mask}, g(2))
    assert torch.equal(sub["points"], points[sub["mask"]])
    moved = ScaleAndTranslate()(RotateAboutUp()({"points": points}, g(3)), g(4))["points"]
    assert moved.shape == points.shape and not torch.allclose(moved, points)
    assert torch.equal(torch.get_rng_state(), state)
    train = modelnet_finetune_transform(train=True, num_points=64, fps_points=100)({"points": points}, g(5))
    test = modelnet_finetune_transform(train=False, num_points=64)({"points": points}, g(5))
    assert train["points"].shape == (64, 6) and torch.equal(test["points"], points[farthest_point_sample(points, 64)])
    with pytest.raises(InputError, match=r"points must be \[..., N, C>=3\]"):
        jitter(torch.zeros(5, 2), g())
