"""Model checkpoints: a directory with ``config.json`` (builder name + arguments) and ``model.safetensors``.

Writes are atomic: everything is written into a hidden sibling directory, flushed to disk, and only then swapped
into place, so a reader sees either the old checkpoint or the new one, never a mixture. ``config.json`` is the
last file written and records the byte size of the weights, so a directory whose weights were cut short is
reported as incomplete instead of being loaded. Loading never unpickles: weights come from safetensors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import load_model, save_model

from mmseq.data.tokenizers import checkpoint_tokenizer
from mmseq.errors import CheckpointError
from mmseq.registry import create_model, is_registered, submodel_arguments

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LABELS_NAME = "labels.json"  # a classifier's class names, when the model has them
FORMAT_VERSION = 1

# Other projects' checkpoint formats (HF transformers, s3prl, ...) plug in here: ``detect(path) -> bool`` and
# ``load(path, **overrides) -> nn.Module``. mmseq.interop registers them when ``import mmseq`` imports it.
_FOREIGN_FORMATS: list[tuple[str, Callable[[Path], bool], Callable[..., nn.Module]]] = []


def register_checkpoint_format(name: str, detect: Callable[[Path], bool], load: Callable[..., nn.Module],
                               first: bool = False) -> None:
    """Teach :func:`load` another project's checkpoint layout; ``first``: ask its ``detect`` before the others'
    (a narrow test that a broader one registered earlier would also pass)."""
    if first:
        _FOREIGN_FORMATS.insert(0, (name, detect, load))
    else:
        _FOREIGN_FORMATS.append((name, detect, load))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


_RENAME_EXCHANGE = 2
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = _libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def commit_directory(tmp: Path, target: Path) -> None:
    """Move the fully written directory ``tmp`` to ``target``, replacing any previous one atomically."""
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp)  # now holds the previous checkpoint
    else:
        # Two renames: a crash between them leaves ``target.old`` behind, which load() recovers from.
        backup = target.with_name(target.name + ".old")
        shutil.rmtree(backup, ignore_errors=True)
        os.rename(target, backup)
        os.rename(tmp, target)
        shutil.rmtree(backup)
    fsync_dir(target.parent)


def write_directory(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` into a hidden sibling of ``target`` and commit it atomically."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                fsync_file(f)
        fsync_dir(tmp)
        commit_directory(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_pretrained(model: nn.Module, directory: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Save a model built by :func:`mmseq.create_model` to ``directory`` (atomically).

    Args:
        model: the model; ``model.mmseq_config`` (set by create_model) names its builder and arguments.
        directory: the checkpoint directory; an existing checkpoint there is replaced as a whole.
        extra_files: more text files to place beside the weights, name -> content. A ``model.tokenizer``
            is saved too, and ``model.labels`` (a classifier's class names) as ``labels.json``; :func:`load`
            brings both back.
    """
    config = getattr(model, "mmseq_config", None)
    if config is None:
        raise CheckpointError(
            f"{type(model).__name__} was not built by mmseq.create_model, so its config is unknown; "
            "build it with mmseq.create_model(name, ...) to save it"
        )

    def write(tmp: Path) -> None:
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save(tmp)
        labels = getattr(model, "labels", None)
        if labels is not None:
            (tmp / LABELS_NAME).write_text(json.dumps([str(label) for label in labels], indent=1) + "\n")
        write_model_files(model, tmp)

    return write_directory(directory, write)


def write_model_files(model: nn.Module, directory: Path) -> None:
    """Write ``model.safetensors`` and then ``config.json`` (last: a directory without it is unfinished)."""
    config = model.mmseq_config
    save_model(model, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    record = {
        "mmseq_format": FORMAT_VERSION,
        "builder": config["builder"],
        "args": config["args"],
        "weights": {"file": WEIGHTS_NAME, "bytes": (directory / WEIGHTS_NAME).stat().st_size},
    }
    (directory / CONFIG_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of an mmseq checkpoint, checked for completeness."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{str(directory)!r} has no {CONFIG_NAME}: not a checkpoint, or an unfinished one")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "builder" not in config or "weights" not in config:
        raise CheckpointError(f"{str(config_path)!r} is not an mmseq checkpoint config (no 'builder'/'weights')")
    weights = directory / config["weights"]["file"]
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} is incomplete: {weights.name} is missing")
    size = weights.stat().st_size
    if size != config["weights"]["bytes"]:
        raise CheckpointError(
            f"checkpoint {str(directory)!r} is incomplete: {weights.name} has {size} bytes, "
            f"config.json expects {config['weights']['bytes']}"
        )
    return config


