"""Readers of the public RGB-D segmentation datasets: Cityscapes, Freiburg Forest, SUN RGB-D, ScanNet v2 (2-D).

Items are dicts of ``image`` (``uint8 [3, H, W]``), ``depth`` (``float32 [H, W]``, metres where the dataset is
metric, 0 = invalid), ``label`` (``int64 [H, W]``) and, where the dataset gives a camera, ``intrinsics``
(``float32 [3, 3]``, pixels of ``image``), so the geometric transforms can keep it in step and HHA can be computed.
``modalities`` chooses which of image / depth / label are read. Each reader documents its ``ignore_index``.

Layouts (``root`` is the unpacked dataset)::

    Cityscapes       leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
                     disparity/.../*_disparity.png (16-bit), camera/.../*_camera.json, gtFine/.../*_gtFine_labelIds.png
    Freiburg Forest  {train,test}/{rgb,depth_gray,GT_color,...}/<sample id>_*.{jpg,png}
    SUN RGB-D        SUNRGBD/<sensor>/.../<scene>/{image,depth,depth_bfx}/*,
                     SUNRGBDtoolbox/Metadata/{SUNRGBDMeta.mat,SUNRGBD2Dseg.mat}, traintestSUNRGBD/allsplit.mat
    ScanNet v2       <scene>/{color/<i>.jpg, depth/<i>.png, label-filt/<i>.png, pose/<i>.txt,
                     intrinsic/intrinsic_color.txt}, scannetv2-labels.combined.tsv, scannetv2_<split>.txt
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmseq.data.vision.readers_common import (
    check_choice, expect_keys, load_image, load_png, read_json, read_lines, require_dir, require_file,
)
from mmseq.errors import InputError

__all__ = [
    "CITYSCAPES_CLASSES", "CITYSCAPES_TRAIN_ID_OF_LABEL_ID", "ADAPNET11_CLASSES", "ADAPNET11_OF_LABEL_ID",
    "FREIBURG_FOREST_CLASSES", "FREIBURG_FOREST_COLOURS", "SUNRGBD_CLASSES", "SCANNET20_NYU40_IDS",
    "SCANNET20_CLASSES", "cityscapes_disparity_to_depth", "cityscapes_label_map", "sunrgbd_decode_depth",
    "read_scannet_label_map", "Cityscapes", "FreiburgForest", "SUNRGBD", "ScanNet2D",
]

MODALITIES = ("image", "depth", "label")

# ----------------------------------------------------------------------------------------------- Cityscapes
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")  # fmt: skip
# cityscapesScripts helpers/labels.py: the labelId of trainId 0..18; every other labelId is 255 (ignored).
_CITYSCAPES_EVAL_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_TRAIN_ID_OF_LABEL_ID = {label_id: train_id for train_id, label_id in enumerate(_CITYSCAPES_EVAL_LABEL_IDS)}

# AdapNet++ (DeepSceneSeg images/class_id.txt): 0 void + 11 classes, with car+truck+bus and rider+bicycle+motorcycle
# merged. Which class wall, traffic light, terrain, train, parking, ... join is not published [unverified]; here they
# are void (0), the documented convention. Edit a copy of this dict to try another assignment.
ADAPNET11_CLASSES = ("void", "sky", "building", "road", "sidewalk", "fence", "vegetation", "pole", "vehicle",
                     "traffic sign", "pedestrian", "cyclist")  # fmt: skip
ADAPNET11_OF_LABEL_ID = {23: 1, 11: 2, 7: 3, 8: 4, 13: 5, 21: 6, 17: 7, 26: 8, 27: 8, 28: 8, 20: 9, 24: 10,
                         25: 11, 32: 11, 33: 11}  # fmt: skip
_CITYSCAPES_LABEL_SETS = ("train_ids", "adapnet11", "label_ids")


def _lut(mapping: dict[int, int], default: int, size: int = 256) -> torch.Tensor:
    lut = torch.full((size,), default, dtype=torch.int64)
    for key, value in mapping.items():
        lut[key] = value
    return lut


def cityscapes_label_map(label_ids: np.ndarray | torch.Tensor, label_set: str = "train_ids") -> torch.Tensor:
    """Map a Cityscapes ``*_labelIds.png`` to the training labels.

    Args:
        label_ids: ``[H, W]`` labelIds (0..33).
        label_set: ``train_ids`` (19 classes 0..18, 255 = ignore), ``adapnet11`` (0 = void, 1..11, see
            :data:`ADAPNET11_OF_LABEL_ID`) or ``label_ids`` (unchanged).

    Returns:
        ``int64 [H, W]``.
    """
    check_choice("Cityscapes label set", label_set, _CITYSCAPES_LABEL_SETS)
    ids = torch.as_tensor(np.asarray(label_ids).astype(np.int64))
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > 255):
        raise InputError(f"Cityscapes labelIds must lie in 0..255, got {int(ids.min())}..{int(ids.max())}")
    if label_set == "label_ids":
        return ids
    lut = (_lut(CITYSCAPES_TRAIN_ID_OF_LABEL_ID, 255) if label_set == "train_ids"
           else _lut(ADAPNET11_OF_LABEL_ID, 0))  # fmt: skip
    return lut[ids]


def cityscapes_disparity_to_depth(disparity: np.ndarray, baseline: float, fx: float) -> torch.Tensor:
    """Depth in metres from a Cityscapes 16-bit disparity PNG (cityscapesScripts README).

    ``d = (p - 1) / 256`` for ``p > 0`` and ``depth = baseline * fx / d``; ``p = 0`` is invalid, and so is ``p = 1``
    (zero disparity, infinitely far); invalid pixels are 0.

    Args:
        disparity: ``[H, W]`` stored PNG values.
        baseline: ``extrinsic.baseline`` of the camera JSON (metres, about 0.21-0.22).
        fx: ``intrinsic.fx`` (pixels, about 2262).

    Returns:
        ``float32 [H, W]``.
    """
    p = torch.as_tensor(np.asarray(disparity).astype(np.float64))
    d = (p - 1.0) / 256.0
    valid = p > 1
    depth = torch.where(valid, baseline * fx / torch.where(valid, d, torch.ones_like(d)), torch.zeros_like(d))
    return depth.to(torch.float32)


class Cityscapes(Dataset):
    """Cityscapes fine annotations with stereo depth.

    Items: ``image``, ``depth`` (metres from ``disparity`` and ``camera``), ``label`` (``label_set``), ``intrinsics``
    (from ``camera``: fx, fy, u0, v0), ``camera`` (the JSON's ``extrinsic`` dict, for the camera's pitch and height),
    ``id`` (``aachen_000000_000019``), ``city``. ``ignore_index`` is 255 for ``train_ids`` and 0 for ``adapnet11``.

    Args:
        root: The Cityscapes folder (holding ``leftImg8bit/``, ``gtFine/``, ``disparity/``, ``camera/``).
        split: ``train`` (2975), ``val`` (500) or ``test`` (1525; its labels are placeholders).
        modalities: Which of ``image``, ``depth``, ``label`` to read.
        label_set: See :func:`cityscapes_label_map`.

    Raises:
        InputError: Unknown split/modality/label set, a missing folder, or a missing file of a listed frame.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", modalities: Sequence[str] = MODALITIES,
                 label_set: str = "train_ids") -> None:
        self.root = require_dir(root, "Cityscapes folder")
        check_choice("Cityscapes split", split, ("train", "val", "test"), self.root)
        for m in modalities:
            check_choice("modality", m, MODALITIES)
        check_choice("Cityscapes label set", label_set, _CITYSCAPES_LABEL_SETS)
        image_root = require_dir(self.root / "leftImg8bit" / split, "Cityscapes leftImg8bit split folder")
        self.frames = sorted(p.name[: -len("_leftImg8bit.png")] for p in image_root.glob("*/*_leftImg8bit.png"))
        if not self.frames:
            raise InputError(f"no */*_leftImg8bit.png under {image_root}")
        self.split, self.modalities, self.label_set = split, tuple(modalities), label_set
        self.ignore_index = {"train_ids": 255, "adapnet11": 0, "label_ids": 0}[label_set]

    def __len__(self) -> int:
        return len(self.frames)

    def path(self, kind: str, frame: str) -> Path:
        """The file of ``frame`` for ``kind`` in leftImg8bit / disparity / camera / gtFine."""
        city = frame.split("_")[0]
        name = {"leftImg8bit": f"{frame}_leftImg8bit.png", "disparity": f"{frame}_disparity.png",
                "camera": f"{frame}_camera.json", "gtFine": f"{frame}_gtFine_labelIds.png"}[kind]  # fmt: skip
        return self.root / kind / self.split / city / name

    def _camera(self, frame: str) -> dict:
        path = self.path("camera", frame)
        camera = expect_keys(read_json(path, "Cityscapes camera file"), ["extrinsic", "intrinsic"], str(path))
        expect_keys(camera["extrinsic"], ["baseline"], f"{path}: extrinsic")
        expect_keys(camera["intrinsic"], ["fx", "fy", "u0", "v0"], f"{path}: intrinsic")
        return camera

    def __getitem__(self, index: int) -> dict[str, Any]:
        frame = self.frames[index]
        item: dict[str, Any] = {"id": frame, "city": frame.split("_")[0]}
        if "image" in self.modalities:
            item["image"] = load_image(self.path("leftImg8bit", frame))
        if "depth" in self.modalities:
            camera = self._camera(frame)
            k = camera["intrinsic"]
            disparity = load_png(self.path("disparity", frame), "Cityscapes disparity map")
            item["depth"] = cityscapes_disparity_to_depth(disparity, camera["extrinsic"]["baseline"], k["fx"])
            item["intrinsics"] = torch.tensor([[k["fx"], 0.0, k["u0"]], [0.0, k["fy"], k["v0"]], [0.0, 0.0, 1.0]],
                                              dtype=torch.float32)  # fmt: skip
            item["camera"] = dict(camera["extrinsic"])
        if "label" in self.modalities:
            ids = load_png(self.path("gtFine", frame), "Cityscapes labelIds map")
            item["label"] = cityscapes_label_map(ids, self.label_set)
        return item


