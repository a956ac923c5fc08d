"""Official Point-MAE checkpoints (``pretrain.pth``, ``modelnet_1k.pth``, ...) into mmseq's Point-MAE models.

A file holds ``{"base_model": state_dict, ...}`` or the state dict itself; keys may carry DDP's ``module.``
prefix. It is read with ``torch.load(weights_only=True)``. Official keys are renamed by the prefix tables below
(everything after a prefix keeps the official layout: timm-style blocks, ``first_conv`` / ``second_conv``); a key
no table knows, a shape that differs, or a model key the file lacks raises :class:`~mmseq.errors.CheckpointError`
naming the key. A pre-training file loads into a classifier's encoder (``encoder_only=True``): its decoder keys
are dropped and the class token and head keep their initialisation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from mmseq.errors import CheckpointError
from mmseq.models.point_mae import PointMAE, PointMAEClassifier

PRETRAIN_PREFIXES = (
    ("MAE_encoder.encoder.", "encoder.token_embed."),
    ("MAE_encoder.pos_embed.", "encoder.pos_embed."),
    ("MAE_encoder.blocks.", "encoder.blocks."),
    ("MAE_encoder.norm.", "encoder.norm."),
    ("mask_token", "mask_token"),
    ("decoder_pos_embed.", "decoder_pos_embed."),
    ("MAE_decoder.blocks.", "decoder.blocks."),
    ("MAE_decoder.norm.", "decoder_norm."),
    ("increase_dim.0.", "rec_head."),
)
"""Official ``Point_MAE`` keys -> :class:`~mmseq.models.point_mae.PointMAE` keys."""
FINETUNE_PREFIXES = (
    ("encoder.", "encoder.token_embed."),
    ("pos_embed.", "encoder.pos_embed."),
    ("blocks.", "encoder.blocks."),
    ("norm.", "encoder.norm."),
    ("cls_token", "cls_token"),
    ("cls_pos", "cls_pos"),
    ("cls_head_finetune.", "head."),
)
"""Official ``PointTransformer`` keys -> :class:`~mmseq.models.point_mae.PointMAEClassifier` keys."""


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict of an official ``.pth`` file (``base_model`` entry or plain), ``module.`` stripped."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, OSError ... for a bad file
        raise CheckpointError(f"cannot read Point-MAE checkpoint {os.fspath(path)!r}: {error}") from None
    state = data.get("base_model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{os.fspath(path)!r} holds no state dict (expected {{'base_model': {{name: tensor}}}} "
                              "or {name: tensor})")
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def _rename(key: str, prefixes: tuple[tuple[str, str], ...]) -> str | None:
    for official, ours in prefixes:
        if key == official or (official.endswith(".") and key.startswith(official)):
            return ours + key[len(official):]
    return None


def convert_state_dict(state: dict[str, Tensor], model: nn.Module, encoder_only: bool = False) -> dict[str, Tensor]:
    """Official keys renamed to ``model``'s; checks every key and shape (see the module notes)."""
    if isinstance(model, PointMAE):
        prefixes, source = PRETRAIN_PREFIXES, "Point_MAE"
    elif isinstance(model, PointMAEClassifier):
        pretrained = any(k.startswith("MAE_encoder.") for k in state)
        prefixes, source = (PRETRAIN_PREFIXES, "Point_MAE") if pretrained else (FINETUNE_PREFIXES, "PointTransformer")
        encoder_only = encoder_only or pretrained
    else:
        raise CheckpointError(f"no official Point-MAE key map for a {type(model).__name__}")

    def wanted(name: str) -> bool:
        return not encoder_only or name.startswith("encoder.")  # else a pre-trained decoder, or a replaced head

    renamed = []
    for key, value in state.items():
        name = _rename(key, prefixes)
        if name is None:
            raise CheckpointError(f"checkpoint key {key!r} is not a key of the official {source} model")
        if wanted(name):
            renamed.append((key, name, value))
    return checked_state_dict(renamed, model, wanted)


def checked_state_dict(renamed: Iterable[tuple[str, str, Tensor]], model: nn.Module,
                       wanted: Callable[[str], bool]) -> dict[str, Tensor]:
    """``{model key: tensor}`` from ``(file key, model key, tensor)`` triples, each model key checked to exist in
    ``model`` with the same shape, and every ``wanted`` model key checked to be given; CheckpointError names the
    first key that fails."""
    expected = model.state_dict()
    converted = {}
    for key, name, value in renamed:
        if name not in expected:
            raise CheckpointError(f"checkpoint key {key!r} (-> {name!r}) is not a key of the {type(model).__name__}")
        if value.shape != expected[name].shape:
            raise CheckpointError(f"checkpoint key {key!r} has shape {tuple(value.shape)}, the model's {name!r} "
                                  f"{tuple(expected[name].shape)}: the model was built with other sizes")
        converted[name] = value
    missing = [k for k in expected if wanted(k) and k not in converted]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {len(missing)} of the model's keys, first {missing[0]!r}")
    return converted


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike, encoder_only: bool = False) -> nn.Module:
    """Load an official Point-MAE ``.pth`` into ``model`` (in place) and return it."""
    converted = convert_state_dict(read_state_dict(path), model, encoder_only)
    model.load_state_dict(converted, strict=False)  # every key and shape is checked by convert_state_dict
    return model
