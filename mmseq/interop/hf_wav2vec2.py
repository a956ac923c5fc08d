"""transformers wav2vec 2.0 folders (``model_type: wav2vec2``) read into mmseq's :func:`~mmseq.models.wav2vec2.wav2vec2`.

A folder holds ``config.json`` and ``model.safetensors`` (or a sharded ``model.safetensors.index.json``) or
``pytorch_model.bin`` (read with ``weights_only=True``), written by ``save_pretrained`` of ``Wav2Vec2Model``,
``Wav2Vec2ForCTC`` or ``Wav2Vec2ForPreTraining`` (what ``facebook/wav2vec2-base`` is). Every tensor is placed:

* ``[wav2vec2.]feature_extractor.* / feature_projection.* / masked_spec_embed`` -> ``prenet.*``;
* ``[wav2vec2.]encoder.pos_conv_embed.*`` -> ``prenet.pos_conv_embed.*`` (weight norm as ``weight_g`` /
  ``weight_v`` or ``parametrizations.weight.original0/1``, both read);
* ``[wav2vec2.]encoder.layer_norm / layers.*`` -> ``encoder.*`` (same names below);
* ``lm_head.*`` (``Wav2Vec2ForCTC``) -> ``postnet.proj.*``, a CTC head, unless ``ctc_vocab_size=0`` is passed
  (then dropped);
* ``quantizer.* / project_q.* / project_hid.*`` (pre-training heads) are dropped.

Anything else, or a model tensor left without a value, is a :class:`~mmseq.errors.CheckpointError`. A
``preprocessor_config.json`` beside the weights sets ``normalize_waveform`` from its ``do_normalize`` (the mmseq model
reads raw waveforms); without one the model computes what transformers' model does on its input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file

from mmseq.checkpoint import register_checkpoint_format
from mmseq.errors import CheckpointError
from mmseq.interop.hf_speecht5 import read_hf_weights
from mmseq.nn.transformer import ACTIVATIONS
from mmseq.registry import create_model

ARCHITECTURES = ("Wav2Vec2Model", "Wav2Vec2ForCTC", "Wav2Vec2ForPreTraining")
PRETRAINING_HEADS = ("quantizer.", "project_q.", "project_hid.")

# transformers config field -> mmseq builder argument (same meaning; lists become tuples).
CONFIG_FIELDS = {
    "hidden_size": "dim", "num_hidden_layers": "layers", "num_attention_heads": "heads",
    "intermediate_size": "ffn_dim", "hidden_act": "activation", "hidden_dropout": "dropout",
    "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
    "feat_proj_dropout": "feature_dropout", "layerdrop": "layerdrop", "layer_norm_eps": "layer_norm_eps",
    "feat_extract_norm": "feat_extract_norm", "do_stable_layer_norm": "norm_first", "conv_dim": "conv_dims",
    "conv_kernel": "conv_kernels", "conv_stride": "conv_strides", "conv_bias": "conv_bias",
    "num_conv_pos_embeddings": "pos_conv_kernel", "num_conv_pos_embedding_groups": "pos_conv_groups",
    "apply_spec_augment": "apply_spec_augment", "mask_time_prob": "mask_time_prob",
    "mask_time_length": "mask_time_length", "mask_time_min_masks": "mask_time_min_masks",
    "mask_feature_prob": "mask_feature_prob", "mask_feature_length": "mask_feature_length",
    "mask_feature_min_masks": "mask_feature_min_masks", "final_dropout": "ctc_dropout",
}
PREFIXES = [  # transformers prefix (after an optional "wav2vec2.") -> mmseq prefix
    ("feature_extractor.", "prenet.feature_encoder."),
    ("feature_projection.", "prenet.feature_projection."),
    ("masked_spec_embed", "prenet.masked_spec_embed"),
    ("encoder.pos_conv_embed.", "prenet.pos_conv_embed."),
    ("encoder.", "encoder."),
]
WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) else None


def is_hf_wav2vec2(path: Path) -> bool:
    config = _read_config(path) if path.is_dir() else None
    return config is not None and config.get("model_type") == "wav2vec2"


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The folder's tensors: one safetensors file, a sharded one (its index), or ``pytorch_model.bin``."""
    index = path / "model.safetensors.index.json"
    if not (path / "model.safetensors").is_file() and index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"cannot read the shard index {str(index)!r}: {e}") from None
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise CheckpointError(f"{str(path)!r} lacks the weight shards {missing[:4]} its index names")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(path / shard)))
        return state
    return read_hf_weights(path)