# ------------------------------------------------------------------------------------------ Freiburg Forest
FREIBURG_FOREST_CLASSES = ("void", "road", "grass", "vegetation", "sky", "obstacle")
# GT_color colour -> label (dataset README): Tree is merged into Vegetation; any other colour is void.
FREIBURG_FOREST_COLOURS = {(170, 170, 170): 1, (0, 255, 0): 2, (102, 102, 51): 3, (0, 60, 0): 3, (0, 120, 255): 4,
                           (0, 0, 0): 5}  # fmt: skip


def _sample_id(path: Path) -> str:
    return path.name.split("_")[0].split(".")[0]


def freiburg_colour_to_label(colour: torch.Tensor) -> torch.Tensor:
    """Map a ``uint8 [3, H, W]`` GT_color image to labels ``int64 [H, W]`` (exact colours; others are void 0)."""
    code = (colour[0].long() << 16) | (colour[1].long() << 8) | colour[2].long()
    label = torch.zeros(code.shape, dtype=torch.int64)
    for (r, g, b), value in FREIBURG_FOREST_COLOURS.items():
        label[code == ((r << 16) | (g << 8) | b)] = value
    return label


class FreiburgForest(Dataset):
    """Freiburg Forest (``freiburg_forest_annotated``): forest trails, RGB + depth + 5 classes and void.

    A sample is named by the part of its file names before the first ``_`` (``rgb/b1-09517_Clipped.jpg`` is sample
    ``b1-09517``); the samples are those of ``GT_color`` (with labels) or of ``rgb`` (``modalities`` without label).
    Every modality folder is matched by that id, so the exact suffixes (the GT suffix is [unverified]) do not matter.
    Image sizes vary from sample to sample; resize in the transform.

    Items: ``image`` (from ``rgb``), ``depth`` (``float32 [H, W]``, the stored grey values of ``depth_folder``:
    **not metric**, as released), ``label`` (0 void, 1 road, 2 grass, 3 vegetation/tree, 4 sky, 5 obstacle), ``id``.
    ``ignore_index`` is 0.

    Args:
        root: The ``freiburg_forest_annotated`` folder.
        split: ``train`` (230) or ``test`` (136).
        modalities: Which of ``image``, ``depth``, ``label`` to read.
        depth_folder: The depth rendering to read (``depth_gray`` by default).

    Raises:
        InputError: Unknown split/modality, a missing folder, or a sample missing a modality's file.
    """

    ignore_index = 0

    def __init__(self, root: str | os.PathLike, split: str = "train", modalities: Sequence[str] = MODALITIES,
                 depth_folder: str = "depth_gray") -> None:
        root = require_dir(root, "Freiburg Forest folder")
        check_choice("Freiburg Forest split", split, ("train", "test"), root)
        for m in modalities:
            check_choice("modality", m, MODALITIES)
        self.split_dir = require_dir(root / split, "Freiburg Forest split folder")
        folders = {"image": "rgb", "depth": depth_folder, "label": "GT_color"}
        self.files: dict[str, dict[str, Path]] = {}
        for m in modalities:
            folder = require_dir(self.split_dir / folders[m], f"Freiburg Forest {m} folder")
            self.files[m] = {_sample_id(p): p for p in sorted(folder.iterdir()) if p.is_file()}
        lead = "label" if "label" in modalities else modalities[0]
        self.ids = sorted(self.files[lead])
        for m in modalities:
            missing = [i for i in self.ids if i not in self.files[m]]
            if missing:
                raise InputError(f"{self.split_dir / folders[m]}: no file for sample {missing[0]!r} "
                                 f"({len(missing)} missing)")  # fmt: skip
        self.modalities = tuple(modalities)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.ids[index]
        item: dict[str, Any] = {"id": sample}
        if "image" in self.modalities:
            item["image"] = load_image(self.files["image"][sample])
        if "depth" in self.modalities:
            from PIL import Image

            with Image.open(require_file(self.files["depth"][sample], "Freiburg Forest depth")) as im:
                grey = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "F") else im)
            item["depth"] = torch.from_numpy(grey.astype(np.float32))
        if "label" in self.modalities:
            item["label"] = freiburg_colour_to_label(load_image(self.files["label"][sample]))
        return item


