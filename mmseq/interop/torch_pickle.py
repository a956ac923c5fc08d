"""What the readers of foreign torch pickles (s3prl's and fairseq's checkpoints) share: the globals such files hold
besides what ``torch.load(weights_only=True)`` admits by default, and a look at the pickled bytes that tells a format
before anything is unpickled."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

_NUMPY_DTYPES = [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType",
                                                 "BoolDType") if hasattr(np, "dtypes") and hasattr(np.dtypes, n)]
try:  # numpy >= 2 moved the scalar constructor to numpy._core
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar  # type: ignore[no-redef]
SAFE_GLOBALS: list[Any] = [argparse.Namespace, _np_scalar, np.dtype, *_NUMPY_DTYPES]


def pickle_head(path: Path, limit: int = 1 << 20) -> bytes:
    """The pickled object bytes of a torch file (``data.pkl`` of a zip, or the start of a legacy file)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            return zf.read(names[0])[:limit] if names else b""
    with open(path, "rb") as f:
        return f.read(limit)
