"""s3prl's TERA model code and alteration code, imported from the installed package's files without running
s3prl's package ``__init__`` (which needs many dependencies). Tests skip when s3prl is not installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def s3prl_root() -> Path | None:
    spec = importlib.util.find_spec("s3prl")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def load_s3prl_file(relative: str, name: str) -> ModuleType:
    """Import ``<s3prl>/<relative>`` as module ``name`` (cached in sys.modules)."""
    if name in sys.modules:
        return sys.modules[name]
    root = s3prl_root()
    if root is None:
        raise ImportError("s3prl is not installed")
    spec = importlib.util.spec_from_file_location(name, root / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def s3prl_model() -> ModuleType:
    """``s3prl/upstream/mockingjay/model.py`` (needs only torch and numpy)."""
    return load_s3prl_file("upstream/mockingjay/model.py", "_s3prl_mockingjay_model")


def s3prl_task() -> ModuleType:
    """``s3prl/pretrain/mockingjay/task.py`` (positions and alteration; torch and numpy only)."""
    return load_s3prl_file("pretrain/mockingjay/task.py", "_s3prl_mockingjay_task")
