"""RGB-D segmentation readers on tiny fixtures in the official layouts (PNG, JSON, MATLAB/HDF5, tsv)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mmseq.data.vision.readers_rgbd import (
    ADAPNET11_CLASSES, CITYSCAPES_CLASSES, SCANNET20_CLASSES, SUNRGBD, SUNRGBD_CLASSES, Cityscapes, FreiburgForest,
    ScanNet2D, cityscapes_label_map, sunrgbd_decode_depth,
)
from mmseq.errors import InputError


def png(path: Path, array: np.ndarray) -> Path:
    """Write a PNG: 2-D uint8/uint16 arrays as 8/16-bit grey, [H, W, 3] uint8 as RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def jpg(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    """Write a flat-coloured (width, height) JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=100)
    return path


def rgb(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# ------------------------------------------------------------------------------------------------ Cityscapes
LABEL_IDS = np.array([[7, 8, 26, 27, 32, 12, 0, 33], [23, 24, 25, 28, 31, 19, 9, 21]], np.uint8)
TRAIN_IDS = [[0, 1, 13, 14, 17, 3, 255, 18], [10, 11, 12, 15, 16, 6, 255, 8]]
ADAPNET11 = [[3, 4, 8, 8, 11, 0, 0, 11], [1, 10, 11, 8, 0, 0, 0, 6]]  # wall, train, traffic light, parking: void
BASELINE, FX = 0.209313, 2262.52


def cityscapes(root: Path) -> Path:
    frames = (("val", "frankfurt", "frankfurt_000000_000294"), ("val", "lindau", "lindau_000001_000019"),
              ("train", "aachen", "aachen_000000_000019"))
    for split, city, frame in frames:
        png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", rgb(2, 8, 60))
        disparity = np.array([[0, 1, 257, 1 + 256 * 10, 1 + 256 * 100, 2, 65535, 513]] * 2, np.uint16)
        png(root / "disparity" / split / city / f"{frame}_disparity.png", disparity)
        png(root / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", LABEL_IDS)
        camera = {"extrinsic": {"baseline": BASELINE, "pitch": 0.038, "roll": 0.0, "yaw": -0.0195, "x": 1.7,
                                "y": 0.1, "z": 1.22},
                  "intrinsic": {"fx": FX, "fy": 2265.3, "u0": 1096.98, "v0": 513.137}}  # fmt: skip
        path = root / "camera" / split / city / f"{frame}_camera.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(camera))
    return root


def test_cityscapes_depth_labels_and_intrinsics(tmp_path):
    root = cityscapes(tmp_path / "cityscapes")
    ds = Cityscapes(root, "val")
    assert [f for f in ds.frames] == ["frankfurt_000000_000294", "lindau_000001_000019"]
    item = ds[0]
    assert item["image"].shape == (3, 2, 8) and item["city"] == "frankfurt"
    bf = BASELINE * FX
    expected = torch.tensor([0, 0, bf, bf / 10, bf / 100, bf * 256, bf * 256 / 65534, bf / 2], dtype=torch.float32)
    assert torch.allclose(item["depth"][0], expected, rtol=1e-5)
    assert item["depth"].dtype == torch.float32
    assert item["label"].tolist() == TRAIN_IDS and ds.ignore_index == 255
    assert torch.allclose(item["intrinsics"], torch.tensor([[FX, 0, 1096.98], [0, 2265.3, 513.137], [0, 0, 1]]))
    assert item["camera"]["pitch"] == 0.038
    adapnet = Cityscapes(root, "val", label_set="adapnet11", modalities=("label",))
    assert adapnet[0]["label"].tolist() == ADAPNET11 and "image" not in adapnet[0] and adapnet.ignore_index == 0
    assert len(CITYSCAPES_CLASSES) == 19 and len(ADAPNET11_CLASSES) == 12
    assert cityscapes_label_map(LABEL_IDS, "label_ids").tolist() == LABEL_IDS.tolist()


def test_cityscapes_errors(tmp_path):
    root = cityscapes(tmp_path / "cityscapes")
    with pytest.raises(InputError, match="leftImg8bit/test"):
        Cityscapes(root, "test")
    with pytest.raises(InputError, match="unknown Cityscapes label set 'trainids'"):
        Cityscapes(root, "val", label_set="trainids")
    with pytest.raises(InputError, match="unknown modality 'rgb'"):
        Cityscapes(root, "val", modalities=("rgb",))
    (root / "disparity/val/lindau/lindau_000001_000019_disparity.png").unlink()
    with pytest.raises(InputError, match="lindau_000001_000019_disparity.png"):
        Cityscapes(root, "val")[1]
    camera = root / "camera/val/frankfurt/frankfurt_000000_000294_camera.json"
    camera.write_text(json.dumps({"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 1}}))
    with pytest.raises(InputError, match="frankfurt_000000_000294_camera.json: intrinsic: missing key 'fy'"):
        Cityscapes(root, "val")[0]


# ------------------------------------------------------------------------------------------ Freiburg Forest
def freiburg(root: Path) -> Path:
    colours = [(170, 170, 170), (0, 255, 0), (102, 102, 51), (0, 60, 0), (0, 120, 255), (0, 0, 0), (255, 0, 255)]
    gt = np.array([colours], np.uint8)  # 1 x 7 x 3
    for sample in ("b1-09517", "b2-00412"):
        jpg(root / "train" / "rgb" / f"{sample}_Clipped.jpg", (7, 1), (10, 200, 30))
        png(root / "train" / "GT_color" / f"{sample}_mask.png", gt)
        png(root / "train" / "depth_gray" / f"{sample}_Clipped.png", np.arange(7, dtype=np.uint8)[None] * 30)
    return root


def test_freiburg_forest(tmp_path):
    root = freiburg(tmp_path / "freiburg_forest_annotated")
    ds = FreiburgForest(root, "train")
    assert ds.ids == ["b1-09517", "b2-00412"]
    item = ds[0]
    assert item["label"].tolist() == [[1, 2, 3, 3, 4, 5, 0]]  # tree joins vegetation; an unknown colour is void
    assert item["depth"].tolist() == [[0, 30, 60, 90, 120, 150, 180]] and item["depth"].dtype == torch.float32
    assert item["image"].shape == (3, 1, 7) and item["image"][1].float().mean() > 150
    (root / "train" / "depth_gray" / "b2-00412_Clipped.png").unlink()
    with pytest.raises(InputError, match="depth_gray: no file for sample 'b2-00412'"):
        FreiburgForest(root, "train")
    assert len(FreiburgForest(root, "train", modalities=("image", "label"))) == 2
    with pytest.raises(InputError, match="test"):
        FreiburgForest(root, "test")


# ----------------------------------------------------------------------------------------------- SUN RGB-D
def encode_sunrgbd_depth(metres: np.ndarray) -> np.ndarray:
    v = np.round(metres * 1000).astype(np.uint32)
    return (((v << 3) | (v >> 13)) & 0xFFFF).astype(np.uint16)


def sunrgbd(root: Path) -> Path:
    frames = ["kv1/NYUdata/NYU0001", "kv2/kinect2data/000065_2014-05-16_20-14-38_260595134347_rgbf000121-resize",
              "realsense/lg/2014_10_24-14_39_10-1311000073"]
    meta = np.zeros((1, 3), dtype=[("rgbpath", "O"), ("rgbname", "O"), ("depthname", "O"), ("K", "O")])
    labels = []
    for i, frame in enumerate(frames):
        k = np.array([[518.0 + i, 0, 3.5], [0, 519.0, 2.5], [0, 0, 1]])
        meta[0, i] = (f"/n/fs/sun3d/data/SUNRGBD/{frame}/image/{i:07d}.jpg", f"{i:07d}.jpg", f"{i:07d}.png", k)
        jpg(root / "SUNRGBD" / frame / "image" / f"{i:07d}.jpg", (8, 6), (i * 50, 0, 0))
        depth = np.full((6, 8), 1.5 + i, np.float64)
        depth[0, 0] = 0
        depth[1, 1] = 9.5  # farther than the toolbox's 8 m clamp
        png(root / "SUNRGBD" / frame / "depth_bfx" / f"{i:07d}.png", encode_sunrgbd_depth(depth))
        png(root / "SUNRGBD" / frame / "depth" / f"{i:07d}.png", encode_sunrgbd_depth(depth * 0 + 2.0))
        labels.append((np.arange(48).reshape(6, 8) + i) % 38)
    toolbox = root / "SUNRGBDtoolbox"
    (toolbox / "Metadata").mkdir(parents=True)
    (toolbox / "traintestSUNRGBD").mkdir()
    scipy.io.savemat(toolbox / "Metadata" / "SUNRGBDMeta.mat", {"SUNRGBDMeta": meta})
    train = np.array([f"/n/fs/sun3d/data/SUNRGBD/{frames[0]}", f"/n/fs/sun3d/data/SUNRGBD/{frames[2]}/"], object)
    scipy.io.savemat(toolbox / "traintestSUNRGBD" / "allsplit.mat", {"alltrain": train[None]})
    with h5py.File(toolbox / "Metadata" / "SUNRGBD2Dseg.mat", "w") as f:  # MATLAB v7.3: column-major, references
        refs = f.create_group("#refs#")
        handles = [refs.create_dataset(str(i), data=label.T.astype(np.float64)).ref for i, label in enumerate(labels)]
        f.create_group("SUNRGBD2Dseg").create_dataset("seglabel", data=np.array(handles, h5py.ref_dtype)[:, None])
    return root


def test_sunrgbd_depth_decoding():
    depth = np.array([[0.0, 0.5, 1.234, 7.999, 9.0]])
    decoded = sunrgbd_decode_depth(encode_sunrgbd_depth(depth))
    assert decoded.tolist()[0] == pytest.approx([0, 0.5, 1.234, 7.999, 8.0], abs=1e-6)
    assert sunrgbd_decode_depth(encode_sunrgbd_depth(depth), max_depth=None)[0, 4] == pytest.approx(9.0)


def test_sunrgbd_splits_labels_depth(tmp_path):
    root = sunrgbd(tmp_path / "sun")
    train, test = SUNRGBD(root, "train"), SUNRGBD(root, "test")
    assert [f["dir"] for f in train.frames] == ["kv1/NYUdata/NYU0001", "realsense/lg/2014_10_24-14_39_10-1311000073"]
    assert len(test) == 1 and test.frames[0]["dir"].startswith("kv2/")
    item = train[1]
    assert item["label"].tolist() == ((np.arange(48).reshape(6, 8) + 2) % 38).tolist()
    assert item["label"].dtype == torch.int64 and item["image"].shape == (3, 6, 8)
    assert item["depth"][0, 0] == 0 and item["depth"][1, 1] == pytest.approx(8.0)
    assert item["depth"][2, 2] == pytest.approx(3.5)
    assert item["intrinsics"][0, 0] == pytest.approx(520.0)
    assert torch.all(SUNRGBD(root, "train", depth="raw")[0]["depth"] == 2.0)
    assert len(SUNRGBD_CLASSES) == 38 and SUNRGBD_CLASSES[37] == "bag"


def test_sunrgbd_errors(tmp_path):
    root = sunrgbd(tmp_path / "sun")
    with h5py.File(root / "SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat", "a") as f:
        seg = f["SUNRGBD2Dseg/seglabel"][:2]
        del f["SUNRGBD2Dseg/seglabel"]
        f["SUNRGBD2Dseg"].create_dataset("seglabel", data=seg)
    with pytest.raises(InputError, match="SUNRGBD2Dseg.mat has 2 label maps but SUNRGBDMeta.mat lists 3"):
        SUNRGBD(root, "train")[0]
    (root / "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat").unlink()
    with pytest.raises(InputError, match="allsplit.mat"):
        SUNRGBD(root, "train")


# ------------------------------------------------------------------------------------------------- ScanNet
TSV = """id\traw_category\tcategory\tcount\tnyuId\tnyuClass\tnyu40id\teigen13id\tnyu40class
1\twall\twall\t8277\t21\twall\t1\t12\twall
2\tchair\tchair\t4646\t5\tchair\t5\t4\tchair
3\tfloor\tfloor\t2421\t11\tfloor\t2\t5\tfloor
4\ttable\ttable\t1170\t19\ttable\t7\t10\ttable
22\tceiling\tceiling\t635\t4\tceiling\t22\t3\tceiling
1163\tstick\tstick\t1\t\t\t40\t7\totherprop
"""


def scannet(download: Path) -> Path:
    scans = download / "scans"
    for scene in ("scene0000_00", "scene0011_01"):
        folder = scans / scene
        for i in (0, 20, 40):
            jpg(folder / "color" / f"{i}.jpg", (12, 8), (30, 30, 30))
            png(folder / "depth" / f"{i}.png", (np.arange(24, dtype=np.uint16).reshape(4, 6) * 100 + i))
            label = np.zeros((8, 12), np.uint16)
            label[0, :8] = [1, 2, 3, 4, 22, 1163, 0, 9999]
            png(folder / "label-filt" / f"{i}.png", label)
            (folder / "pose").mkdir(exist_ok=True)
            np.savetxt(folder / "pose" / f"{i}.txt", np.eye(4))
        (folder / "intrinsic").mkdir(exist_ok=True)
        np.savetxt(folder / "intrinsic" / "intrinsic_color.txt",
                   np.array([[1170.2, 0, 647.8, 0], [0, 1170.2, 483.8, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    (download / "scannetv2-labels.combined.tsv").write_text(TSV)
    (download / "scannetv2_train.txt").write_text("scene0000_00\n")
    (download / "scannetv2_val.txt").write_text("scene0011_01\n")
    return scans


def test_scannet_frames_labels_depth(tmp_path):
    scans = scannet(tmp_path / "ScanNet")
    ds = ScanNet2D(scans, "train")
    assert ds.frames == [("scene0000_00", 0), ("scene0000_00", 20), ("scene0000_00", 40)]
    item = ds[1]
    assert item["label"][0, :8].tolist() == [1, 5, 2, 7, 22, 40, 0, 0]  # NYU40; unknown ids are 0
    assert item["image"].shape == (3, 8, 12)
    assert item["depth"].shape == (8, 12)  # 4 x 6 depth resized (nearest) to the colour size
    assert item["depth"][0, 0] == pytest.approx(0.020) and item["depth"][7, 11] == pytest.approx(2.320)
    assert item["intrinsics"][0, 2] == pytest.approx(647.8) and torch.equal(item["pose"], torch.eye(4))
    bench = ScanNet2D(scans, "val", label_set="benchmark20", frame_step=2)
    assert [f for _, f in bench.frames] == [0, 40]
    assert bench[0]["label"][0, :8].tolist() == [1, 5, 2, 7, 0, 0, 0, 0]  # ceiling and otherprop are not in the 20
    assert len(SCANNET20_CLASSES) == 21
    raw = ScanNet2D(scans, None, label_set="scannet", modalities=("label", "depth"))  # aligned to the label size
    assert len(raw) == 6 and raw[0]["label"][0, 5] == 1163 and raw[0]["depth"].shape == (8, 12)
    native = ScanNet2D(scans, None, modalities=("depth",), align_depth=False)
    assert native[0]["depth"].shape == (4, 6)


def test_scannet_errors(tmp_path):
    scans = scannet(tmp_path / "ScanNet")
    with pytest.raises(InputError, match="scannetv2_test.txt"):
        ScanNet2D(scans, "test")
    (tmp_path / "ScanNet" / "scannetv2-labels.combined.tsv").write_text("id\tcategory\n1\twall\n")
    with pytest.raises(InputError, match="no column 'nyu40id'"):
        ScanNet2D(scans, "train")
    (tmp_path / "ScanNet" / "scannetv2_train.txt").write_text("scene0999_00\n")
    with pytest.raises(InputError, match="scene0999_00"):
        ScanNet2D(scans, "train", label_set="scannet")
