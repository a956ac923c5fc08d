"""Readers of the public point-cloud datasets: ModelNet40 (txt and HDF5 releases), ScanObjectNN, ShapeNet-55.

Items are dicts with ``points`` (``float32 [N, C]``: xyz, then normals where the release has them), ``label``
(int, where the dataset is labelled), ``class_name`` and ids. Readers never sample randomly: random subsampling,
FPS, shuffling and augmentation are seeded transforms (:mod:`mmseq.data.vision.transforms_points`) applied through
:class:`~mmseq.data.vision.transforms.TransformedDataset`. Point-MAE's recipes are spelled out per reader.

Layouts::

    modelnet40_normal_resampled/   modelnet40_shape_names.txt (40 lines; the line index is the label)
                                   modelnet40_{train,test}.txt (ids such as "night_stand_0001")
                                   <class>/<id>.txt            (one "x,y,z,nx,ny,nz" line per point, 10k points)
    modelnet40_ply_hdf5_2048/      ply_data_{train0..4,test0..1}.h5 (data [N,2048,3], label [N,1], normal, faceId)
                                   {train,test}_files.txt, shape_names.txt, ply_data_<split>_<k>_id2file.json
    h5_files/main_split[_nobg]/    {training,test}_objectdataset[<variant suffix>].h5  (data, label, mask)
    ShapeNet55-34/                 shapenet_pc/<synset>-<model id>.npy, ShapeNet-55/{train,test}.txt

Point-MAE's cached ``modelnet40_*_8192pts_fps.dat`` files are Python pickles; they are not read here (mmseq never
unpickles data it did not write) -- the same points come from the txt release with FPS to 8192.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmseq.data.vision.readers_common import H5Rows, check_choice, read_json, read_lines, require_dir, require_file
from mmseq.errors import InputError

__all__ = [
    "SCANOBJECTNN_CLASSES", "SCANOBJECTNN_VARIANTS", "ModelNet40", "ModelNet40H5", "ScanObjectNN", "ShapeNet55",
    "normalize_points",
]

SCANOBJECTNN_CLASSES = ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
                        "pillow", "sink", "sofa", "toilet")  # fmt: skip
# variant -> (file suffix after "objectdataset", whether the background is kept)
SCANOBJECTNN_VARIANTS = {
    "obj_bg": ("", True),
    "obj_only": ("", False),
    "pb_t25": ("_augmented25_norot", True),
    "pb_t25_r": ("_augmented25rot", True),
    "pb_t50_r": ("_augmentedrot", True),
    "pb_t50_rs": ("_augmentedrot_scale75", True),
}
_SCANOBJECTNN_PREFIX = {"train": "training", "test": "test"}


def normalize_points(points: np.ndarray) -> np.ndarray:
    """Point-MAE's ``pc_normalize``: subtract the xyz centroid, divide xyz by the largest distance to it.

    Args:
        points: ``[N, C]``; only the first 3 columns change (normals keep their direction).

    Returns:
        ``[N, C]`` float32 with xyz inside the unit sphere (one point on it).
    """
    out = np.array(points, dtype=np.float32, copy=True)
    xyz = out[:, :3] - out[:, :3].mean(axis=0)
    radius = float(np.sqrt((xyz**2).sum(axis=1)).max()) if len(xyz) else 0.0
    out[:, :3] = xyz / radius if radius > 0 else xyz
    return out


def _split(split: str, where: Path) -> str:
    return check_choice("split", split, ("train", "test"), where)


class ModelNet40(Dataset):
    """ModelNet40 ``modelnet40_normal_resampled`` (PointNet++ release) read as Point-MAE's ``ModelNet`` does.

    A shape's file is parsed on access (comma-separated, float32). Point-MAE keeps the first ``num_points`` rows when
    it does not use its FPS cache, then normalises xyz to the unit sphere; its fine-tuning draws FPS to 1200 and then
    1024 at random in training and FPS to 1024 in test (``fps_subsample`` transforms after reading all points).

    Items: ``points`` (``float32 [N, 3]``, or ``[N, 6]`` with ``use_normals``), ``label`` (0..39), ``class_name``,
    ``id`` (``airplane_0001``).

    Args:
        root: The ``modelnet40_normal_resampled`` folder.
        split: ``train`` (9843 shapes) or ``test`` (2468).
        use_normals: Keep the normal columns.
        num_points: Keep the first ``num_points`` rows (default all, 10000 in the release).
        normalize: Centre and scale xyz into the unit sphere (after taking the first ``num_points``).

    Raises:
        InputError: A missing list or shape file, an unknown split or class, a file that is not ``N x 6`` numbers.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", use_normals: bool = False,
                 num_points: int | None = None, normalize: bool = True) -> None:
        self.root = require_dir(root, "modelnet40_normal_resampled folder")
        _split(split, self.root)
        self.classes = read_lines(self.root / "modelnet40_shape_names.txt", "ModelNet40 shape names")
        index = {name: i for i, name in enumerate(self.classes)}
        list_file = self.root / f"modelnet40_{split}.txt"
        self.ids = read_lines(list_file, f"ModelNet40 {split} list")
        self.labels = []
        for shape_id in self.ids:
            class_name = shape_id.rsplit("_", 1)[0]
            if class_name not in index:
                raise InputError(f"{list_file}: shape {shape_id!r} has class {class_name!r}, not in "
                                 f"{self.root / 'modelnet40_shape_names.txt'}")  # fmt: skip
            self.labels.append(index[class_name])
        self.use_normals, self.num_points, self.normalize = use_normals, num_points, normalize

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, index: int) -> Path:
        """The txt file of shape ``index``: ``<root>/<class>/<id>.txt``."""
        return self.root / self.classes[self.labels[index]] / f"{self.ids[index]}.txt"

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = require_file(self.path(index), "ModelNet40 shape file")
        try:
            points = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError as e:
            raise InputError(f"{path}: expected lines 'x,y,z,nx,ny,nz' ({e})") from None
        if points.shape[1] != 6 or len(points) == 0:
            raise InputError(f"{path}: expected N x 6 values (x,y,z,nx,ny,nz), got shape {points.shape}")
        if self.num_points is not None:
            points = points[: self.num_points]
        if not self.use_normals:
            points = points[:, :3]
        if self.normalize:
            points = normalize_points(points)
        label = self.labels[index]
        return {"points": torch.from_numpy(np.ascontiguousarray(points)), "label": label,
                "class_name": self.classes[label], "id": self.ids[index]}  # fmt: skip