# ----------------------------------------------------------------------------------------------- SUN RGB-D
SUNRGBD_CLASSES = (
    "void", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor_mat", "clothes",
    "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain", "box", "whiteboard", "person",
    "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
)  # fmt: skip


def sunrgbd_decode_depth(png: np.ndarray, max_depth: float | None = 8.0) -> torch.Tensor:
    """SUN RGB-D toolbox depth decoding: rotate the 16-bit value right by 3 bits, divide by 1000 (metres).

    Args:
        png: ``[H, W]`` uint16 PNG values.
        max_depth: Clamp farther values to this (the toolbox's ``read3dPoints`` uses 8 m); ``None`` keeps them.

    Returns:
        ``float32 [H, W]``, 0 where the PNG is 0.
    """
    p = np.asarray(png).astype(np.uint32) & 0xFFFF
    rotated = ((p >> 3) | (p << 13)) & 0xFFFF
    depth = rotated.astype(np.float32) / 1000.0
    if max_depth is not None:
        depth = np.minimum(depth, max_depth)
    return torch.from_numpy(depth)


def _under_sunrgbd(path: str) -> str:
    """The part of a toolbox path after ``.../SUNRGBD/`` (the toolbox records its authors' absolute paths)."""
    path = path.replace("\\", "/").rstrip("/")
    marker = "/SUNRGBD/"
    if marker in path:
        return path[path.rindex(marker) + len(marker):]
    return path[len("SUNRGBD/"):] if path.startswith("SUNRGBD/") else path.lstrip("/")