def _recover_interrupted_swap(directory: Path) -> None:
    backup = directory.with_name(directory.name + ".old")
    if not directory.exists() and backup.is_dir():
        os.rename(backup, directory)


def text_vocab_sizes(model: nn.Module) -> dict[str, int]:
    """``{module name: vocab_size}`` of every text pre-/post-net of ``model`` (their ``modality`` is ``"text"``)."""
    return {name: int(m.vocab_size) for name, m in model.named_modules()
            if getattr(m, "modality", None) == "text" and hasattr(m, "vocab_size")}


def attach_tokenizer(model: nn.Module, tokenizer: Any, where: str) -> None:
    """Give ``model`` its checkpoint's tokenizer after checking that the two agree on the vocabulary.

    Raises:
        CheckpointError: the tokenizer has another number of tokens than a text pre-/post-net of the model (ids
            the model emits would not decode, or ids the tokenizer gives would not embed).
    """
    for name, size in text_vocab_sizes(model).items():
        if size != len(tokenizer):
            raise CheckpointError(f"the tokenizer of {where} has {len(tokenizer)} tokens but the model's {name} has "
                                  f"a vocabulary of {size}: they do not belong together")
    model.tokenizer = tokenizer


def build_model(name: str, args: dict[str, Any] | None = None) -> nn.Module:
    """:func:`~mmseq.registry.create_model`, with sub-model arguments given as checkpoint paths loaded first.

    A builder's sub-model argument (e.g. ``tera_downstream``'s ``upstream``) may name a checkpoint (an mmseq
    directory, or a format :func:`load` knows); it is loaded here and passed in as a model, so the builder does no
    I/O and the new model's config records the upstream's spec instead of the path.
    """
    args = dict(args or {})
    for key in submodel_arguments(name):
        value = args.get(key)
        if isinstance(value, (str, os.PathLike)) and not is_registered(str(value)) and Path(value).exists():
            args[key] = load(value)
    return create_model(name, **args)


def load(path: str | Path, **overrides: Any) -> nn.Module:
    """Load a model from an mmseq checkpoint directory, or from another project's format that mmseq knows.

    Loading never follows a path recorded at training time: the directory's ``config.json`` and weights are
    all it reads (a wrapped model's spec and weights are inside them).

    Args:
        path: checkpoint directory (or file, for formats that are single files).
        overrides: builder arguments to change, e.g. ``dropout=0.0``.

    Raises:
        CheckpointError: the path is missing, incomplete, of unknown format, or its weights do not fit.
    """
    path = Path(path)
    _recover_interrupted_swap(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not (path / CONFIG_NAME).is_file() or _is_foreign(path):
        for name, detect, loader in _FOREIGN_FORMATS:
            if detect(path):
                return loader(path, **overrides)
    config = read_config(path)
    model = create_model(config["builder"], **{**config["args"], **overrides})
    try:
        missing, unexpected = load_model(model, str(path / config["weights"]["file"]), strict=False)
    except Exception as e:  # safetensors raises on shape mismatches and corrupt headers
        raise CheckpointError(f"cannot load weights of {str(path)!r}: {e}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"weights of {str(path)!r} do not fit model {config['builder']!r}: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    tokenizer = checkpoint_tokenizer(path)
    if tokenizer is not None:
        attach_tokenizer(model, tokenizer, f"checkpoint {str(path)!r}")
    if (path / LABELS_NAME).is_file():
        model.labels = _read_labels(path / LABELS_NAME)
    return model


def _read_labels(file: Path) -> list[str]:
    """The class names a checkpoint stores (``labels.json``: a JSON list of strings)."""
    try:
        labels = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read the class names {str(file)!r}: {e}") from None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise CheckpointError(f"{str(file)!r} must hold a JSON list of class names (strings)")
    return labels


def _is_foreign(path: Path) -> bool:
    try:
        return "mmseq_format" not in json.loads((path / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return False