class ModelNet40H5(Dataset):
    """ModelNet40 ``modelnet40_ply_hdf5_2048`` (PointNet release): 2048 points per shape, zero-mean, unit sphere.

    The h5 files of a split are those named in ``<split>_files.txt`` (by file name, looked up in ``root``, since the
    list holds paths such as ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``), or, without the list, every
    ``ply_data_<split>*.h5`` in name order (as I2P-MAE globs). I2P-MAE's Linear-SVM evaluation takes the first 1024
    points (``num_points=1024``) with no FPS.

    Items: ``points`` (``float32 [N, 3]``, or ``[N, 6]`` with ``use_normals`` where the files hold ``normal``),
    ``label`` (0..39, cast from the stored ``[1]`` array), ``class_name`` (from ``shape_names.txt`` when present),
    ``source`` (``class/class_NNNN.ply`` from the ``_id2file.json`` beside the h5 file, when present).

    Args:
        root: The ``modelnet40_ply_hdf5_2048`` folder.
        split: ``train`` or ``test``.
        use_normals: Append the ``normal`` columns (an error when the files lack them).
        num_points: Keep the first ``num_points`` points (default all 2048).

    Raises:
        InputError: No h5 files, a file missing ``data``/``label``, or ``use_normals`` without ``normal``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", use_normals: bool = False,
                 num_points: int | None = None) -> None:
        self.root = require_dir(root, "modelnet40_ply_hdf5_2048 folder")
        _split(split, self.root)
        list_file = self.root / f"{split}_files.txt"
        if list_file.is_file():
            files = [self.root / Path(line).name for line in read_lines(list_file, "ModelNet40 h5 list")]
        else:
            files = sorted(self.root.glob(f"ply_data_{split}*.h5"))
            if not files:
                raise InputError(f"no ModelNet40 {split} h5 files in {self.root} (expected {list_file} or "
                                 f"ply_data_{split}0.h5, ...)")  # fmt: skip
        self.rows = H5Rows(files, ["data", "label"], optional=["normal"])
        if use_normals and "normal" not in self.rows.keys:
            raise InputError(f"use_normals=True but {files[0]} (or another {split} file) has no 'normal' dataset")
        names = self.root / "shape_names.txt"
        self.classes = read_lines(names, "ModelNet40 shape names") if names.is_file() else None
        self._sources: dict[Path, list[str] | None] = {}
        self.use_normals, self.num_points = use_normals, num_points

    def __len__(self) -> int:
        return len(self.rows)

    def _source(self, h5: Path, row: int) -> str | None:
        if h5 not in self._sources:
            # ply_data_train0.h5 -> ply_data_train_0_id2file.json
            stem, k = h5.stem.rstrip("0123456789"), h5.stem[len(h5.stem.rstrip("0123456789")):]
            path = h5.with_name(f"{stem}_{k}_id2file.json")
            self._sources[h5] = read_json(path, "id2file list") if path.is_file() else None
        sources = self._sources[h5]
        return sources[row] if sources is not None and row < len(sources) else None

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, h5, local = self.rows.row(index)
        points = row["data"].astype(np.float32)
        if self.use_normals:
            points = np.concatenate([points, row["normal"].astype(np.float32)], axis=1)
        if self.num_points is not None:
            points = points[: self.num_points]
        label = int(np.asarray(row["label"]).reshape(-1)[0])
        return {"points": torch.from_numpy(np.ascontiguousarray(points)), "label": label,
                "class_name": self.classes[label] if self.classes else None,
                "source": self._source(h5, local)}  # fmt: skip


class ScanObjectNN(Dataset):
    """ScanObjectNN ``h5_files`` (hkust-vgd release): real scanned objects, 2048 points each, 15 classes.

    ==============  ==============================================  =================================
    variant         file in ``<split_folder>`` (``_nobg`` folder     name in the paper / Point-MAE
                    for ``obj_only`` or ``background=False``)
    ==============  ==============================================  =================================
    ``obj_bg``      ``{training,test}_objectdataset.h5``             OBJ_BG
    ``obj_only``    same, in ``main_split_nobg``                     OBJ_ONLY
    ``pb_t25``      ``*_objectdataset_augmented25_norot.h5``         PB_T25
    ``pb_t25_r``    ``*_objectdataset_augmented25rot.h5``            PB_T25_R
    ``pb_t50_r``    ``*_objectdataset_augmentedrot.h5``              PB_T50_R
    ``pb_t50_rs``   ``*_objectdataset_augmentedrot_scale75.h5``      PB_T50_RS ("hardest")
    ==============  ==============================================  =================================

    Point-MAE shuffles the point order in training only and keeps all 2048 points (``ShufflePoints``).

    Items: ``points`` (``float32 [2048, 3]``), ``label`` (0..14), ``class_name``, and ``mask`` (``int64 [2048]``
    as stored, ``-1`` on background points) when the file has one. A ``shape_names.txt`` in ``root`` (one name per
    line, as the synthetic point-cloud product writes) replaces ScanObjectNN's 15 class names.

    Args:
        root: The ``h5_files`` folder.
        split: ``train`` (``training_*``) or ``test`` (``test_*``).
        variant: A key of :data:`SCANOBJECTNN_VARIANTS`.
        split_folder: ``main_split`` (the paper's) or ``split1`` .. ``split4``.
        background: ``False`` reads the ``<split_folder>_nobg`` files (OBJ_ONLY is ``obj_bg`` without background).

    Raises:
        InputError: Unknown split or variant, a missing folder or file, or a file without ``data``/``label``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", variant: str = "pb_t50_rs",
                 split_folder: str = "main_split", background: bool = True) -> None:
        root = require_dir(root, "ScanObjectNN h5_files folder")
        _split(split, root)
        check_choice("ScanObjectNN variant", variant, SCANOBJECTNN_VARIANTS, root)
        suffix, keeps_background = SCANOBJECTNN_VARIANTS[variant]
        folder = split_folder if (keeps_background and background) else f"{split_folder}_nobg"
        folder_path = require_dir(root / folder, "ScanObjectNN split folder")
        self.path = folder_path / f"{_SCANOBJECTNN_PREFIX[split]}_objectdataset{suffix}.h5"
        self.rows = H5Rows([require_file(self.path, f"ScanObjectNN {variant} {split} file")], ["data", "label"],
                           optional=["mask"])  # fmt: skip
        self.variant = variant
        names = root / "shape_names.txt"
        self.class_names: tuple[str, ...] = (tuple(n.strip() for n in names.read_text().splitlines() if n.strip())
                                             if names.is_file() else SCANOBJECTNN_CLASSES)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, _, _ = self.rows.row(index)
        label = int(np.asarray(row["label"]).reshape(-1)[0])
        if not 0 <= label < len(self.class_names):
            raise InputError(f"{self.path}: row {index} has label {label}, expected 0..{len(self.class_names) - 1}")
        item: dict[str, Any] = {"points": torch.from_numpy(row["data"].astype(np.float32)), "label": label,
                                "class_name": self.class_names[label]}  # fmt: skip
        if "mask" in row:
            item["mask"] = torch.from_numpy(row["mask"].astype(np.int64))
        return item


