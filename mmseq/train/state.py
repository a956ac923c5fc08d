"""Resumable training checkpoints.

Layout of ``out_dir/checkpoints``::

    step_00000200/   config.json + model.safetensors (a loadable model) + trainer_state.pt
    step_00000400/
    latest           text file naming the newest complete step directory

Each step directory is written atomically (hidden temporary directory, then rename) and ``latest`` is replaced
atomically after it, so a kill at any moment leaves the previous checkpoint intact and pointed to.
``trainer_state.pt`` holds only tensors, numbers and strings, and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mmseq.atomic import atomic_write_text
from mmseq.checkpoint import read_config, write_directory, write_model_files
from mmseq.errors import CheckpointError

STATE_NAME = "trainer_state.pt"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


@dataclass
class Progress:
    """Where training stands: optimizer steps taken, and the position in the data."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # global micro-batches of ``epoch`` already consumed
    best: float | None = None  # best validation value of the tracked metric so far
    best_step: int | None = None  # the step it was reached at


def rng_state() -> dict[str, Any]:
    """Every random generator the loop's results depend on, in weights_only-loadable form."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_dir: Path, model: nn.Module, trainer_state: dict[str, Any], keep: int) -> Path:
    """Write ``step_N`` atomically, point ``latest`` at it, and prune all but the ``keep`` newest."""
    step = trainer_state["progress"]["step"]
    name = f"step_{step:08d}"

    def write(tmp: Path) -> None:
        torch.save(trainer_state, tmp / STATE_NAME)
        write_model_files(model, tmp)  # config.json last

    path = write_directory(ckpt_dir / name, write)
    atomic_write_text(ckpt_dir / LATEST, name + "\n")
    for old in sorted(_step_dirs(ckpt_dir))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _step_dirs(ckpt_dir: Path) -> list[Path]:
    return [p for p in ckpt_dir.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)] if ckpt_dir.is_dir() else []


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint: the one ``latest`` names, else the newest complete step directory."""
    pointer = ckpt_dir / LATEST
    candidates = []
    if pointer.is_file():
        candidates.append(ckpt_dir / pointer.read_text().strip())
    candidates += sorted(_step_dirs(ckpt_dir), reverse=True)
    for path in candidates:
        try:
            read_config(path)
        except CheckpointError:
            continue
        if (path / STATE_NAME).is_file():
            return path
    return None


def load_trainer_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read trainer state {str(path / STATE_NAME)!r}: {e}") from None


def progress_dict(progress: Progress) -> dict[str, Any]:
    return asdict(progress)
