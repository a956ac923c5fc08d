"""HF transformers SpeechT5 checkpoints: read them into mmseq models, and write mmseq models back.

A checkpoint directory holds ``config.json`` (``model_type: speecht5``) and ``model.safetensors`` or
``pytorch_model.bin`` (read with ``weights_only=True``). mmseq's SpeechT5 modules use transformers' parameter
names below the top level, so the key map only swaps prefixes, renames old-style weight-norm keys and drops
buffers that both sides recompute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from mmseq.atomic import atomic_write_text
from mmseq.checkpoint import attach_tokenizer, register_checkpoint_format, write_directory
from mmseq.data.tokenizers import checkpoint_tokenizer
from mmseq.errors import CheckpointError
from mmseq.registry import create_model, model_arguments
from mmseq.vocoders.hifigan import fold_weight_norm

ARCHITECTURES = {"SpeechT5ForSpeechToText": "asr", "SpeechT5ForTextToSpeech": "tts",
                 "SpeechT5ForSpeechToSpeech": "vc"}
ARCHITECTURE_OF = {"asr": "SpeechT5ForSpeechToText", "st": "SpeechT5ForSpeechToText",
                   "tts": "SpeechT5ForTextToSpeech", "vc": "SpeechT5ForSpeechToSpeech",
                   "se": "SpeechT5ForSpeechToSpeech"}

# HF config field -> mmseq builder argument (same meaning; lists become tuples).
CONFIG_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "dim", "encoder_layers": "encoder_layers",
    "encoder_attention_heads": "encoder_heads", "encoder_ffn_dim": "encoder_ffn_dim",
    "decoder_layers": "decoder_layers", "decoder_attention_heads": "decoder_heads",
    "decoder_ffn_dim": "decoder_ffn_dim", "hidden_dropout": "dropout", "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout", "positional_dropout": "positional_dropout",
    "encoder_layerdrop": "encoder_layerdrop", "decoder_layerdrop": "decoder_layerdrop",
    "layer_norm_eps": "layer_norm_eps", "encoder_max_relative_position": "relative_position_distance",
    "conv_dim": "conv_dims", "conv_kernel": "conv_kernels", "conv_stride": "conv_strides", "conv_bias": "conv_bias",
    "num_conv_pos_embeddings": "pos_conv_kernel", "num_conv_pos_embedding_groups": "pos_conv_groups",
    "feat_proj_dropout": "feature_dropout", "mask_time_prob": "mask_time_prob",
    "mask_time_length": "mask_time_length", "mask_time_min_masks": "mask_time_min_masks",
    "max_speech_positions": "max_speech_positions", "max_text_positions": "max_text_positions",
    "scale_embedding": "scale_embedding", "num_mel_bins": "num_mel_bins", "reduction_factor": "reduction_factor",
    "speech_decoder_prenet_units": "speech_prenet_units", "speech_decoder_prenet_layers": "speech_prenet_layers",
    "speech_decoder_prenet_dropout": "speech_prenet_dropout", "speaker_embedding_dim": "speaker_embedding_dim",
    "speech_decoder_postnet_layers": "postnet_layers", "speech_decoder_postnet_units": "postnet_units",
    "speech_decoder_postnet_kernel": "postnet_kernel", "speech_decoder_postnet_dropout": "postnet_dropout",
}

PREFIXES = [  # HF prefix -> mmseq prefix
    ("speecht5.encoder.prenet.", "encoder_prenet."),
    ("speecht5.encoder.wrapped_encoder.", "encoder."),
    ("speecht5.decoder.prenet.", "decoder_prenet."),
    ("speecht5.decoder.wrapped_decoder.", "decoder."),
    ("text_decoder_postnet.", "decoder_postnet."),
    ("speech_decoder_postnet.", "decoder_postnet."),
]
# Buffers recomputed on both sides (position tables), never carried over.
DROPPED_SUFFIXES = ("encode_positions.pe", "pos_sinusoidal_embed.weights", "embed_positions.weights")
WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def is_hf_speecht5(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "speecht5"
    except json.JSONDecodeError:
        return False


def read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of ``model.safetensors`` or (never unpickling code) ``pytorch_model.bin``."""
    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        try:
            return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {str(path / 'pytorch_model.bin')!r} as plain tensors: {e}") from None
    raise CheckpointError(f"{str(path)!r} has neither model.safetensors nor pytorch_model.bin")