class SUNRGBD(Dataset):
    """SUN RGB-D 2-D segmentation (37 classes) read from the official data and toolbox.

    The frame list and file names come from ``SUNRGBDMeta.mat`` (``rgbpath``, ``rgbname``, ``depthname``, ``K``),
    the labels from ``SUNRGBD2Dseg.mat`` (MATLAB v7.3 / HDF5: ``SUNRGBD2Dseg/seglabel[i]``, transposed) in the same
    frame order, and train membership from ``allsplit.mat`` ``alltrain`` (every other frame is test), as ESANet's
    preparation does: 5285 train and 5050 test frames.

    Items: ``image``, ``depth`` (metres, :func:`sunrgbd_decode_depth`; ``depth_bfx`` in-painted by default),
    ``label`` (0 void, 1..37 :data:`SUNRGBD_CLASSES`), ``intrinsics`` (the frame's ``K``), ``id`` (the frame folder
    under ``SUNRGBD/``). ``ignore_index`` is 0.

    Args:
        root: Folder holding ``SUNRGBD/`` and ``SUNRGBDtoolbox/``.
        split: ``train`` or ``test``.
        modalities: Which of ``image``, ``depth``, ``label`` to read.
        depth: ``bfx`` (in-painted, ``depth_bfx/``) or ``raw`` (``depth/``).
        max_depth: See :func:`sunrgbd_decode_depth`.

    Raises:
        InputError: Unknown split/modality/depth, a missing toolbox file, or metadata and labels that disagree.
    """

    ignore_index = 0

    def __init__(self, root: str | os.PathLike, split: str = "train", modalities: Sequence[str] = MODALITIES,
                 depth: str = "bfx", max_depth: float | None = 8.0) -> None:
        import scipy.io

        root = require_dir(root, "SUN RGB-D folder")
        check_choice("SUN RGB-D split", split, ("train", "test"), root)
        check_choice("SUN RGB-D depth", depth, ("bfx", "raw"))
        for m in modalities:
            check_choice("modality", m, MODALITIES)
        self.data_dir = require_dir(root / "SUNRGBD", "SUN RGB-D data folder")
        toolbox = require_dir(root / "SUNRGBDtoolbox", "SUN RGB-D toolbox folder")
        meta_path = require_file(toolbox / "Metadata" / "SUNRGBDMeta.mat", "SUN RGB-D metadata")
        split_path = require_file(toolbox / "traintestSUNRGBD" / "allsplit.mat", "SUN RGB-D split file")
        self.seg_path = require_file(toolbox / "Metadata" / "SUNRGBD2Dseg.mat", "SUN RGB-D 2-D labels")
        try:
            meta = scipy.io.loadmat(meta_path, squeeze_me=True, struct_as_record=False)["SUNRGBDMeta"]
            train = scipy.io.loadmat(split_path, squeeze_me=True, struct_as_record=False)["alltrain"]
        except (KeyError, ValueError, NotImplementedError, OSError) as e:
            raise InputError(f"cannot read {meta_path} / {split_path}: {type(e).__name__}: {e}") from None
        train_dirs = {_under_sunrgbd(str(p)) for p in np.atleast_1d(train)}
        self.frames: list[dict[str, Any]] = []
        for i, m in enumerate(np.atleast_1d(meta)):
            for field in ("rgbpath", "rgbname", "depthname"):
                if not hasattr(m, field):
                    raise InputError(f"{meta_path}: SUNRGBDMeta({i + 1}) has no field {field!r}")
            frame_dir = "/".join(_under_sunrgbd(str(m.rgbpath)).split("/")[:-2])
            if (frame_dir in train_dirs) == (split == "train"):
                k = np.asarray(getattr(m, "K", np.eye(3)), dtype=np.float32).reshape(3, 3)
                self.frames.append({"index": i, "dir": frame_dir, "rgb": str(m.rgbname),
                                    "depth": str(m.depthname), "K": k})  # fmt: skip
        self.num_meta = len(np.atleast_1d(meta))
        self.modalities, self.depth_folder, self.max_depth = tuple(modalities), (
            "depth_bfx" if depth == "bfx" else "depth"), max_depth
        self._seg, self._pid = None, -1

    def __len__(self) -> int:
        return len(self.frames)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_seg"], state["_pid"] = None, -1
        return state

    def _labels(self):
        import h5py

        if self._pid != os.getpid() or self._seg is None:
            try:
                h5 = h5py.File(self.seg_path, "r")
                seg = h5["SUNRGBD2Dseg"]["seglabel"]
            except (OSError, KeyError) as e:
                raise InputError(f"cannot read SUNRGBD2Dseg/seglabel from {self.seg_path}: {e}") from None
            if seg.shape[0] != self.num_meta:
                raise InputError(f"{self.seg_path} has {seg.shape[0]} label maps but SUNRGBDMeta.mat lists "
                                 f"{self.num_meta} frames")  # fmt: skip
            self._seg, self._pid = (h5, seg), os.getpid()
        return self._seg

    def __getitem__(self, index: int) -> dict[str, Any]:
        frame = self.frames[index]
        folder = self.data_dir / frame["dir"]
        item: dict[str, Any] = {"id": frame["dir"], "intrinsics": torch.from_numpy(frame["K"].copy())}
        if "image" in self.modalities:
            item["image"] = load_image(folder / "image" / frame["rgb"])
        if "depth" in self.modalities:
            png = load_png(folder / self.depth_folder / frame["depth"], "SUN RGB-D depth map")
            item["depth"] = sunrgbd_decode_depth(png, self.max_depth)
        if "label" in self.modalities:
            h5, seg = self._labels()
            label = np.asarray(h5[seg[frame["index"]][0]]).T
            if label.size and (label.min() < 0 or label.max() > 37):
                raise InputError(f"{self.seg_path}: frame {frame['dir']} has labels outside 0..37")
            item["label"] = torch.from_numpy(label.astype(np.int64))
        return item


