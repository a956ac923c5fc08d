"""What every public-dataset reader shares: path checks, JSON and list files, image and PNG decoding, HDF5 rows.

The readers in ``readers_captions``, ``readers_points`` and ``readers_rgbd`` read a dataset where it lies, in its
official layout, and never download or write anything. A missing file, an unknown split or a file in the wrong
layout is an :class:`~mmseq.errors.InputError` whose message names the path, so a user sees at once which file of
their copy is not what the reader expects.

Conventions of the items the readers return (plain dicts of tensors and strings):

* images are ``uint8 [3, H, W]`` RGB tensors (what ``torchvision.transforms.v2`` treats as an image);
* depth maps are ``float32 [H, W]`` in metres where the dataset is metric, 0 where the depth is invalid;
* label maps are ``int64 [H, W]``; point clouds are ``float32 [N, C]`` (xyz, then normals where present);
* class labels are Python ``int`` and ids are ``str`` or ``int`` as the dataset writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmseq.errors import InputError, unknown_choice

__all__ = [
    "require_dir", "require_file", "check_choice", "read_json", "read_lines", "load_image", "load_png",
    "H5Rows",
]


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or :class:`InputError` naming it and ``what`` it should be when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what} not found: {path} is not a directory")
    return path


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or :class:`InputError` naming it when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    return path


def check_choice(kind: str, value: str, choices: Iterable[str], where: str | os.PathLike | None = None) -> str:
    """``value`` when it is one of ``choices``; otherwise :class:`InputError` listing them (and ``where``)."""
    choices = list(choices)
    if value not in choices:
        prefix = f"{where}: " if where is not None else ""
        raise InputError(prefix + unknown_choice(kind, str(value), choices))
    return value


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The decoded JSON of ``path``; :class:`InputError` naming the file when it is missing or not JSON."""
    path = require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """The stripped, non-blank lines of a text file (a split or class list)."""
    path = require_file(path, what)
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def expect_keys(obj: Any, keys: Sequence[str], where: str) -> dict:
    """``obj`` when it is a dict holding ``keys``; otherwise :class:`InputError` naming ``where`` and the key."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in keys:
        if key not in obj:
            raise InputError(f"{where}: missing key {key!r}")
    return obj


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file to RGB.

    Args:
        path: A JPEG/PNG (any mode PIL opens; grey, palette and RGBA images are converted to RGB).

    Returns:
        ``uint8 [3, H, W]``.

    Raises:
        InputError: The file is missing or PIL cannot decode it; the message names it.
    """
    from PIL import Image, UnidentifiedImageError

    path = require_file(path, "image")
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot decode image {path}: {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_png(path: str | os.PathLike, what: str = "PNG map") -> np.ndarray:
    """Decode a single-channel map (8- or 16-bit PNG, or any 1-channel image) keeping its integer values.

    Args:
        path: The file.
        what: What it holds, for messages (``"disparity map"``, ``"label map"``).

    Returns:
        ``[H, W]`` array of the stored dtype (``uint8`` or ``uint16``/``int32`` for 16-bit PNGs).

    Raises:
        InputError: The file is missing, undecodable, or has more than one channel.
    """
    from PIL import Image, UnidentifiedImageError

    path = require_file(path, what)
    try:
        with Image.open(path) as im:  # a palette ("P") image yields its indices, which are the labels
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot decode {what} {path}: {e}") from None
    if array.ndim != 2:
        raise InputError(f"{what} {path} must have one channel, got shape {tuple(array.shape)}")
    return array


class H5Rows:
    """Row access to same-shaped arrays spread over several HDF5 files (ModelNet40 h5, ScanObjectNN).

    The files are read lazily, each whole on its first row and once per process (as Point-MAE's loaders hold these
    sets in memory: an HDF5 read per row costs 20-30x more, see ``bench/render.py``), so a dataset built before
    ``DataLoader`` forks its workers never shares an HDF5 handle across processes; only shapes are read at
    construction.

    Args:
        files: HDF5 files, read in this order.
        keys: Dataset names every file must hold (``"data"``, ``"label"``).
        optional: Dataset names read when every file holds them (``"normal"``, ``"mask"``).

    Raises:
        InputError: A file is missing, not HDF5, lacks a key, or its keys disagree on the number of rows.
    """

    def __init__(self, files: Sequence[Path], keys: Sequence[str], optional: Sequence[str] = ()) -> None:
        import h5py

        if not files:
            raise InputError("no HDF5 files given")
        self.files = [require_file(f, "HDF5 file") for f in files]
        self.keys = list(keys)
        present = set(optional)
        self.offsets = [0]
        for path in self.files:
            try:
                with h5py.File(path, "r") as h5:
                    for key in self.keys:
                        if key not in h5:
                            raise InputError(f"{path}: missing HDF5 dataset {key!r} (has {sorted(h5.keys())})")
                    rows = {h5[key].shape[0] for key in self.keys}
                    present &= {key for key in optional if key in h5}
                    rows |= {h5[key].shape[0] for key in present}
            except OSError as e:
                raise InputError(f"cannot open HDF5 file {path}: {e}") from None
            if len(rows) != 1:
                raise InputError(f"{path}: datasets {self.keys} disagree on the number of rows ({sorted(rows)})")
            self.offsets.append(self.offsets[-1] + rows.pop())
        self.keys += [key for key in optional if key in present]
        self._arrays: dict[int, dict[str, np.ndarray]] = {}
        self._pid = -1

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"], state["_pid"] = {}, -1
        return state

    def _file(self, k: int) -> dict[str, np.ndarray]:
        import h5py

        if self._pid != os.getpid():
            self._arrays, self._pid = {}, os.getpid()
        if k not in self._arrays:
            with h5py.File(self.files[k], "r") as h5:
                self._arrays[k] = {key: h5[key][:] for key in self.keys}
        return self._arrays[k]

    def row(self, index: int) -> tuple[dict[str, np.ndarray], Path, int]:
        """Every key's row ``index`` (over all files), with the file it came from and the row within it."""
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} rows")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        local = index - self.offsets[k]
        h5 = self._file(k)
        return {key: h5[key][local] for key in self.keys}, self.files[k], local

    def column(self, key: str) -> np.ndarray:
        """All rows of one key, concatenated over the files (e.g. every label, for class counts)."""
        return np.concatenate([self._file(k)[key] for k in range(len(self.files))])
