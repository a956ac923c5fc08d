"""Image, depth and label transforms: joint geometry, intrinsics kept in step, seeded draws, jet and HHA encodings."""

from __future__ import annotations

import math

import pytest
import torch

from mmseq.data.vision.transforms import (
    IMAGENET_MEAN, CenterCrop, Compose, DepthToHHA, Normalize, RandomCrop, RandomHorizontalFlip, RandomResizedCrop,
    RandomScale, Resize, TransformedDataset, camera_up_from_pose, colorize_depth_jet, hha_encode, item_generator,
    normalize_depth, rgbd_eval_transform, rgbd_train_transform,
)
from mmseq.errors import ConfigError, InputError


def blocks(h: int = 24, w: int = 32) -> dict:
    """A sample of 4x4-pixel blocks: label k, image grey 10k, depth k + 1 metres (0 = invalid in block 0)."""
    v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    label = (v // 4) * (w // 4) + u // 4
    image = (10 * (label % 25)).to(torch.uint8)[None].repeat(3, 1, 1)
    depth = (label + 1).float()
    depth[label == 0] = 0
    k = torch.tensor([[20.0, 0, (w - 1) / 2], [0, 20.0, (h - 1) / 2], [0, 0, 1]])
    return {"image": image, "label": label, "depth": depth, "intrinsics": k, "id": "x"}


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_resize_keeps_labels_and_depth_values_and_scales_intrinsics():
    s = blocks()
    out = Resize((12, 16))(s)
    assert out["image"].shape == (3, 12, 16) and out["label"].shape == (12, 16) and out["depth"].shape == (12, 16)
    assert set(out["label"].unique().tolist()) <= set(s["label"].unique().tolist())
    assert set(out["depth"].unique().tolist()) <= set(s["depth"].unique().tolist())  # nothing blended into holes
    assert out["label"].dtype == torch.int64 and out["id"] == "x"
    assert out["intrinsics"][0, 2] == pytest.approx(7.5) and out["intrinsics"][1, 2] == pytest.approx(5.5)
    assert out["intrinsics"][0, 0] == pytest.approx(10.0)  # the optical centre stays the image centre
    assert Resize(12)(s)["image"].shape == (3, 12, 16)  # shorter side, aspect kept
    ragged = dict(s, depth=s["depth"][::2, ::2])  # a map of another native size is brought to the same size
    assert Resize((12, 16))(ragged)["depth"].shape == (12, 16)


def test_crops_and_flip_move_every_map_together():
    s = blocks()
    s["label"] = torch.arange(24 * 32).reshape(24, 32)  # unique per pixel: the crop's first label says where it is
    for seed in range(5):
        out = RandomCrop((10, 12))(s, g(seed))
        top, left = divmod(int(out["label"][0, 0]), 32)
        assert torch.equal(out["label"], s["label"][top: top + 10, left: left + 12])
        assert torch.equal(out["image"], s["image"][:, top: top + 10, left: left + 12])
        assert torch.equal(out["depth"], s["depth"][top: top + 10, left: left + 12])
        assert out["intrinsics"][0, 2] == pytest.approx(s["intrinsics"][0, 2] - left)
        assert out["intrinsics"][1, 2] == pytest.approx(s["intrinsics"][1, 2] - top)
    flipped = RandomHorizontalFlip(p=1.0)(s, g())
    assert torch.equal(flipped["label"], s["label"].flip(-1)) and torch.equal(flipped["image"], s["image"].flip(-1))
    assert flipped["intrinsics"][0, 2] == pytest.approx(31 - s["intrinsics"][0, 2])
    assert torch.equal(RandomHorizontalFlip(p=1.0)(flipped, g())["depth"], s["depth"])
    assert RandomHorizontalFlip(p=0.0)(s, g()) is s


def test_padding_uses_ignore_index_for_labels():
    s = blocks(8, 8)
    out = CenterCrop((10, 12), label_fill=255)(s)
    assert out["label"].shape == (10, 12)
    assert torch.all(out["label"][8:] == 255) and torch.all(out["label"][:, 8:] == 255)
    assert torch.all(out["image"][:, 8:] == 0) and torch.all(out["depth"][:, 8:] == 0)
    assert torch.equal(out["label"][:8, :8], s["label"])


def test_random_pipeline_is_seeded_joint_and_leaves_global_rng_alone():
    pipeline = Compose([RandomScale(0.5, 2.0), RandomCrop((16, 16)), RandomHorizontalFlip(),
                        RandomResizedCrop((12, 12), scale=(0.3, 1.0))])
    s = blocks()
    s["depth"] = s["label"].float()  # nearest maps must stay pixel-for-pixel equal
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = pipeline(s, g(5)), pipeline(s, g(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert torch.equal(a["depth"], a["label"].float())
    outs = [pipeline(s, g(seed))["label"] for seed in range(6)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) > 1
    assert all(o.shape == (12, 12) for o in outs)


def test_random_resized_crop_windows_follow_scale_and_ratio():
    crop = RandomResizedCrop(8, scale=(0.25, 0.5), ratio=(0.5, 2.0))
    for seed in range(50):
        top, left, h, w = crop.window(40, 60, g(seed))
        assert 0 <= top <= 40 - h and 0 <= left <= 60 - w
        assert 0.2 <= h * w / 2400 <= 0.55 and 0.45 <= w / h <= 2.2
    assert crop.window(1, 1, g()) == (0, 0, 1, 1)  # nothing fits: the whole (tiny) map


def test_normalize_uses_imagenet_stats():
    image = torch.tensor([[[124]], [[116]], [[104]]], dtype=torch.uint8)
    out = Normalize()({"image": image})["image"]
    assert out.dtype == torch.float32 and out.abs().max() < 0.02
    assert out[0, 0, 0] == pytest.approx((124 / 255 - IMAGENET_MEAN[0]) / 0.229, abs=1e-5)


def test_transformed_dataset_seeds_per_item_and_epoch():
    data = [blocks() for _ in range(3)]
    ds = TransformedDataset(data, RandomCrop((8, 8)), seed=7)
    first = [ds[i]["label"][0, 0].item() for i in range(3)]
    assert first == [ds[i]["label"][0, 0].item() for i in range(3)]
    assert len(set(first)) > 1  # items differ within an epoch
    epochs = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        epochs.add(tuple(ds[i]["label"][0, 0].item() for i in range(3)))
    assert len(epochs) > 1  # and from epoch to epoch
    assert item_generator(7, 0, 0).initial_seed() != item_generator(7, 1, 0).initial_seed()
    assert item_generator(7, 0, 0).initial_seed() != item_generator(7, 0, 1).initial_seed()
    assert item_generator(7, 0, 0).initial_seed() == item_generator(7, 0, 0).initial_seed()


# --------------------------------------------------------------------------------------------------- depth
def test_normalize_depth_modes():
    depth = torch.tensor([[0.0, 5.0, 20.0]])
    assert normalize_depth(depth, max_depth=10).tolist() == [[0.0, 0.5, 1.0]]
    assert normalize_depth(depth, mean=5.0, std=5.0).tolist() == [[0.0, 0.0, 3.0]]  # invalid stays 0
    with pytest.raises(ConfigError, match="either max_depth, or mean and std"):
        normalize_depth(depth)
    with pytest.raises(ConfigError):
        normalize_depth(depth, max_depth=1.0, mean=0.0, std=1.0)


def test_jet_colouring():
    depth = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    jet = colorize_depth_jet(depth)
    assert jet.dtype == torch.uint8 and jet.shape == (3, 1, 4)
    assert jet[:, 0, 0].tolist() == [0, 0, 0]  # invalid: black
    assert jet[:, 0, 1].tolist() == [0, 0, 128]  # nearest: dark blue
    assert jet[:, 0, 3].tolist() == [128, 0, 0]  # farthest: dark red
    assert jet[1, 0, 2] == 255  # the middle is green
    fixed = colorize_depth_jet(depth, 0.0, 6.0)
    assert fixed[2, 0, 1] > fixed[0, 0, 1]  # 1 m of 6 m is still blue


FX = FY = 50.0


def floor_and_wall(h: int = 64, w: int = 64, camera_height: float = 1.5, wall: float = 4.0) -> tuple:
    """A level camera 1.5 m above a floor facing a wall 4 m away: rows below 51 see the floor."""
    cx, cy = (w - 1) / 2, (h - 1) / 2
    v = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    floor = torch.where(v > cy, camera_height * FY / (v - cy).clamp(min=1e-9), torch.full_like(v, 1e9))
    depth = torch.minimum(floor, torch.full_like(v, wall)).float()
    k = torch.tensor([[FX, 0, cx], [0, FY, cy], [0, 0, 1]])
    return depth, k


def test_hha_floor_and_wall():
    depth, k = floor_and_wall()
    depth[0, 0] = 0  # a hole
    hha = hha_encode(depth, k).long()
    assert hha.dtype == torch.long and hha.shape == (3, 64, 64)
    assert hha[:, 0, 0].tolist() == [0, 0, 0]
    floor, wall = hha[:, 54:63, 2:62], hha[:, 2:47, 2:62]
    # disparity: 310 / depth
    assert torch.all(wall[0] == round(310 / 4.0))
    assert torch.allclose(hha[0, 60, 30].float(), torch.tensor(310 / float(depth[60, 30])), atol=0.6)
    # angle with gravity: floors 0 degrees -> 38, walls 90 -> 128
    assert (floor[2] - 38).abs().max() <= 1 and (wall[2] - 128).abs().max() <= 1
    # height above the lowest point (the floor), in cm, clipped at 255
    assert floor[1].max() <= 1
    for row in (30, 40, 46):
        expected = 150 - 100 * (row - 31.5) * 4.0 / FY
        assert (hha[1, row, 2:62] - round(expected)).abs().max() <= 1
    assert torch.all(hha[1, :3, 1:] == 255)


def test_hha_uses_the_given_up_direction():
    # a camera pitched 30 degrees down above a floor: every pixel sees floor
    h = w = 32
    theta = math.radians(30)
    up = torch.tensor([0.0, -math.cos(theta), -math.sin(theta)], dtype=torch.float64)
    k = torch.tensor([[FX, 0, 15.5], [0, FY, 15.5], [0, 0, 1]], dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    rays = torch.stack([(u - 15.5) / FX, (v - 15.5) / FY, torch.ones_like(u)], -1)
    depth = (-1.2 / (rays @ up)).float()
    right = hha_encode(depth, k.float(), up.float()).long()
    level = hha_encode(depth, k.float()).long()
    assert (right[2, 2:-2, 2:-2] - 38).abs().max() <= 1 and right[1, 2:-2, 2:-2].max() <= 1
    assert (level[2, 2:-2, 2:-2] - 68).abs().max() <= 2  # assuming a level camera tilts the floor by 30 degrees
    # the same up from a ScanNet-style camera-to-world pose (world z up)
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -math.sin(theta), math.cos(theta)],
                                 [0, -math.cos(theta), -math.sin(theta)]])
    assert torch.allclose(camera_up_from_pose(pose), up.float(), atol=1e-6)
    sample = {"depth": depth, "intrinsics": k.float(), "pose": pose}
    assert torch.equal(DepthToHHA()(sample)["hha"], right.to(torch.uint8))
    with pytest.raises(InputError, match="needs the sample's 'intrinsics'"):
        DepthToHHA()({"depth": depth})


def test_hha_after_resize_and_flip_keeps_its_geometry():
    depth, k = floor_and_wall(32, 32, camera_height=0.6)  # rows 23 and below see the floor
    s = {"image": torch.zeros(3, 32, 32, dtype=torch.uint8), "depth": depth, "intrinsics": k, "label": depth.long()}
    out = Compose([Resize((64, 64)), RandomHorizontalFlip(1.0), DepthToHHA()])(s, g())
    hha = out["hha"].long()
    assert (hha[2, 50:62, 4:60] - 38).abs().max() <= 2 and (hha[2, 4:40, 4:60] - 128).abs().max() <= 2
    assert out["intrinsics"][0, 0] == pytest.approx(2 * FX)


def test_rgbd_presets():
    depth, k = floor_and_wall(48, 96)
    s = {"image": torch.full((3, 48, 96), 100, dtype=torch.uint8), "depth": depth, "intrinsics": k,
         "label": torch.zeros(48, 96, dtype=torch.long)}
    train = rgbd_train_transform((24, 48))(s, g(3))
    assert train["image"].shape == (3, 24, 48) and train["hha"].shape == (3, 24, 48)
    assert train["hha"].is_floating_point() and train["image"].is_floating_point()
    assert train["label"].shape == (24, 48)
    jet = rgbd_eval_transform((24, 48), depth="jet")(s, g())
    assert jet["depth_jet"].shape == (3, 24, 48)
    with pytest.raises(ConfigError, match="'hha' or 'jet'"):
        rgbd_eval_transform((24, 48), depth="raw")
