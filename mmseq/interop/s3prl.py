"""s3prl TERA / Mockingjay checkpoints: read them with a restricted unpickler, and write them back.

An s3prl pretraining checkpoint (``states-*.ckpt``, written by ``torch.save``) is a dict::

    {"Transformer": TransformerModel.state_dict(), "SpecHead": TransformerSpecPredictionHead.state_dict(),
     "Upstream_Config": {"transformer": {...}, "task": {...}, "audio": {...}},
     "Config": runner config, "Optimizer": ..., "Step": int, "Args": argparse.Namespace, ["Scheduler": ...]}

Legacy checkpoints keep the upstream config under ``Config`` (it has a ``transformer`` key) and the runner config
under ``Runner``; very old ones name layer-norm parameters ``gamma`` / ``beta``.

Reading never runs a plain unpickler: the file goes through ``torch.load(weights_only=True)`` with a short list of
extra types such files hold (``argparse.Namespace``, numpy scalars and dtypes). Any other global in the file raises
:class:`~mmseq.errors.CheckpointError` naming it, and nothing in the file is executed.

``mmseq.load("states-1000000.ckpt")`` finds this format through :func:`mmseq.checkpoint.register_checkpoint_format`.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmseq.atomic import atomic_file
from mmseq.checkpoint import register_checkpoint_format
from mmseq.errors import CheckpointError
from mmseq.interop.torch_pickle import SAFE_GLOBALS, pickle_head
from mmseq.models.tera import s3prl_key_map
from mmseq.registry import create_model, model_arguments

BUILDER = "tera_base"  # every TERA variant is tera_base with other sizes


_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")

# s3prl's default TERA upstream config (pretrain/tera/config_model.yaml) for the parts mmseq does not model.
DEFAULT_TASK = {
    "loss": "L1", "sequence_length": 1500, "position_encoding_size": 768, "mask_proportion": 0.15,
    "mask_consecutive_min": 7, "mask_consecutive_max": 7, "mask_allow_overlap": True, "mask_bucket_ratio": 1.5,
    "mask_frequency": 0.2, "noise_proportion": 0.0,
}
LOGMEL_AUDIO = {
    "target_level": -25, "win_ms": 25, "hop_ms": 10, "n_freq": 201, "n_mels": 80, "n_mfcc": 13,
    "input": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True},
    "target": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True},
}
FBANK_AUDIO = {
    "target_level": -25,
    "kaldi": {"feat_type": "fbank", "fbank": {"frame_length": 25.0, "frame_shift": 10.0, "num_mel_bins": 80,
                                              "use_log_fbank": True},
              "delta": {"order": 2, "win_length": 5}, "cmvn": {"use_cmvn": True}},
}


# --- reading ---------------------------------------------------------------------------------------------------

def is_s3prl_checkpoint(path: Path) -> bool:
    """True for a single torch file whose pickled dict names ``Transformer`` and an upstream config."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        head = pickle_head(path)
    except (OSError, zipfile.BadZipFile):
        return False
    return b"Transformer" in head and (b"Upstream_Config" in head or b"Config" in head)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle an s3prl checkpoint with the restricted unpickler.

    Raises:
        CheckpointError: the file holds a global outside the allow-list (named in the message), or is unreadable.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
        try:
            unsafe = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if g not in allowed]
        except Exception as e:  # noqa: BLE001 - a corrupt archive
            raise CheckpointError(f"cannot read s3prl checkpoint {str(path)!r}: {e}") from None
        if unsafe:
            raise CheckpointError(f"s3prl checkpoint {str(path)!r} holds untrusted global(s) {', '.join(unsafe)}; "
                                  "refusing to unpickle it")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            states = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ...
        match = _UNSAFE_GLOBAL.search(str(e))
        if match:
            raise CheckpointError(f"s3prl checkpoint {str(path)!r} holds untrusted global {match.group(1)}; "
                                  "refusing to unpickle it") from None
        raise CheckpointError(f"cannot read s3prl checkpoint {str(path)!r}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(states, dict) or "Transformer" not in states:
        raise CheckpointError(f"{str(path)!r} is not an s3prl TERA/Mockingjay checkpoint (no 'Transformer' entry)")
    return states


def upstream_config(states: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """The upstream config: legacy ``Config`` when it has ``transformer``, else ``Upstream_Config`` (as s3prl)."""
    for key in ("Config", "Upstream_Config"):
        config = states.get(key)
        if isinstance(config, dict) and "transformer" in config:
            return config
    raise CheckpointError(f"{where} has no upstream config ('Config' or 'Upstream_Config' with 'transformer')")


def _rename_legacy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """TF-era names: ``gamma`` -> ``weight``, ``beta`` -> ``bias`` (as s3prl's ``load_model``)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[-1] in ("gamma", "beta"):
            parts[-1] = "weight" if parts[-1] == "gamma" else "bias"
        out[".".join(parts)] = value
    return out


def _frontend_of(audio: dict[str, Any] | None, input_dim: int) -> str:
    if not isinstance(audio, dict):
        return "none"
    if "kaldi" in audio:
        kaldi = audio["kaldi"]
        order = int(kaldi.get("delta", {}).get("order", 0))
        bins = int(kaldi.get("fbank", {}).get("num_mel_bins", 80))
        if kaldi.get("feat_type", "fbank") == "fbank" and order == 2 and bins * 3 == input_dim == 240:
            return "fbank"
    else:
        spec = audio.get("input", {})
        if (spec.get("feat_type") == "mel" and int(audio.get("n_mels", 0)) == input_dim == 80 and spec.get("log", True)
                and int(spec.get("delta", 0)) == 0 and spec.get("cmvn", False)):
            return "logmel"
    warnings.warn("the checkpoint's audio config is not TERA's log-mel or fbank; the model takes frames only "
                  "(frontend='none')", stacklevel=3)
    return "none"


def builder_args(states: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """``tera_base`` arguments that rebuild the checkpoint's model (sizes from its config and weight shapes)."""
    config = upstream_config(states, where)
    t = config["transformer"]
    if t.get("pre_layer_norm", False):
        raise CheckpointError(f"{where}: pre-LN TERA models (pre_layer_norm: True) are not supported")
    weights = _rename_legacy(states["Transformer"])
    key = "input_representations.spec_transform.weight"
    if key not in weights:
        raise CheckpointError(f"{where}: no {key} (a Mockingjay model without input module is not supported)")
    input_dim = int(weights[key].shape[1])
    head = states.get("SpecHead") or {}
    output_dim = int(head["output.weight"].shape[0]) if "output.weight" in head else input_dim
    sequence_length = int(config.get("task", {}).get("sequence_length", 0) or 0)
    return {
        "input_dim": input_dim,
        "dim": int(t["hidden_size"]),
        "heads": int(t["num_attention_heads"]),
        "ffn_dim": int(t["intermediate_size"]),
        "layers": int(t["num_hidden_layers"]),
        "dropout": float(t["hidden_dropout_prob"]),
        "attention_dropout": float(t["attention_probs_dropout_prob"]),
        "layer_norm_eps": float(t.get("layer_norm_eps", 1e-12)),
        "activation": str(t.get("hidden_act", "gelu")),
        "frontend": _frontend_of(config.get("audio"), input_dim),
        "max_input_frames": max(sequence_length, 0),
        "output_dim": None if output_dim == input_dim else output_dim,
    }


def load_s3prl(path: str | os.PathLike, **overrides: Any) -> torch.nn.Module:
    """Build a TERA :class:`~mmseq.models.compose.EncoderModel` from an s3prl TERA/Mockingjay checkpoint file.

    Args:
        path: the ``.ckpt`` file.
        overrides: builder arguments to change (e.g. ``dropout=0.0``, ``max_input_frames=0``).

    Returns:
        The model in eval mode, its ``mmseq_config`` set so :func:`mmseq.save_pretrained` can write it. Without a
        ``SpecHead`` entry (some Mockingjay exports) the reconstruction head keeps its initial weights.

    Raises:
        CheckpointError: untrusted content, an unsupported config, or weights that do not fit.
    """
    where = f"s3prl checkpoint {str(path)!r}"
    states = read_checkpoint(path)
    args = {**builder_args(states, where), **overrides}
    model = create_model(BUILDER, **args)
    theirs = {f"Transformer.{k}": v for k, v in _rename_legacy(states["Transformer"]).items()}
    has_head = bool(states.get("SpecHead"))
    if has_head:
        theirs.update({f"SpecHead.{k}": v for k, v in _rename_legacy(states["SpecHead"]).items()})
    key_map = s3prl_key_map(args["layers"])
    ours = {o: theirs[t] for o, t in key_map.items() if t in theirs}
    missing = [t for o, t in key_map.items() if t not in theirs and (has_head or not o.startswith("postnet."))]
    unexpected = sorted(set(theirs) - set(key_map.values()))
    if missing or unexpected:
        raise CheckpointError(f"{where} does not fit a {args['layers']}-layer TERA: missing {missing[:6]}, "
                              f"unexpected {unexpected[:6]}")
    try:
        model.load_state_dict(ours, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: {str(e).splitlines()[0]} ({str(e).splitlines()[-1].strip()})") from None
    return model.eval()


# --- writing ---------------------------------------------------------------------------------------------------

def _transformer_config(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "input_dim": -1, "hidden_size": args["dim"], "num_hidden_layers": args["layers"],
        "num_attention_heads": args["heads"], "intermediate_size": args["ffn_dim"],
        "hidden_act": args["activation"], "hidden_dropout_prob": args["dropout"],
        "attention_probs_dropout_prob": args["attention_dropout"], "initializer_range": 0.02,
        "layer_norm_eps": args["layer_norm_eps"], "share_layer": False, "pre_layer_norm": False,
    }


def to_s3prl_states(model: torch.nn.Module) -> dict[str, Any]:
    """The checkpoint dict s3prl's ``upstream/mockingjay/builder.py`` reads, from an mmseq TERA model."""
    config = getattr(model, "mmseq_config", None)
    if config is None or not config["builder"].startswith("tera_"):
        raise CheckpointError("only TERA models built by mmseq.create_model('tera_*') can be exported to s3prl")
    args = {**model_arguments(config["builder"]), **config["args"]}
    state = model.state_dict()
    key_map = s3prl_key_map(args["layers"])
    transformer = {t.removeprefix("Transformer."): state[o].detach().clone().cpu()
                   for o, t in key_map.items() if t.startswith("Transformer.")}
    head = {t.removeprefix("SpecHead."): state[o].detach().clone().cpu()
            for o, t in key_map.items() if t.startswith("SpecHead.")}
    audio = {"logmel": LOGMEL_AUDIO, "fbank": FBANK_AUDIO}.get(args["frontend"])
    upstream = {
        "transformer": _transformer_config(args),
        "task": {**DEFAULT_TASK, "sequence_length": args["max_input_frames"], "position_encoding_size": args["dim"]},
    }
    if audio is not None:
        upstream["audio"] = audio
    # The layout of s3prl's newer problem/ssl/tera.py export: the runner config is empty.
    return {"Transformer": transformer, "SpecHead": head, "Upstream_Config": upstream, "Config": {}, "Step": 0}


def save_s3prl(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as an s3prl TERA checkpoint file (atomically: a temporary file, then a rename)."""
    path = Path(path).absolute()
    with atomic_file(path, "wb") as f:
        torch.save(to_s3prl_states(model), f)
    return path


register_checkpoint_format("s3prl", is_s3prl_checkpoint, load_s3prl)
