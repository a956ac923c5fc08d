"""SpeechBrain x-vector folders (``speechbrain/spkrec-xvect-voxceleb`` as its pretrainer lays it out), read into
mmseq's ``xvector_base``.

A folder holds::

    hyperparams.yaml         HyperPyYAML: compute_features (Fbank), mean_var_norm, embedding_model (Xvector), ...
    embedding_model.ckpt     torch.save(Xvector.state_dict())
    mean_var_norm_emb.ckpt   torch.save({"count", "glob_mean", "glob_std", ...})   (optional)
    classifier.ckpt          torch.save(Classifier.state_dict())                     (optional)
    label_encoder.txt        the speakers' names                                      (optional, read for labels)

``.ckpt`` files are read with ``torch.load(weights_only=True)``: plain tensors and containers only, nothing in them
runs. ``hyperparams.yaml`` is read as data: its ``!new:`` / ``!name:`` / ``!ref`` tags are recorded, never
instantiated, and only the facts mmseq models are taken (the Fbank and TDNN sizes, the input normalisation);
anything else that would change the embeddings (another embedding model, deltas, a learnable filterbank) is a
:class:`~mmseq.errors.CheckpointError`. Without ``hyperparams.yaml`` the published model's values are assumed
(``xvector_base``'s defaults) and the weights' shapes must agree with them.

``mmseq.load(folder)`` finds this format through :func:`mmseq.checkpoint.register_checkpoint_format`; the model's
``embed`` gives SpeechBrain's ``encode_batch`` embeddings, L2-normalised as SpeechT5 uses them.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from mmseq.checkpoint import register_checkpoint_format
from mmseq.errors import CheckpointError
from mmseq.models.xvector import speechbrain_key_map
from mmseq.registry import create_model, model_arguments

BUILDER = "xvector_base"
EMBEDDING = "embedding_model.ckpt"
CLASSIFIER = "classifier.ckpt"
EMBEDDING_NORM = "mean_var_norm_emb.ckpt"
HYPERPARAMS = "hyperparams.yaml"
LABELS = "label_encoder.txt"

XVECTOR = "speechbrain.lobes.models.Xvector.Xvector"
FBANK = "speechbrain.lobes.features.Fbank"
INPUT_NORM = "speechbrain.processing.features.InputNormalization"
# Fbank arguments -> (xvector builder argument, SpeechBrain default); others must keep SpeechBrain's default.
FBANK_ARGS = {"n_mels": ("n_mels", 40), "sample_rate": ("sample_rate", 16000), "n_fft": ("n_fft", 400),
              "win_length": ("win_ms", 25), "hop_length": ("hop_ms", 10), "f_min": ("f_min", 0),
              "f_max": ("f_max", None)}
FBANK_FIXED = {"deltas": False, "context": False, "requires_grad": False, "filter_shape": "triangular",
               "param_change_factor": 1.0, "param_rand_factor": 0.0, "left_frames": 5, "right_frames": 5}
XVECTOR_ARGS = {"tdnn_channels": "channels", "tdnn_kernel_sizes": "kernels", "tdnn_dilations": "dilations",
                "lin_neurons": "embedding_dim", "in_channels": "n_mels"}


# --- hyperparams.yaml as data ------------------------------------------------------------------------------------

class Tagged:
    """A HyperPyYAML node with a tag (``!new:cls``, ``!name:fn``, ``!ref``, ...): the tag and its plain value."""

    def __init__(self, tag: str, value: Any):
        self.tag, self.value = tag, value

    def __repr__(self) -> str:
        return f"Tagged({self.tag!r}, {self.value!r})"


class _HyperLoader(yaml.SafeLoader):
    """A safe loader that keeps every ``!tag`` node as :class:`Tagged` data."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Tagged("!" + suffix, value)


_HyperLoader.add_multi_constructor("!", _tagged)
_REF = re.compile(r"^<([^<>]+)>$")


def read_hyperparams(path: Path) -> dict[str, Any]:
    """``hyperparams.yaml`` as a dict; a ``!ref <key>`` to a top-level plain value is replaced by that value."""
    try:
        data = yaml.load(path.read_text(), Loader=_HyperLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} is not a YAML mapping")

    def resolve(value: Any, depth: int = 0) -> Any:
        if isinstance(value, Tagged) and value.tag == "!ref" and isinstance(value.value, str) and depth < 8:
            match = _REF.match(value.value.strip())
            if match and match.group(1) in data:
                return resolve(data[match.group(1)], depth + 1)
            return value
        if isinstance(value, Tagged):
            return Tagged(value.tag, resolve(value.value, depth))
        if isinstance(value, dict):
            return {k: resolve(v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, depth) for v in value]
        return value

    return {k: resolve(v) for k, v in data.items()}