def builder_args(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(task, builder arguments) for an HF SpeechT5 config."""
    archs = config.get("architectures") or []
    tasks = [ARCHITECTURES[a] for a in archs if a in ARCHITECTURES]
    if not tasks:
        raise CheckpointError(f"SpeechT5 config names no supported architecture ({archs}); "
                              f"supported: {', '.join(ARCHITECTURES)}")
    if config.get("hidden_act", "gelu") != "gelu" or config.get("feat_extract_norm", "group") != "group":
        raise CheckpointError("only hidden_act=gelu and feat_extract_norm=group SpeechT5 checkpoints are supported")
    args = {ours: tuple(config[hf]) if isinstance(config[hf], list) else config[hf]
            for hf, ours in CONFIG_FIELDS.items() if hf in config}
    if not config.get("apply_spec_augment", True):
        args["mask_time_prob"] = 0.0
    return tasks[0], args


def to_mmseq_key(key: str) -> str | None:
    if key.endswith(DROPPED_SUFFIXES) or key.endswith("num_batches_tracked"):
        return None
    for hf, ours in PREFIXES:
        if key.startswith(hf):
            key = ours + key[len(hf):]
            break
    else:
        return None
    for old, new in WEIGHT_NORM.items():
        if key.endswith("." + old):
            key = key[: -len(old)] + new
    return key


def load_hf_speecht5(path: Path, **overrides: Any) -> nn.Module:
    """Build the mmseq SpeechT5 model an HF directory describes and load its weights (tokenizer attached)."""
    config = json.loads((path / "config.json").read_text())
    task, args = builder_args(config)
    model = create_model(f"speecht5_{task}_base", **{**args, **overrides})
    state = {}
    for key, tensor in read_hf_weights(path).items():
        ours = to_mmseq_key(key)
        if ours is not None:
            state[ours] = tensor
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if "decoder_postnet.lm_head.weight" in missing and "decoder_prenet.embed_tokens.weight" in state:
        missing.remove("decoder_postnet.lm_head.weight")  # tied: saved once
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"weights of {str(path)!r} do not fit {task} SpeechT5: missing {missing[:8]}, "
                              f"unexpected {unexpected[:8]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"weights of {str(path)!r} do not fit {task} SpeechT5: {e}") from None
    tokenizer = checkpoint_tokenizer(path)
    if tokenizer is not None:
        attach_tokenizer(model, tokenizer, f"SpeechT5 checkpoint {str(path)!r}")
    return model


def export_hf_speecht5(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model`` (an mmseq SpeechT5 asr/tts/vc model) as a transformers SpeechT5 directory."""
    from transformers import SpeechT5Config

    cfg = model.mmseq_config
    task = getattr(model, "task", None)
    if task not in ARCHITECTURE_OF:
        raise CheckpointError(f"only SpeechT5 asr/st/tts/vc/se models export to transformers, not {cfg['builder']}")
    args = {**model_arguments(cfg["builder"]), **cfg["args"]}
    if args.get("norm_first"):
        raise CheckpointError("pre-LN (large) SpeechT5 has no transformers equivalent")
    if task != "tts" and args.get("speech_frontend", "waveform") != "waveform":
        raise CheckpointError(f"SpeechT5 with speech_frontend={args['speech_frontend']!r} has no transformers "
                              f"equivalent (transformers reads waveforms with the convolutional feature encoder "
                              f"only); save it with mmseq.save_pretrained instead")
    hf_config = SpeechT5Config(**{hf: list(args[ours]) if isinstance(args[ours], tuple) else args[ours]
                                  for hf, ours in CONFIG_FIELDS.items()})
    hf_config.architectures = [ARCHITECTURE_OF[task]]
    reverse = {ours: hf for hf, ours in PREFIXES}
    decoder_postnet = "text_decoder_postnet." if task in ("asr", "st") else "speech_decoder_postnet."
    state = {}
    for key, tensor in model.state_dict().items():
        prefix, rest = key.split(".", 1)
        hf_prefix = decoder_postnet if prefix == "decoder_postnet" else reverse.get(prefix + ".")
        if hf_prefix is None:
            continue  # heads transformers has no place for (CTC)
        state[hf_prefix + rest] = tensor.contiguous().clone()

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save(tmp)
        atomic_write_text(tmp / "config.json", hf_config.to_json_string())

    return write_directory(directory, write)


# --- HiFi-GAN vocoder --------------------------------------------------------------------------------------------

HIFIGAN_TYPES = ("hifigan", "speecht5_hifigan")
HIFIGAN_FIELDS = ("model_in_dim", "upsample_initial_channel", "upsample_rates", "upsample_kernel_sizes",
                  "resblock_kernel_sizes", "resblock_dilation_sizes", "leaky_relu_slope", "normalize_before",
                  "sampling_rate")


def is_hf_hifigan(path: Path) -> bool:
    config = path / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text()).get("model_type") in HIFIGAN_TYPES
    except json.JSONDecodeError:
        return False


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_hf_hifigan(path: Path, **overrides: Any) -> nn.Module:
    """transformers' ``SpeechT5HifiGan`` directory -> mmseq ``speecht5_hifigan`` (weight norm folded)."""
    config = json.loads((path / "config.json").read_text())
    args = {k: _tuples(config[k]) for k in HIFIGAN_FIELDS if k in config}
    model = create_model("speecht5_hifigan", **{**args, **overrides})
    state = fold_weight_norm(read_hf_weights(path))
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f"weights of {str(path)!r} do not fit HiFi-GAN: missing {missing[:8]}, "
                              f"unexpected {unexpected[:8]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"weights of {str(path)!r} do not fit HiFi-GAN: {e}") from None
    return model


register_checkpoint_format("hf-speecht5", is_hf_speecht5, load_hf_speecht5)
register_checkpoint_format("hf-hifigan", is_hf_hifigan, load_hf_hifigan)
