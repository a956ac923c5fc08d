"""microsoft/SpeechT5 (fairseq) checkpoints such as ``speecht5_base.pt``: read them into ``speecht5_pretrain_base``.

The file is a ``torch.save`` pickle of ``{"model": state dict, "cfg": {..., "model": Namespace | dict}, "args":
Namespace | None, "optimizer_history": [...], "extra_state": {...}, ...}``. It is read by ``torch.load(
weights_only=True)`` with ``argparse.Namespace``, numpy scalars and dtypes allowed, and every class of the
``fairseq`` / ``omegaconf`` packages the file names (training meters in ``extra_state``) replaced by an inert
placeholder that holds the pickled state and runs no code. Any other global raises
:class:`~mmseq.errors.CheckpointError` naming it.

Keys map by the rules in :data:`KEY_RULES` (the official module names of ``speecht5/models``): every parameter and
buffer of the built model comes from the file, and every key of the file lands in the model except the ones
:data:`DROPPED` names (fairseq's version counters and sinusoidal caches, the decoder's unused relative-position
table, the encoder's CTC projection ``encoder.proj``, which the pre-training model has no place for). Sizes come
from the weights' shapes; what shapes cannot say (strides, dropouts, temperatures, mask settings) from the config.
The quantiser's update count comes from ``optimizer_history`` (so its temperature continues where training
stopped).

``mmseq.load("speecht5_base.pt")`` finds this format; fine-tuning starts from it with ``init_from`` and the prefix
maps of :data:`mmseq.models.speecht5_pretrain.FINETUNE_PREFIXES`.
"""

from __future__ import annotations

import argparse
import ast
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmseq.checkpoint import register_checkpoint_format
from mmseq.errors import CheckpointError
from mmseq.interop.torch_pickle import SAFE_GLOBALS, pickle_head
from mmseq.registry import create_model

BUILDER = "speecht5_pretrain_base"

# (mmseq key pattern, fairseq key template); the first that matches a key wins.
KEY_RULES: list[tuple[str, str]] = [
    (r"speech_encoder_prenet\.feature_encoder\.conv_layers\.(\d+)\.conv\.(.+)",
     r"speech_encoder_prenet.feature_extractor.conv_layers.\1.0.\2"),
    (r"speech_encoder_prenet\.feature_encoder\.conv_layers\.(\d+)\.layer_norm\.(.+)",
     r"speech_encoder_prenet.feature_extractor.conv_layers.\1.2.\2"),
    (r"speech_encoder_prenet\.feature_projection\.layer_norm\.(.+)", r"speech_encoder_prenet.layer_norm.\1"),
    (r"speech_encoder_prenet\.feature_projection\.projection\.(.+)", r"speech_encoder_prenet.post_extract_proj.\1"),
    (r"speech_encoder_prenet\.masked_spec_embed", r"speech_encoder_prenet.mask_emb"),
    (r"speech_encoder_prenet\.pos_conv_embed\.conv\.bias", r"speech_encoder_prenet.pos_conv.0.bias"),
    (r"speech_encoder_prenet\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
     r"speech_encoder_prenet.pos_conv.0.weight_g"),
    (r"speech_encoder_prenet\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
     r"speech_encoder_prenet.pos_conv.0.weight_v"),
    (r"text_encoder_prenet\.embed_tokens\.weight", r"text_encoder_prenet.encoder_prenet.0.weight"),
    (r"text_encoder_prenet\.encode_positions\.alpha", r"text_encoder_prenet.encoder_prenet.1.alpha"),
    (r"encoder\.layers\.(\d+)\.attention\.(.+)", r"encoder.layers.\1.self_attn.\2"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(.+)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"(encoder|decoder)\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(.+)", r"\1.layers.\2.fc1.\3"),
    (r"(encoder|decoder)\.layers\.(\d+)\.feed_forward\.output_dense\.(.+)", r"\1.layers.\2.fc2.\3"),
    (r"encoder\.embed_positions\.pe_k\.weight", r"encoder.pos_emb.pe_k.weight"),
    (r"speech_decoder_prenet\.layers\.(\d+)\.(.+)", r"speech_decoder_prenet.decoder_prenet.0.0.prenet.\1.0.\2"),
    (r"speech_decoder_prenet\.final_layer\.(.+)", r"speech_decoder_prenet.decoder_prenet.0.1.\1"),
    (r"speech_decoder_prenet\.encode_positions\.alpha", r"speech_decoder_prenet.decoder_prenet.1.alpha"),
    (r"speech_decoder_prenet\.speaker_embeds_layer\.(.+)", r"speech_decoder_prenet.spkembs_layer.0.\1"),
    (r"speech_decoder_postnet\.layers\.(\d+)\.conv\.(.+)", r"speech_decoder_postnet.postnet.postnet.\1.0.\2"),
    (r"speech_decoder_postnet\.layers\.(\d+)\.batch_norm\.(.+)", r"speech_decoder_postnet.postnet.postnet.\1.1.\2"),
    (r"text_decoder_postnet\.lm_head\.weight", r"text_decoder_postnet.output_projection.weight"),
    (r"final_proj\.(.+)", r"hubert_layer.final_proj.\1"),
    (r"label_embs", r"hubert_layer.label_embs_concat"),
    (r"(.+)", r"\1"),  # same name on both sides: the rest of the encoder / decoder, feat_out, prob_out, quantizer
]
# fairseq keys with no counterpart, and why.
DROPPED: dict[str, str] = {
    r"(encoder|decoder)\.version": "fairseq's format version counter",
    r".*\.embed_positions\._float_tensor": "sinusoidal tables are recomputed",
    r"decoder\.pos_emb\.pe_k\.weight": "the decoder has no relative positions (built, never used)",
    r"(encoder|decoder)\.layers\.\d+\.norm_k\..*": "only used by an option the released models leave off",
    r"encoder\.proj\..*": "the encoder's CTC projection: ASR fine-tuning builds its own CTC head",
}
OWN_STATE = ("quantizer.num_updates",)  # set from optimizer_history, not a tensor of the file


