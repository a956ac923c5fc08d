"""Point-cloud readers on tiny fixtures in the official layouts (txt, HDF5, npy)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mmseq.data.vision.readers_points import (
    SCANOBJECTNN_CLASSES, SCANOBJECTNN_VARIANTS, ModelNet40, ModelNet40H5, ScanObjectNN, ShapeNet55,
)
from mmseq.data.vision.transforms import TransformedDataset
from mmseq.data.vision.transforms_points import ShufflePoints, point_mae_pretrain_transform
from mmseq.errors import InputError

CLASSES = ["airplane", "bathtub", "night_stand"]  # a stand-in for the 40 names; the line index is the label


def cloud(rng: np.random.Generator, n: int, centre=(0.0, 0.0, 0.0), radius: float = 1.0) -> np.ndarray:
    xyz = rng.normal(size=(n, 3))
    normals = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    return np.concatenate([np.asarray(centre) + radius * normals * rng.uniform(0.5, 1, (n, 1)), normals], axis=1)


# ------------------------------------------------------------------------------------- ModelNet40 (txt)
def modelnet_txt(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root).mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "modelnet40_train.txt").write_text("airplane_0001\nnight_stand_0002\n")
    (root / "modelnet40_test.txt").write_text("bathtub_0107\n")
    for shape_id, centre in (("airplane_0001", (5, 0, 0)), ("night_stand_0002", (0, 2, 0)), ("bathtub_0107", 0)):
        cls = shape_id.rsplit("_", 1)[0]
        (root / cls).mkdir(exist_ok=True)
        np.savetxt(root / cls / f"{shape_id}.txt", cloud(rng, 50, centre, 3.0), fmt="%.6f", delimiter=",")
    return root


def test_modelnet40_txt(tmp_path):
    root = modelnet_txt(tmp_path / "modelnet40_normal_resampled")
    ds = ModelNet40(root, "train", use_normals=True)
    assert len(ds) == 2
    item = ds[1]
    assert (item["label"], item["class_name"], item["id"]) == (2, "night_stand", "night_stand_0002")
    assert item["points"].shape == (50, 6) and item["points"].dtype == torch.float32
    xyz = item["points"][:, :3]
    assert xyz.mean(0).abs().max() < 1e-5 and xyz.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    raw = np.loadtxt(root / "night_stand" / "night_stand_0002.txt", delimiter=",")
    assert torch.allclose(item["points"][:, 3:], torch.from_numpy(raw[:, 3:]).float(), atol=1e-6)  # normals kept
    first = ModelNet40(root, "train", num_points=10, normalize=False)[0]["points"]
    assert torch.allclose(first, torch.from_numpy(np.loadtxt(root / "airplane/airplane_0001.txt",
                                                              delimiter=",")[:10, :3]).float(), atol=1e-6)
    assert ModelNet40(root, "test")[0]["class_name"] == "bathtub"


def test_modelnet40_txt_errors(tmp_path):
    root = modelnet_txt(tmp_path / "mn")
    with pytest.raises(InputError, match="unknown split 'val'"):
        ModelNet40(root, "val")
    (root / "modelnet40_test.txt").write_text("sofa_0001\n")
    with pytest.raises(InputError, match="modelnet40_test.txt: shape 'sofa_0001' has class 'sofa'"):
        ModelNet40(root, "test")
    (root / "airplane" / "airplane_0001.txt").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(InputError, match=r"airplane_0001.txt: expected N x 6"):
        ModelNet40(root, "train")[0]
    (root / "airplane" / "airplane_0001.txt").unlink()
    with pytest.raises(InputError, match="ModelNet40 shape file not found: .*airplane_0001.txt"):
        ModelNet40(root, "train")[0]


# ------------------------------------------------------------------------------------------ ModelNet40 (h5)
def modelnet_h5(root: Path, with_list: bool = True, normals: bool = True) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    (root / "shape_names.txt").write_text("\n".join(CLASSES) + "\n")
    sizes = {"ply_data_train0.h5": 3, "ply_data_train1.h5": 2, "ply_data_test0.h5": 2}
    label = 0
    for name, n in sizes.items():
        with h5py.File(root / name, "w") as h5:
            data = rng.uniform(-1, 1, (n, 16, 3)).astype(np.float32)
            data[:, 0, 0] = np.arange(n) + 100 * int(name[-4])  # mark rows: file digit * 100 + row
            h5["data"] = data
            h5["label"] = (np.arange(label, label + n) % 3).astype(np.uint8)[:, None]
            if normals:
                h5["normal"] = np.tile(np.array([0, 0, 1], np.float32), (n, 16, 1))
            h5["faceId"] = np.zeros((n, 16), np.int32)
        label += n
        k = name[-4]
        split = "train" if "train" in name else "test"
        sources = [f"{CLASSES[j % 3]}/{CLASSES[j % 3]}_{j:04d}.ply" for j in range(n)]
        (root / f"ply_data_{split}_{k}_id2file.json").write_text(json.dumps(sources))
    if with_list:
        (root / "train_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n"
                                              "data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n")
    return root


@pytest.mark.parametrize("with_list", [True, False])
def test_modelnet40_h5_rows_span_files(tmp_path, with_list):
    root = modelnet_h5(tmp_path / "modelnet40_ply_hdf5_2048", with_list)
    ds = ModelNet40H5(root, "train", use_normals=True)
    assert len(ds) == 5
    assert [float(ds[i]["points"][0, 0]) for i in range(5)] == [0, 1, 2, 100, 101]
    assert [ds[i]["label"] for i in range(5)] == [0, 1, 2, 0, 1]
    item = ds[3]
    assert item["points"].shape == (16, 6) and torch.all(item["points"][:, 5] == 1)
    assert item["class_name"] == "airplane" and item["source"] == "airplane/airplane_0000.ply"
    assert ModelNet40H5(root, "train", num_points=4)[0]["points"].shape == (4, 3)
    assert len(ModelNet40H5(root, "test")) == 2


def test_modelnet40_h5_errors(tmp_path):
    root = modelnet_h5(tmp_path / "mn", normals=False)
    with pytest.raises(InputError, match="no 'normal' dataset"):
        ModelNet40H5(root, "train", use_normals=True)
    (root / "ply_data_train1.h5").unlink()
    with pytest.raises(InputError, match="HDF5 file not found: .*ply_data_train1.h5"):
        ModelNet40H5(root, "train")
    with h5py.File(root / "ply_data_test0.h5", "a") as h5:
        del h5["label"]
    with pytest.raises(InputError, match="ply_data_test0.h5: missing HDF5 dataset 'label'"):
        ModelNet40H5(root, "test")


# ------------------------------------------------------------------------------------------- ScanObjectNN
def scanobjectnn(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for folder, variants in (("main_split", SCANOBJECTNN_VARIANTS), ("main_split_nobg", {"obj_only": ("", False)})):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for suffix, _ in variants.values():
            for prefix, n in (("training", 4), ("test", 2)):
                with h5py.File(root / folder / f"{prefix}_objectdataset{suffix}.h5", "w") as h5:
                    h5["data"] = rng.normal(size=(n, 32, 3)).astype(np.float32)
                    h5["label"] = np.array([3, 14, 0, 7][:n], np.int32)  # int label per row, no trailing axis
                    mask = np.zeros((n, 32), np.int32)
                    mask[:, :8] = -1  # background points
                    h5["mask"] = mask
    return root


@pytest.mark.parametrize("variant", sorted(SCANOBJECTNN_VARIANTS))
def test_scanobjectnn_variants(tmp_path, variant):
    root = scanobjectnn(tmp_path / "h5_files")
    ds = ScanObjectNN(root, "train", variant)
    suffix = SCANOBJECTNN_VARIANTS[variant][0]
    folder = "main_split_nobg" if variant == "obj_only" else "main_split"
    assert ds.path == root / folder / f"training_objectdataset{suffix}.h5"
    assert len(ds) == 4 and len(ScanObjectNN(root, "test", variant)) == 2
    item = ds[1]
    assert item["points"].shape == (32, 3) and (item["label"], item["class_name"]) == (14, "toilet")
    assert item["mask"].dtype == torch.int64 and int((item["mask"] == -1).sum()) == 8
    with h5py.File(ds.path) as h5:
        assert np.allclose(item["points"].numpy(), h5["data"][1])


def test_scanobjectnn_shuffle_keeps_mask_with_points_and_errors(tmp_path):
    root = scanobjectnn(tmp_path / "h5_files")
    ds = ScanObjectNN(root, "train", "obj_bg")
    shuffled = TransformedDataset(ds, ShufflePoints(), seed=3)[0]
    original = ds[0]
    order = [int(torch.nonzero((original["points"] == p).all(1))[0]) for p in shuffled["points"]]
    assert sorted(order) == list(range(32)) and order != list(range(32))
    assert torch.equal(shuffled["mask"], original["mask"][order])
    assert len(SCANOBJECTNN_CLASSES) == 15
    with pytest.raises(InputError, match="unknown ScanObjectNN variant 'pb_t50'"):
        ScanObjectNN(root, "train", "pb_t50")
    with pytest.raises(InputError, match="split1"):
        ScanObjectNN(root, "train", "obj_bg", split_folder="split1")
    (root / "main_split" / "test_objectdataset_augmentedrot_scale75.h5").unlink()
    with pytest.raises(InputError, match="test_objectdataset_augmentedrot_scale75.h5"):
        ScanObjectNN(root, "test", "pb_t50_rs")


# -------------------------------------------------------------------------------------------- ShapeNet-55
def shapenet(root: Path) -> Path:
    rng = np.random.default_rng(3)
    (root / "shapenet_pc").mkdir(parents=True)
    (root / "ShapeNet-55").mkdir()
    names = ["02691156-1a04e3eab45ca15dd86060f189eb133.npy", "03001627-1006be65e7bc937e9141f9b58470d646.npy",
             "04379243-10139657dfa9afe0c3bd24f986301745.npy"]
    for i, name in enumerate(names):
        np.save(root / "shapenet_pc" / name, (rng.normal(size=(64, 3)) * (i + 1) + 10).astype(np.float32))
    (root / "ShapeNet-55" / "train.txt").write_text("\n".join(names[:2]) + "\n")
    (root / "ShapeNet-55" / "test.txt").write_text(names[2] + "\n")
    return root


def test_shapenet55_and_the_point_mae_pipeline(tmp_path):
    root = shapenet(tmp_path / "ShapeNet55-34")
    ds = ShapeNet55(root, "train")
    assert len(ds) == 2 and len(ShapeNet55(root, "whole")) == 3
    assert ShapeNet55(root, "whole")[0]["taxonomy_id"] == "04379243"  # test lines first, as Point-MAE's whole
    item = ds[1]
    assert (item["taxonomy_id"], item["model_id"]) == ("03001627", "1006be65e7bc937e9141f9b58470d646")
    assert item["points"].shape == (64, 3) and item["points"].norm(dim=1).max() == pytest.approx(1, abs=1e-5)
    raw = ShapeNet55(root, "train", normalize=False)
    pipeline = TransformedDataset(raw, point_mae_pretrain_transform(16), seed=0)
    a, b = pipeline[0]["points"], pipeline[0]["points"]
    assert a.shape == (16, 3) and torch.equal(a, b)  # seeded: the same draw twice
    # normalised after sampling (as Point-MAE): the 16 drawn points themselves are centred and reach radius 1
    assert a.mean(0).abs().max() < 1e-5 and a.norm(dim=1).max() == pytest.approx(1, abs=1e-5)
    source = raw[0]["points"]
    centred = (source - source.mean(0)) / (source - source.mean(0)).norm(dim=1).max()
    # ... which is not the same as a subset of the cloud normalised as a whole
    assert torch.cdist(a, centred).min(dim=1).values.max() > 1e-3
    pipeline.set_epoch(1)
    assert not torch.equal(pipeline[0]["points"], a)  # a new epoch draws new points


def test_shapenet55_errors(tmp_path):
    root = shapenet(tmp_path / "sn")
    with pytest.raises(InputError, match="unknown split 'val'"):
        ShapeNet55(root, "val")
    (root / "ShapeNet-55" / "test.txt").write_text("not_a_cloud.txt\n")
    with pytest.raises(InputError, match="'not_a_cloud.txt' is not '<synset>-<model id>.npy'"):
        ShapeNet55(root, "test")
    np.save(root / "shapenet_pc" / "02691156-1a04e3eab45ca15dd86060f189eb133.npy", np.zeros(5))
    with pytest.raises(InputError, match=r"expected an \[N, 3\] array"):
        ShapeNet55(root, "train")[0]