def _object(hparams: dict[str, Any], key: str, cls: str, where: str, required: bool) -> dict[str, Any] | None:
    """The arguments of ``key: !new:cls``; None when absent and not required."""
    node = hparams.get(key)
    if node is None and not required:
        return None
    if not isinstance(node, Tagged) or node.tag != f"!new:{cls}":
        found = node.tag if isinstance(node, Tagged) else type(node).__name__
        raise CheckpointError(f"{where}: {key!r} must be !new:{cls} (mmseq reads SpeechBrain x-vector models only), "
                              f"found {found}")
    args = node.value if isinstance(node.value, dict) else {}
    unresolved = [k for k, v in args.items() if isinstance(v, Tagged) and v.tag == "!ref"]
    if unresolved:
        raise CheckpointError(f"{where}: cannot resolve the !ref of {key}.{unresolved[0]}")
    return args


def builder_args(hparams: dict[str, Any], where: str) -> tuple[dict[str, Any], bool]:
    """(``xvector_base`` arguments, whether the embedding normaliser divides by its std) from hyperparams facts."""
    args: dict[str, Any] = {}
    xvector = _object(hparams, "embedding_model", XVECTOR, where, required=True)
    activation = xvector.get("activation")
    if activation is not None and not (isinstance(activation, Tagged) and activation.value in ("", None)
                                       and activation.tag == "!name:torch.nn.LeakyReLU"):
        raise CheckpointError(f"{where}: only LeakyReLU x-vectors are supported, found activation {activation!r}")
    for theirs, ours in XVECTOR_ARGS.items():
        if theirs in xvector:
            value = xvector[theirs]
            args[ours] = tuple(value) if isinstance(value, list) else value
    if "tdnn_blocks" in xvector and "channels" in args and int(xvector["tdnn_blocks"]) != len(args["channels"]):
        raise CheckpointError(f"{where}: tdnn_blocks={xvector['tdnn_blocks']} but {len(args['channels'])} channels")
    fbank = _object(hparams, "compute_features", FBANK, where, required=False)
    if fbank is not None:
        for key, value in fbank.items():
            if key in FBANK_ARGS:
                ours = FBANK_ARGS[key][0]
                if ours in args and args[ours] != value:
                    raise CheckpointError(f"{where}: Fbank n_mels={value} but the x-vector takes {args[ours]} channels")
                args[ours] = value
            elif key in FBANK_FIXED:
                if value != FBANK_FIXED[key] and not (key.endswith("_frames") and not fbank.get("context", False)):
                    raise CheckpointError(f"{where}: Fbank {key}={value!r} is not supported (mmseq's x-vector front-end "
                                          f"has {key}={FBANK_FIXED[key]!r})")
            else:
                raise CheckpointError(f"{where}: unknown Fbank argument {key!r}")
        args.setdefault("n_mels", FBANK_ARGS["n_mels"][1])
    norm = _object(hparams, "mean_var_norm", INPUT_NORM, where, required=False)
    if norm is None:
        args["feature_norm"] = "none"
    else:
        if norm.get("norm_type", "global") != "sentence":
            raise CheckpointError(f"{where}: only per-sentence feature normalisation is supported, found "
                                  f"norm_type={norm.get('norm_type', 'global')!r}")
        args["feature_norm"] = "mean_var" if norm.get("std_norm", True) else "mean"
    emb_norm = _object(hparams, "mean_var_norm_emb", INPUT_NORM, where, required=False)
    emb_std = bool(emb_norm.get("std_norm", True)) if emb_norm is not None else False
    return args, emb_std


# --- weights -----------------------------------------------------------------------------------------------------

def read_ckpt(path: Path) -> dict[str, Any]:
    """A SpeechBrain ``.ckpt`` (a ``torch.save`` pickle) read with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError (an untrusted global), EOFError, RuntimeError ...
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"cannot read {str(path)!r} as plain tensors (weights_only): {type(e).__name__}: "
                              f"{first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict")
    return state


def read_labels(path: Path) -> list[str] | None:
    """Speaker names by class index from SpeechBrain's ``label_encoder.txt`` (``'name' => index`` lines)."""
    if not path.is_file():
        return None
    labels: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("=") or "=>" not in line:
            continue
        name, _, index = line.rpartition("=>")
        try:
            label, i = ast.literal_eval(name.strip()), int(index.strip())
        except (ValueError, SyntaxError):
            continue
        if isinstance(label, str) and label != "starting_index":
            labels[i] = label
    return [labels[i] for i in sorted(labels)] if labels and sorted(labels) == list(range(len(labels))) else None


