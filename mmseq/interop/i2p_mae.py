"""Official Point-M2AE and I2P-MAE checkpoints into :mod:`mmseq.models.i2p_mae`'s models.

A file holds ``{"base_model": state_dict, ...}`` or the state dict itself (``module.`` prefixes are stripped); it is
read with ``torch.load(weights_only=True)``. mmseq's modules carry the official names, so the map is small:

- Point-M2AE's ``rec_head.*`` is ``rec_head_3d.*`` here (I2P-MAE already calls it that);
- I2P-MAE's frozen CLIP (``clip_model.*``) is dropped: mmseq's model has its own frozen teacher (``teacher.*``),
  whose weights come from elsewhere and are not looked for in the file;
- into a classifier, a pre-training file gives the encoder (``h_encoder.*`` without its output norms, as the
  official fine-tuning loads it); the classifier's norm and head keep their initialisation.

``encoder_only=True`` loads only the encoder of a pre-training model (e.g. an I2P-MAE file whose 2-D head was sized
for CLIP's 512-d features, into a model with a smaller teacher). A file key the model lacks, a shape that differs,
or a model key the file lacks raises :class:`~mmseq.errors.CheckpointError` naming the key.
"""

from __future__ import annotations

import os

from torch import Tensor, nn

from mmseq.errors import CheckpointError
from mmseq.interop.point_mae import checked_state_dict, read_state_dict
from mmseq.models.i2p_mae import PointM2AE, PointM2AEClassifier

RENAMES = (("rec_head.", "rec_head_3d."),)
DROPPED = ("clip_model.",)


def _rename(key: str) -> str:
    for official, ours in RENAMES:
        if key.startswith(official):
            return ours + key[len(official):]
    return key


def convert_state_dict(state: dict[str, Tensor], model: nn.Module, encoder_only: bool = False) -> dict[str, Tensor]:
    """Official keys renamed to ``model``'s, every key and shape checked (see the module notes)."""
    if isinstance(model, PointM2AE):
        def wanted(name: str) -> bool:
            return not name.startswith("teacher.") and (not encoder_only or name.startswith("h_encoder."))
    elif isinstance(model, PointM2AEClassifier):
        pretrained = any(k.startswith(("mask_token", "h_decoder.", "h_encoder.encoder_norms.")) for k in state)
        encoder_only = encoder_only or pretrained

        def wanted(name: str) -> bool:
            return not encoder_only or name.startswith("h_encoder.")
    else:
        raise CheckpointError(f"no official Point-M2AE / I2P-MAE key map for a {type(model).__name__}")
    renamed = []
    for key, value in state.items():
        if key.startswith(DROPPED):
            continue
        name = _rename(key)
        if not wanted(name) or (isinstance(model, PointM2AEClassifier) and encoder_only
                                and name.startswith("h_encoder.encoder_norms.")):
            continue
        renamed.append((key, name, value))
    return checked_state_dict(renamed, model, wanted)


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike, encoder_only: bool = False) -> nn.Module:
    """Load an official Point-M2AE / I2P-MAE ``.pth`` into ``model`` (in place) and return it."""
    converted = convert_state_dict(read_state_dict(path), model, encoder_only)
    model.load_state_dict(converted, strict=False)  # every wanted key and shape is checked above
    return model