# ------------------------------------------------------------------------------------------------- ScanNet
# BenchmarkScripts 2d_evaluation: the NYU40 ids of the 20 benchmark classes; every other id is ignored.
SCANNET20_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET20_CLASSES = ("void", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
                     "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet",
                     "sink", "bathtub", "otherfurniture")  # fmt: skip
_SCANNET_LABEL_SETS = ("nyu40", "benchmark20", "scannet")


def read_scannet_label_map(path: str | os.PathLike, to: str = "nyu40id") -> torch.Tensor:
    """A lookup table from ScanNet label ids to ``to`` (a column of ``scannetv2-labels.combined.tsv``).

    Args:
        path: The tab-separated file with a header row holding ``id`` and ``to``.
        to: Target column, ``nyu40id`` by default.

    Returns:
        ``int64 [65536]``: entry ``i`` is the target of ScanNet id ``i``; ids not in the file (and 0) map to 0.

    Raises:
        InputError: The file is missing, lacks a column, or has a non-integer ``id``.
    """
    path = require_file(path, "ScanNet label mapping")
    lut = torch.zeros(65536, dtype=torch.int64)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        for column in ("id", to):
            if column not in (reader.fieldnames or []):
                raise InputError(f"{path}: no column {column!r} in the header {reader.fieldnames}")
        for number, row in enumerate(reader, start=2):
            try:
                key = int(row["id"])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{number}: 'id' must be an integer, got {row['id']!r}") from None
            value = (row[to] or "").strip()
            if 0 <= key < 65536 and value.lstrip("-").isdigit():
                lut[key] = int(value)
    return lut


