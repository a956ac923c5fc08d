"""The synthetic point-cloud product: read back through the public readers, deterministic, partial where it must be."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mmseq.cli import build_parser
from mmseq.data.vision import synth_points as sp
from mmseq.data.vision.objects import CLASS_NAMES
from mmseq.data.vision.readers_points import ModelNet40H5, ScanObjectNN, ShapeNet55
from mmseq.errors import ConfigError, InputError

C = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def product(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "points"
    stats = sp.build_points(root, "tiny", seed=0)
    assert stats["sets"] == {"pool": {"train": C, "test": C}, "clean": {"train": C, "test": C},
                             "hard": {"train": C, "test": C}}  # fmt: skip
    return root


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_clean_split_reads_as_modelnet40_h5(product):
    folder = product / "modelnet40_ply_hdf5_2048"
    ds = ModelNet40H5(folder, "train", use_normals=True)
    assert len(ds) == C and len(ModelNet40H5(folder, "test")) == C
    assert [ds[i]["class_name"] for i in range(C)] == list(CLASS_NAMES)  # interleaved, names from shape_names.txt
    item = ds[1]
    assert item["points"].shape == (sp.CLEAN_POINTS, 6) and item["source"] == "sphere/sphere_0001.ply"
    xyz, normals = item["points"][:, :3].numpy(), item["points"][:, 3:].numpy()
    assert np.abs(xyz.mean(0)).max() < 1e-5 and np.linalg.norm(xyz, axis=1).max() == pytest.approx(1, abs=1e-5)
    # a sphere: every point on it (centred near the centroid), the normals pointing outwards along the radius
    centre, radius = fit_sphere(xyz.astype(np.float64))
    offset = np.linalg.norm(xyz - centre, axis=1)
    assert np.abs(offset - radius).max() < 1e-4 and np.linalg.norm(centre) < 0.05
    assert ((normals * (xyz - centre)).sum(1) / offset).min() > 0.9999
    with h5py.File(folder / "ply_data_train0.h5") as h5:
        assert h5["label"].dtype == np.uint8 and h5["label"].shape == (C, 1)
        assert h5["faceId"].shape == (C, sp.CLEAN_POINTS)
    assert (folder / "train_files.txt").read_text() == "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n"


def test_pool_reads_as_shapenet55(product):
    folder = product / "ShapeNet55-34"
    ds = ShapeNet55(folder, "train")
    assert len(ds) == C and len(ShapeNet55(folder, "whole")) == 2 * C
    synsets = json.loads((folder / "shapenet_synset_dict.json").read_text())
    assert [synsets[ds[i]["taxonomy_id"]] for i in range(C)] == list(CLASS_NAMES)
    item = ShapeNet55(folder, "test", normalize=False)[0]
    assert item["points"].shape == (sp.POOL_POINTS, 3) and len(item["model_id"]) == 32
    assert np.load(folder / "shapenet_pc" / ds.files[0]).dtype == np.float32
    train, test = (set((folder / "ShapeNet-55" / f"{s}.txt").read_text().split()) for s in ("train", "test"))
    assert not train & test


def test_hard_split_reads_as_scanobjectnn_pb_t50_rs(product):
    root = product / "h5_files"
    ds = ScanObjectNN(root, "train", "pb_t50_rs")
    assert len(ds) == C and len(ScanObjectNN(root, "test", "pb_t50_rs")) == C
    assert (root / "shape_names.txt").read_text().split() == list(CLASS_NAMES)
    with_background = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item["label"] == i % C and item["points"].shape == (sp.HARD_POINTS, 3)
        assert item["class_name"] == CLASS_NAMES[item["label"]]  # the product's names, not ScanObjectNN's
        mask = item["mask"].numpy()
        assert set(np.unique(mask)) <= {-1, item["label"]} and (mask != -1).mean() >= 0.3
        with_background += bool((mask == -1).any())
        # normalised to the unit sphere, then scaled by a factor in HARD_SCALE
        assert sp.HARD_SCALE[0] - 1e-5 <= float(item["points"].norm(dim=1).max()) <= sp.HARD_SCALE[1] + 1e-5
    assert with_background >= len(ds) // 2


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere: |p|^2 = 2 c.p + (r^2 - |c|^2)."""
    a = np.concatenate([2 * points, np.ones((len(points), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(a, (points**2).sum(1), rcond=None)
    centre = solution[:3]
    return centre, float(np.sqrt(solution[3] + centre @ centre))


def test_a_scan_sees_one_side_only():
    """A scanned sphere is a cap seen from the camera: every target point faces it, ``(p - c).(eye - c) > 0``."""
    from mmseq.data.vision.render import render

    key = (0, 3, 0)
    scenes = [sp._scan_scene(sp._rng(*key, i, 0), sp._rng(*key, i, 1), "sphere") for i in range(2)]
    rendering = render([scene for scene, _, _ in scenes], shadows=False)
    for b, (scene, target, _) in enumerate(scenes):
        world, instance = sp._back_project(rendering, b, scene.camera)
        obj = world[instance == 1]
        centre, radius = fit_sphere(obj)
        assert np.abs(np.linalg.norm(obj - centre, axis=1) - radius).max() < 1e-3 * radius  # exact before noise
        towards = scene.camera.position - centre
        assert ((obj - centre) @ towards).min() > 0.99 * radius**2  # the cap a point at the camera sees
        assert len(obj) > 500
    points, fg = sp.scan_cloud("sphere", seed=0, index=0)  # and what the product keeps of it: still a sphere cap
    centre, radius = fit_sphere(points[fg].astype(np.float64))
    assert np.abs(np.linalg.norm(points[fg] - centre, axis=1) - radius).max() < 0.05 * radius


def test_views_scan_the_same_object_and_chunks_do_not_matter():
    items = [(0, 0, "chair"), (0, 1, "chair")]
    together = sp._scan_chunk((3, "train", items))
    alone = [sp._scan_chunk((3, "train", [item]))[0] for item in items]
    for (a, fa), (b, fb) in zip(together, alone):
        assert np.array_equal(a, b) and np.array_equal(fa, fb)  # each scan depends on its own seed only
    assert not np.array_equal(together[0][0], together[1][0])  # two views differ
    # ... of the same instance (the object's proportions come from its own generator), unlike another seed's
    key = (3, sp._SET_CODES["hard"], sp._SPLIT_CODES["train"])
    first, second = (sp._scan_scene(sp._rng(*key, 0, 0), sp._rng(*key, 0, 1 + v), "chair")[1] for v in (0, 1))
    other = sp._scan_scene(sp._rng(4, *key[1:], 0, 0), sp._rng(4, *key[1:], 0, 1), "chair")[1]
    assert np.array_equal(first.shape.bounds(), second.shape.bounds())
    assert not np.array_equal(first.shape.bounds(), other.shape.bounds())


def test_same_seed_same_bytes(product, tmp_path):
    again = tmp_path / "again"
    sp.build_points(again, "tiny", seed=0)
    first, second = digests(product), digests(again)
    assert len(first) == 2 * C + 3 + 7 + 3 + 1  # npy, pool lists + dict, modelnet, scanobjectnn, marker
    assert first == second


def test_errors_and_cli(product, tmp_path):
    with pytest.raises(ConfigError, match="unknown points profile 'huge'"):
        sp.build_points(tmp_path / "x", "huge")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "note.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no points.json"):
        sp.build_points(tmp_path / "busy", "tiny")
    with pytest.raises(InputError, match="pass --overwrite"):
        sp.build_points(product, "tiny")
    args = build_parser().parse_args(["data", "synth", "points", "--out", "x", "--profile", "tiny", "--seed", "3"])
    assert (args.out, args.profile, args.seed) == ("x", "tiny", 3) and callable(args.run)
