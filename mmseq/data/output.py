"""Output folders of the dataset generators (speech corpus, captions, scenes, points)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mmseq.errors import InputError


def prepare_output_dir(root: Path, marker: str, overwrite: bool, what: str) -> Path:
    """Make ``root`` ready for a generator: create it, or empty it when it holds an earlier ``what`` (recognised by
    its ``marker`` file) and ``overwrite`` is set.

    Raises:
        InputError: ``root`` holds other files (no ``marker``), or an earlier ``what`` without ``overwrite``.
    """
    if root.exists() and any(root.iterdir()):
        if not (root / marker).exists():
            raise InputError(f"{root} is not empty and holds no {marker}; choose an empty or new folder")
        if not overwrite:
            raise InputError(f"{root} already holds a {what}; pass --overwrite to replace it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root
