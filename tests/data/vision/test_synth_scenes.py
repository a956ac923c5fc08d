"""The synthetic RGB-D scenes read back through the Cityscapes reader: geometry, sensor model, conditions, bytes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mmseq.data.vision.readers_common import load_png
from mmseq.data.vision.synth_scenes import (BASELINE, CONDITION_FRACTIONS, DISPARITY_NOISE, PROFILES, SCENE_CLASSES,
                                            build_scenes, encode_disparity, read_scenes, sensor_depth)  # fmt: skip
from mmseq.errors import ConfigError, InputError

GROUND, SKY, FIRST_OBJECT = SCENE_CLASSES.index("ground"), SCENE_CLASSES.index("sky"), SCENE_CLASSES.index("cube")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "synth_scenes"
    threads = torch.get_num_threads()
    try:
        build_scenes(out, "tiny", seed=5, encodings=("jet", "hha"))
    finally:
        torch.set_num_threads(threads)
    return out


def _meta(root: Path) -> dict:
    return json.loads((root / "scenes.json").read_text(encoding="utf-8"))


def test_the_cityscapes_reader_reads_every_split(built):
    w, h = PROFILES["tiny"]["size"]
    for split in ("train", "val", "test"):
        ds = read_scenes(built, split)
        assert len(ds) == PROFILES["tiny"][split]
        item = ds[0]
        assert item["image"].shape == (3, h, w) and item["image"].dtype == torch.uint8
        assert item["depth"].shape == (h, w) and item["label"].shape == (h, w)
        assert 0 < int(item["label"].min()) and int(item["label"].max()) < len(SCENE_CLASSES)
        camera = json.loads((built / "camera" / split / item["city"] / f"{item['id']}_camera.json").read_text())
        assert torch.allclose(item["intrinsics"][0], torch.tensor([camera["intrinsic"]["fx"], 0.0,
                                                                   camera["intrinsic"]["u0"]]))  # fmt: skip
    assert {f["layout"] for f in _meta(built)["frames"]} == {"street", "room"}


def test_labels_agree_with_the_geometry(built):
    """Ground pixels back-project onto the plane z = 0, objects stand above it, the sky has no depth, and the
    instance map refines the label map."""
    ds = read_scenes(built, "train")
    checked = 0
    for item in ds:
        depth, label = item["depth"].numpy().astype(np.float64), item["label"].numpy()
        k = item["intrinsics"].numpy().astype(np.float64)
        world_to_camera = np.array(item["camera"]["world_to_camera"])
        v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]] + 0.5
        cam = np.stack([(u - k[0, 2]) / k[0, 0] * depth, (v - k[1, 2]) / k[1, 1] * depth, depth], -1)
        world = (cam - world_to_camera[:3, 3]) @ world_to_camera[:3, :3]  # rows: R^T (p - t)
        valid = depth > 0
        ground = valid & (label == GROUND)
        assert ground.sum() > 50
        # disparity noise grows the depth error with depth^2; 4 sigma plus the 1/256 px code
        sigma = depth**2 / (BASELINE * k[0, 0]) * (DISPARITY_NOISE * depth.shape[1] / 768 + 1 / 256)
        height_error = np.abs(world[..., 2])  # the point's height above the plane
        assert (height_error[ground] <= 4 * sigma[ground] + 0.02).mean() > 0.99
        objects = valid & (label >= FIRST_OBJECT)
        if objects.any():
            assert (world[..., 2][objects] > -4 * sigma[objects] - 0.02).mean() > 0.99
            checked += 1
        assert not valid[label == SKY].any()
        ids = load_png(built / "gtFine" / "train" / item["city"] / f"{item['id']}_gtFine_instanceIds.png")
        ids = ids.astype(np.int64)
        assert np.array_equal(np.where(ids >= 1000, ids // 1000, ids), label)
        assert (ids[label >= FIRST_OBJECT] % 1000 > 0).all()
    assert checked >= len(ds) // 2


def test_sensor_depth_noise_ranges_and_holes():
    rng = np.random.default_rng(0)
    h, w, fx = 96, 768, 500.0
    depth = np.full((h, w), 8.0)
    depth[:, :40] = np.inf  # sky
    depth[:, 40:80] = 80.0  # beyond the range
    depth[:, 80:100] = 0.2  # too near
    segments = np.zeros((h, w), dtype=np.int64)
    depth[:, 400:] = 4.0  # a nearer surface: an edge at column 400
    segments[:, 400:] = 7
    disparity = sensor_depth(rng, depth, fx, max_range=60.0, segments=segments)
    assert (disparity[:, :100] == 0).all()
    flat = disparity[:, 150:350]
    kept = flat[flat > 0]
    assert (flat == 0).mean() < 0.2  # only the random blobs
    assert abs(kept.std() - DISPARITY_NOISE) < 0.01 and abs(kept.mean() - BASELINE * fx / 8.0) < 0.01
    edge = disparity[:, 399:401]
    assert 0.6 < (edge == 0).mean() < 0.95  # most, not all, pixels at the step are lost
    code = encode_disparity(disparity)
    assert code.dtype == np.uint16 and ((code == 0) == (disparity == 0)).all()
    back = (code[disparity > 0].astype(np.float64) - 1) / 256
    assert np.abs(back - disparity[disparity > 0]).max() <= 0.5 / 256 + 1e-12


def test_conditions_come_in_the_documented_fractions_and_act_on_rgb_only(built):
    meta = _meta(built)
    for split in ("train", "val", "test"):
        frames = [f for f in meta["frames"] if f["split"] == split]
        counts = Counter(f["condition"] for f in frames)
        for name, fraction in list(CONDITION_FRACTIONS.items())[1:]:
            assert counts[name] == round(fraction * len(frames)), (split, name, counts)
        assert counts["clear"] == len(frames) - sum(counts[n] for n in list(CONDITION_FRACTIONS)[1:])
    ds = read_scenes(built, "train")
    by_id = {f["id"]: f for f in meta["frames"] if f["split"] == "train"}
    mean = {}
    for item in ds:
        frame = by_id[item["id"]]
        mean.setdefault(frame["condition"], []).append(float(item["image"].float().mean()))
        if frame["condition"] == "camouflage":
            assert frame["params"]["against"] in ("ground", "wall") and frame["params"]["instance"] >= 1
        if frame["condition"] == "fog":
            assert frame["params"]["visibility_m"] > 0
        assert (item["depth"] > 0).float().mean() > 0.3  # the range sensor works in every condition
    clear = np.mean(mean["clear"])
    assert np.mean(mean["low_light"]) < 0.5 * clear < np.mean(mean["overexposure"])


def test_depth_encodings_are_written_beside_the_depth(built):
    item = read_scenes(built, "val")[0]
    for folder, suffix in (("depthJet", "depthJet"), ("hha", "hha")):
        from PIL import Image

        with Image.open(built / folder / "val" / item["city"] / f"{item['id']}_{suffix}.png") as im:
            array = np.asarray(im)
        assert array.shape == (*item["depth"].shape, 3)
        assert (array[item["depth"].numpy() == 0] == 0).all()  # invalid depth: black
        assert array[item["depth"].numpy() > 0].any()


def test_the_same_seed_gives_the_same_bytes(built, tmp_path):
    again = tmp_path / "again"
    build_scenes(again, "tiny", seed=5, encodings=("hha", "jet"))
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((built / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_bad_requests_raise_clear_errors(built, tmp_path):
    with pytest.raises(ConfigError, match="unknown profile"):
        build_scenes(tmp_path / "x", "huge")
    with pytest.raises(ConfigError, match="depth encodings"):
        build_scenes(tmp_path / "x", "tiny", encodings=("rainbow",))
    with pytest.raises(InputError, match="--overwrite"):
        build_scenes(built, "tiny")