def _find(names: Sequence[Path], what: str) -> Path:
    for path in names:
        if path.is_file():
            return path
    raise InputError(f"{what} not found: looked for {', '.join(str(p) for p in names)}")


class ScanNet2D(Dataset):
    """ScanNet v2 frames as exported by SensReader, with the ``<scan>_2d-label-filt.zip`` labels unpacked.

    ``label-filt/<i>.png`` holds ScanNet ids (16-bit), mapped through ``scannetv2-labels.combined.tsv`` to NYU40
    (``label_set="nyu40"``, 0 = unannotated), to the 20 benchmark classes (``benchmark20``: 0 void, 1..20 in
    :data:`SCANNET20_NYU40_IDS` order, AdapNet++'s "void + 20"), or kept as ScanNet ids (``scannet``).

    Depth (``depth/<i>.png``, millimetres, 640x480) is returned in metres and, with ``align_depth``, resized
    (nearest) to the colour size (1296x968): a plain resize of the calibrated frames, not a reprojection.

    Items: ``image``, ``depth``, ``label``, ``intrinsics`` (``intrinsic/intrinsic_color.txt``; with ``align_depth``
    it describes every map), ``pose`` (``float32 [4, 4]`` camera-to-world, may hold ``-inf`` for lost tracking) when
    ``pose/<i>.txt`` exists, ``scene``, ``frame`` (int). ``ignore_index`` is 0.

    Args:
        root: Folder of scene folders (``scene0000_00/``, ...), e.g. ``scans/``.
        split: ``train``/``val``/``test`` read ``scannetv2_<split>.txt`` from ``root`` or its parent; ``None`` takes
            every scene folder in ``root``.
        modalities: Which of ``image``, ``depth``, ``label`` to read.
        label_set: See above.
        label_map_file: The tsv (default: ``scannetv2-labels.combined.tsv`` in ``root`` or its parent).
        frame_step: Keep every ``frame_step``-th exported frame.
        align_depth: Resize depth to the colour size.

    Raises:
        InputError: Unknown split/modality/label set, a missing split list, tsv or scene folder.
    """

    ignore_index = 0

    def __init__(self, root: str | os.PathLike, split: str | None = "train", modalities: Sequence[str] = MODALITIES,
                 label_set: str = "nyu40", label_map_file: str | None = None, frame_step: int = 1,
                 align_depth: bool = True) -> None:
        self.root = require_dir(root, "ScanNet scans folder")
        for m in modalities:
            check_choice("modality", m, MODALITIES)
        check_choice("ScanNet label set", label_set, _SCANNET_LABEL_SETS)
        if split is None:
            scenes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("scene"))
        else:
            check_choice("ScanNet split", split, ("train", "val", "test"), self.root)
            name = f"scannetv2_{split}.txt"
            scenes = read_lines(_find([self.root / name, self.root.parent / name], f"ScanNet {split} list"), name)
        if frame_step < 1:
            raise InputError(f"frame_step must be >= 1, got {frame_step}")
        self.frames: list[tuple[str, int]] = []
        for scene in scenes:
            color = require_dir(self.root / scene / "color", f"ScanNet colour folder of {scene}")
            ids = sorted(int(p.stem) for p in color.glob("*.jpg") if p.stem.isdigit())
            self.frames += [(scene, i) for i in ids[::frame_step]]
        self.lut = None
        if "label" in modalities and label_set != "scannet":
            tsv = Path(label_map_file) if label_map_file else _find(
                [self.root / "scannetv2-labels.combined.tsv", self.root.parent / "scannetv2-labels.combined.tsv"],
                "ScanNet label mapping")  # fmt: skip
            self.lut = read_scannet_label_map(tsv)
            if label_set == "benchmark20":
                to20 = _lut({nyu: k + 1 for k, nyu in enumerate(SCANNET20_NYU40_IDS)}, 0)
                self.lut = to20[self.lut.clamp(0, 255)]
        self.modalities, self.label_set, self.align_depth = tuple(modalities), label_set, align_depth

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene, frame = self.frames[index]
        folder = self.root / scene
        item: dict[str, Any] = {"scene": scene, "frame": frame}
        intrinsics = folder / "intrinsic" / "intrinsic_color.txt"
        if intrinsics.is_file():
            k = np.loadtxt(intrinsics, dtype=np.float32).reshape(4, 4)[:3, :3]
            item["intrinsics"] = torch.from_numpy(np.ascontiguousarray(k))
        pose = folder / "pose" / f"{frame}.txt"
        if pose.is_file():
            item["pose"] = torch.from_numpy(np.loadtxt(pose, dtype=np.float32).reshape(4, 4))
        size = None
        if "image" in self.modalities:
            item["image"] = load_image(folder / "color" / f"{frame}.jpg")
            size = tuple(item["image"].shape[-2:])
        if "label" in self.modalities:
            ids = load_png(folder / "label-filt" / f"{frame}.png", "ScanNet label map")
            ids = torch.from_numpy(ids.astype(np.int64))
            item["label"] = ids if self.lut is None else self.lut[ids.clamp(0, 65535)]
            size = size or tuple(ids.shape)
        if "depth" in self.modalities:
            depth = load_png(folder / "depth" / f"{frame}.png", "ScanNet depth map")
            depth = torch.from_numpy(depth.astype(np.float32) / 1000.0)
            if self.align_depth and size is not None and tuple(depth.shape) != size:
                depth = torch.nn.functional.interpolate(depth[None, None], size=size, mode="nearest")[0, 0]
            item["depth"] = depth
        return item