class ShapeNet55(Dataset):
    """ShapeNet-55 in Point-MAE's layout: complete ShapeNetCore clouds for (unlabelled) pre-training.

    Point-MAE's loader draws a random permutation, keeps the first ``npoints`` (1024 for pre-training) and *then*
    normalises to the unit sphere: ``TransformedDataset(ShapeNet55(root, normalize=False),
    point_mae_pretrain_transform(1024))`` reproduces it with a seeded generator.

    Items: ``points`` (``float32 [N, 3]``, 8192 points in the release), ``taxonomy_id`` (the synset, text before
    ``-``), ``model_id`` (text after ``-``, without ``.npy``).

    Args:
        root: The ``ShapeNet55-34`` folder (holding ``shapenet_pc/`` and ``ShapeNet-55/``).
        split: ``train`` (41952 clouds), ``test`` (10518) or ``whole`` (test then train, Point-MAE's ``whole``).
        normalize: Centre and scale into the unit sphere (over all points of the file).

    Raises:
        InputError: Unknown split, a missing list or ``.npy`` file, or an array that is not ``[N, >=3]``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", normalize: bool = True) -> None:
        root = require_dir(root, "ShapeNet55-34 folder")
        check_choice("split", split, ("train", "test", "whole"), root)
        lists = ["test", "train"] if split == "whole" else [split]
        self.files = [name for s in lists for name in read_lines(root / "ShapeNet-55" / f"{s}.txt",
                                                                 f"ShapeNet-55 {s} list")]  # fmt: skip
        self.pc_dir = require_dir(root / "shapenet_pc", "ShapeNet-55 point folder")
        for name in self.files:
            if "-" not in name or not name.endswith(".npy"):
                raise InputError(f"{root / 'ShapeNet-55'}: list entry {name!r} is not '<synset>-<model id>.npy'")
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.files[index]
        path = require_file(self.pc_dir / name, "ShapeNet-55 point file")
        try:
            points = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"cannot read {path}: {e}") from None
        if points.ndim != 2 or points.shape[1] < 3:
            raise InputError(f"{path}: expected an [N, 3] array, got shape {points.shape}")
        points = points[:, :3].astype(np.float32)
        if self.normalize:
            points = normalize_points(points)
        taxonomy_id, _, model = name.partition("-")
        return {"points": torch.from_numpy(np.ascontiguousarray(points)), "taxonomy_id": taxonomy_id,
                "model_id": model[: -len(".npy")]}  # fmt: skip