def is_speechbrain_xvector(path: Path) -> bool:
    return path.is_dir() and (path / EMBEDDING).is_file()


def load_speechbrain_xvector(path: str | Path, **overrides: Any) -> torch.nn.Module:
    """Build ``xvector_base`` from a SpeechBrain x-vector folder and load its weights.

    Args:
        path: the folder (see the module notes).
        overrides: builder arguments to change.

    Returns:
        The model in eval mode, ``mmseq_config`` set (so :func:`mmseq.save_pretrained` writes an mmseq checkpoint);
        with ``classifier.ckpt`` it has a classifier (``num_classes`` from its weights) and, with
        ``label_encoder.txt``, ``model.labels``; ``mean_var_norm_emb.ckpt`` fills the global embedding mean.

    Raises:
        CheckpointError: an unsupported hyperparams fact, an unreadable ``.ckpt`` or weights that do not fit.
    """
    path = Path(path)
    where = f"SpeechBrain folder {str(path)!r}"
    args: dict[str, Any] = {}
    emb_std = False
    if (path / HYPERPARAMS).is_file():
        args, emb_std = builder_args(read_hyperparams(path / HYPERPARAMS), where)
    theirs = {f"embedding_model.{k}": v for k, v in read_ckpt(path / EMBEDDING).items()}
    classifier_blocks = None
    if (path / CLASSIFIER).is_file():
        classifier = read_ckpt(path / CLASSIFIER)
        theirs.update({f"classifier.{k}": v for k, v in classifier.items()})
        classifier_blocks = len({k.split(".")[1] for k in classifier if k.startswith("DNN.")})
        if "out.w.weight" not in classifier:
            raise CheckpointError(f"{where}: {CLASSIFIER} has no out.w.weight (not an Xvector Classifier)")
        args["num_classes"] = int(classifier["out.w.weight"].shape[0])
        args["classifier_blocks"] = classifier_blocks
        if classifier_blocks:
            args["classifier_dim"] = int(classifier["DNN.block_0.linear.w.weight"].shape[0])
    else:
        args["num_classes"] = 0
    args = {**args, **overrides}
    defaults = model_arguments(BUILDER)
    num_blocks = len(args.get("channels", defaults["channels"]))
    try:
        model = create_model(BUILDER, **args)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None
    key_map = speechbrain_key_map(num_blocks, classifier_blocks if args["num_classes"] else None)
    missing = [t for t in key_map.values() if t not in theirs and not t.endswith("num_batches_tracked")]
    unexpected = sorted(set(theirs) - set(key_map.values()))
    if missing or unexpected:
        raise CheckpointError(f"{where} does not fit a {num_blocks}-block x-vector: missing {missing[:6]}, "
                              f"unexpected {unexpected[:6]}")
    state = {ours: theirs[t] for ours, t in key_map.items() if t in theirs}
    if (path / EMBEDDING_NORM).is_file():
        stats = read_ckpt(path / EMBEDDING_NORM)
        mean = stats.get("glob_mean")
        if isinstance(mean, torch.Tensor) and mean.numel() == model.embedding_dim:
            state["embedding.mean"] = mean.reshape(-1).float()
            if emb_std:
                warnings.warn(f"{where}: mean_var_norm_emb also divides by a standard deviation; "
                              "embed(center=True) subtracts the mean only", stacklevel=2)
        elif mean is not None and not (isinstance(mean, torch.Tensor) and mean.numel() == 0):
            raise CheckpointError(f"{where}: {EMBEDDING_NORM} glob_mean does not have {model.embedding_dim} values")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches: the hyperparams and the weights disagree
        lines = str(e).splitlines()
        raise CheckpointError(f"{where}: weights do not fit the hyperparams: {lines[-1].strip()}") from None
    labels = read_labels(path / LABELS)
    if labels is not None and len(labels) == args["num_classes"]:
        model.labels = labels
    return model.eval()


register_checkpoint_format("speechbrain-xvector", is_speechbrain_xvector, load_speechbrain_xvector)