class _Opaque(dict):
    """Stands in for a fairseq / omegaconf class in the pickle: keeps what was pickled, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        self["__state__"] = state


PLACEHOLDER_PACKAGES = ("fairseq.", "omegaconf.")


def is_fairseq_speecht5(path: Path) -> bool:
    """A single torch file whose pickle holds a fairseq ``model`` state with SpeechT5's pre-/post-net names."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        head = pickle_head(path)
    except (OSError, zipfile.BadZipFile):
        return False
    return b"model" in head and (b"cfg" in head or b"args" in head) and (
        b"speech_encoder_prenet." in head or b"text_encoder_prenet." in head)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Unpickle a fairseq SpeechT5 checkpoint with the restricted unpickler (see the module notes)."""
    path = Path(path)
    where = f"fairseq SpeechT5 checkpoint {str(path)!r}"
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if zipfile.is_zipfile(path) else []
    except Exception as e:  # noqa: BLE001 - a corrupt archive
        raise CheckpointError(f"cannot read {where}: {e}") from None
    unsafe = [g for g in names if g not in allowed and not g.startswith(PLACEHOLDER_PACKAGES)]
    if unsafe:
        raise CheckpointError(f"{where} holds untrusted global(s) {', '.join(unsafe)}; refusing to unpickle it")
    placeholders = [(type(g.rsplit(".", 1)[-1], (_Opaque,), {}), g) for g in names if g.startswith(PLACEHOLDER_PACKAGES)]
    try:
        with torch.serialization.safe_globals([*SAFE_GLOBALS, *placeholders]):
            states = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ...
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        if found:
            raise CheckpointError(f"{where} holds untrusted global {found.group(1)}; refusing to unpickle it") from None
        raise CheckpointError(f"cannot read {where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                              ) from None
    if not isinstance(states, dict) or not isinstance(states.get("model"), dict):
        raise CheckpointError(f"{where} has no 'model' state dict")
    return states


def model_config(states: dict[str, Any]) -> dict[str, Any]:
    """The model's options: ``cfg["model"]`` (a Namespace or a dict), else ``args``; ``{}`` without either."""
    cfg = states.get("cfg")
    found = cfg.get("model") if isinstance(cfg, dict) else None
    if found is None:
        found = states.get("args")
    if isinstance(found, argparse.Namespace):
        return vars(found)
    return dict(found) if isinstance(found, dict) else {}


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` (``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``) without eval."""
    layers: list[tuple[int, int, int]] = []
    for part in spec.split("+"):
        body, _, times = part.partition("*")
        try:
            items = ast.literal_eval(body.strip())
            count = int(times.strip()) if times.strip() else 1
        except (ValueError, SyntaxError):
            raise CheckpointError(f"cannot read conv_feature_layers {spec!r}") from None
        layers += [tuple(int(v) for v in item) for item in items] * count
    return layers


def fairseq_key(key: str) -> str:
    """The official name of an mmseq ``speecht5_pretrain`` key."""
    for pattern, template in KEY_RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, template, key)
    raise AssertionError("the last rule matches every key")  # pragma: no cover


def _count(state: dict[str, Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def builder_args(states: dict[str, Any], where: str) -> dict[str, Any]:
    """``speecht5_pretrain_base`` arguments from the weights' shapes and the config."""
    state, cfg = states["model"], model_config(states)

    def need(key: str) -> Tensor:
        if key not in state:
            raise CheckpointError(f"{where} has no {key}: not a SpeechT5 pre-training checkpoint")
        return state[key]

    dim = int(need("encoder.layer_norm.weight").shape[0])
    pe_k = need("encoder.pos_emb.pe_k.weight")
    conv = parse_conv_layers(str(cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")))
    conv_layers = _count(state, r"speech_encoder_prenet\.feature_extractor\.conv_layers\.(\d+)\.0\.weight")
    if len(conv) != conv_layers:
        raise CheckpointError(f"{where}: conv_feature_layers gives {len(conv)} layers, the weights {conv_layers}")
    pos_conv = need("speech_encoder_prenet.pos_conv.0.weight_v")
    prenet_layers = _count(state, r"speech_decoder_prenet\.decoder_prenet\.0\.0\.prenet\.(\d+)\.0\.weight")
    postnet_layers = _count(state, r"speech_decoder_postnet\.postnet\.postnet\.(\d+)\.0\.weight")
    first_post = need("speech_decoder_postnet.postnet.postnet.0.0.weight")
    speaker = state.get("speech_decoder_prenet.spkembs_layer.0.weight")
    quantizer = state.get("quantizer.vars")
    temp = cfg.get("latent_temp", (2.0, 0.5, 0.999995))
    args: dict[str, Any] = {
        "vocab_size": int(need("text_decoder_prenet.embed_tokens.weight").shape[0]),
        "dim": dim,
        "encoder_layers": _count(state, r"encoder\.layers\.(\d+)\.fc1\.weight"),
        "encoder_heads": dim // int(pe_k.shape[1]),
        "encoder_ffn_dim": int(need("encoder.layers.0.fc1.weight").shape[0]),
        "decoder_layers": _count(state, r"decoder\.layers\.(\d+)\.fc1\.weight"),
        "decoder_heads": int(cfg.get("decoder_attention_heads", 12)),
        "decoder_ffn_dim": int(need("decoder.layers.0.fc1.weight").shape[0]),
        "dropout": float(cfg.get("dropout", 0.1)),
        "attention_dropout": float(cfg.get("attention_dropout", 0.1)),
        "activation_dropout": float(cfg.get("activation_dropout", 0.0)),
        "encoder_layerdrop": float(cfg.get("encoder_layerdrop", 0.0)),
        "decoder_layerdrop": float(cfg.get("decoder_layerdrop", 0.0)),
        "layer_norm_eps": float(cfg.get("layer_norm_eps", 1e-5)),
        "norm_first": bool(cfg.get("layer_norm_first", False)),
        "relative_position_distance": int(pe_k.shape[0]) // 2,
        "conv_dims": tuple(c[0] for c in conv), "conv_kernels": tuple(c[1] for c in conv),
        "conv_strides": tuple(c[2] for c in conv), "conv_bias": bool(cfg.get("conv_bias", False)),
        "pos_conv_kernel": int(pos_conv.shape[2]), "pos_conv_groups": dim // int(pos_conv.shape[1]),
        "num_mel_bins": int(first_post.shape[1]),
        "reduction_factor": int(need("speech_decoder_postnet.prob_out.weight").shape[0]),
        "speech_prenet_units": int(need("speech_decoder_prenet.decoder_prenet.0.1.weight").shape[1]),
        "speech_prenet_layers": prenet_layers,
        "speaker_embedding_dim": 0 if speaker is None else int(speaker.shape[1]) - dim,
        "postnet_layers": postnet_layers, "postnet_units": int(first_post.shape[0]),
        "postnet_kernel": int(first_post.shape[2]),
        "num_units": int(need("hubert_layer.label_embs_concat").shape[0]),
        "final_dim": int(need("hubert_layer.label_embs_concat").shape[1]),
        "logit_temperature": float(cfg.get("logit_temp", 0.1)),
        "mask_prob": float(cfg.get("mask_prob", 0.8)),
        "mask_length": int(cfg.get("hubert_mask_length", cfg.get("mask_length", 10))),
        "codebook": quantizer is not None,
        "codebook_prob": float(cfg.get("codebook_prob", 0.1)),
    }
    if isinstance(temp, str):
        temp = ast.literal_eval(temp)
    if quantizer is not None:
        groups = dim // int(quantizer.shape[2])
        args.update(codebook_groups=groups, codebook_vars=int(quantizer.shape[1]) // groups,
                    codebook_temperature=tuple(float(t) for t in temp))
    return args


def _num_updates(states: dict[str, Any]) -> int:
    history = states.get("optimizer_history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        return int(history[-1].get("num_updates", 0) or 0)
    return 0


def load_fairseq_speecht5(path: str | Path, **overrides: Any) -> torch.nn.Module:
    """Build ``speecht5_pretrain_base`` from a fairseq SpeechT5 pre-training checkpoint (in eval mode).

    Raises:
        CheckpointError: untrusted content, a model key the file lacks, a file key that lands nowhere (and is not
            one :data:`DROPPED` names), or a shape mismatch.
    """
    where = f"fairseq SpeechT5 checkpoint {str(path)!r}"
    states = read_checkpoint(path)
    args = {**builder_args(states, where), **overrides}
    model = create_model(BUILDER, **args)
    theirs = states["model"]
    ours = model.state_dict()
    mapping = {k: fairseq_key(k) for k in ours if k not in OWN_STATE}
    missing = sorted(t for t in mapping.values() if t not in theirs)
    used = set(mapping.values())
    unexpected = sorted(k for k in theirs if k not in used and not any(re.fullmatch(p, k) for p in DROPPED))
    if missing or unexpected:
        raise CheckpointError(f"{where} does not fit {BUILDER}: missing {missing[:6]}"
                              f"{f' ({len(missing)} in all)' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
                              f"{f' ({len(unexpected)} in all)' if len(unexpected) > 6 else ''}")
    shapes = [f"{t}: file {tuple(theirs[t].shape)}, model {tuple(ours[k].shape)}" for k, t in mapping.items()
              if tuple(theirs[t].shape) != tuple(ours[k].shape)]
    if shapes:
        raise CheckpointError(f"{where}: shapes differ for {'; '.join(shapes[:4])}")
    with torch.no_grad():
        for k, t in mapping.items():
            ours[k].copy_(theirs[t])
        if model.quantizer is not None:
            model.quantizer.set_num_updates(_num_updates(states))
    return model.eval()


# first: its test (SpeechT5 module names in a fairseq pickle) is narrower than the s3prl one.
register_checkpoint_format("fairseq_speecht5", is_fairseq_speecht5, load_fairseq_speecht5, first=True)