def builder_args(config: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """(builder name, builder arguments) for a transformers wav2vec 2.0 config."""
    archs = config.get("architectures") or ["Wav2Vec2Model"]
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise CheckpointError(f"{where}: architecture {unknown[0]} is not supported; supported: "
                              f"{', '.join(ARCHITECTURES)}")
    for key, fine in (("add_adapter", False), ("adapter_attn_dim", None)):
        if config.get(key, fine) != fine:
            raise CheckpointError(f"{where}: wav2vec 2.0 with {key}={config[key]!r} (adapters) is not supported")
    if config.get("feat_extract_activation", "gelu") != "gelu":
        raise CheckpointError(f"{where}: only feat_extract_activation=gelu is supported, got "
                              f"{config['feat_extract_activation']!r}")
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise CheckpointError(f"{where}: hidden_act {config['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
    if config.get("feat_extract_norm", "group") not in ("group", "layer"):
        raise CheckpointError(f"{where}: feat_extract_norm {config['feat_extract_norm']!r} is not group or layer")
    args = {ours: tuple(config[hf]) if isinstance(config[hf], list) else config[hf]
            for hf, ours in CONFIG_FIELDS.items() if hf in config}
    args["ctc_vocab_size"] = int(config.get("vocab_size") or 0) if "Wav2Vec2ForCTC" in archs else 0
    args["normalize_waveform"] = False
    return ("wav2vec2_large" if args.get("norm_first") else "wav2vec2_base"), args


def to_mmseq_key(key: str) -> str | None:
    """The mmseq name of a transformers tensor name; None for the pre-training heads (dropped). Raises
    CheckpointError for a name with no place."""
    if key.startswith(PRETRAINING_HEADS):
        return None
    if key.startswith("lm_head."):
        return "postnet.proj." + key[len("lm_head."):]
    rest = key[len("wav2vec2."):] if key.startswith("wav2vec2.") else key
    for hf, ours in PREFIXES:
        if rest.startswith(hf):
            rest = ours + rest[len(hf):]
            break
    else:
        raise CheckpointError(f"tensor {key!r} has no place in mmseq's wav2vec 2.0")
    for old, new in WEIGHT_NORM.items():
        if rest.endswith(".conv." + old):
            rest = rest[: -len(old)] + new
    return rest


def load_hf_wav2vec2(path: str | Path, **overrides: Any) -> nn.Module:
    """Build the mmseq wav2vec 2.0 encoder a transformers folder describes and load every one of its tensors.

    Args:
        path: the folder.
        overrides: builder arguments to change (e.g. ``dropout=0.0``; ``ctc_vocab_size=0`` drops a CTC head).

    Raises:
        CheckpointError: not a wav2vec 2.0 folder, no weights, an unsupported variant, or tensors that do not fit.
    """
    path = Path(path)
    config = _read_config(path)
    if config is None:
        raise CheckpointError(f"{str(path)!r} has no readable config.json: not a transformers folder")
    if config.get("model_type") != "wav2vec2":
        raise CheckpointError(f"{str(path)!r} holds a {config.get('model_type')!r} model, not wav2vec 2.0 "
                              "(model_type 'wav2vec2')")
    name, args = builder_args(config, repr(str(path)))
    preprocessor = _read_config_file(path / "preprocessor_config.json")
    if preprocessor is not None:
        args["normalize_waveform"] = bool(preprocessor.get("do_normalize", False))
    args.update(overrides)
    weights = read_weights(path)
    model = create_model(name, **args)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        ours = to_mmseq_key(key)
        if ours is None or (ours.startswith("postnet.") and not args["ctc_vocab_size"]):
            continue
        state[ours] = tensor
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"weights of {str(path)!r} do not fit wav2vec 2.0 ({name}): missing {missing[:8]}, "
                              f"unexpected {unexpected[:8]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"weights of {str(path)!r} do not fit wav2vec 2.0 ({name}): {e}") from None
    return model


def _read_config_file(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(file)!r} is not valid JSON: {e}") from None


register_checkpoint_format("hf-wav2vec2", is_hf_wav2vec2, load_hf_wav2vec2)
