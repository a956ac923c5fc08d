"""``mmseq data embed-speakers MANIFEST --model DIR``: a speaker x-vector for every utterance of a manifest.

For each utterance the speaker encoder's L2-normalised embedding (``XVectorModel.embed``: 512 float32 values for
SpeechBrain's ``spkrec-xvect-voxceleb`` and mmseq's ``xvector_*``) is written as a ``.npy`` file, and a copy of the
manifest records where: ``extra.xvector`` is the file's path relative to the new manifest's folder. This field is
what the SpeechT5 TTS / VC / SE tasks read.

Layout (``OUT`` defaults to the manifest's folder, so the new manifest sits beside the original and keeps its
relative audio paths)::

    OUT/<stem>.xvector.jsonl            the manifest's utterances, each with extra.xvector
    OUT/xvectors/<stem>/<id>.npy        one [512] float32 array per utterance

The ``.npy`` files are written first and the manifest last (atomically), so a manifest on disk only ever names
finished files. Utterances are embedded in batches of similar duration; the model embeds each row of a padded batch
as if it were alone, so the values do not depend on the batch size. The model is an mmseq checkpoint of an
``xvector_*`` model or a SpeechBrain x-vector folder (anything :func:`mmseq.load` reads that has ``embed``).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from mmseq.checkpoint import load
from mmseq.data.audio import load_audio
from mmseq.data.manifest import Utterance, read_manifest, write_manifest
from mmseq.errors import ConfigError, InputError

FIELD = "xvector"  # extra.xvector: the contract the SpeechT5 speech tasks read
SUFFIX = ".xvector.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def speaker_encoder(model: nn.Module | str | Path, where: str) -> nn.Module:
    """A model with ``embed(wav, lengths)`` that reads waveforms, loaded from ``model`` when it is a path."""
    if isinstance(model, (str, Path)):
        model = load(model)
    if not callable(getattr(model, "embed", None)) or getattr(model, "reads", None) != "waveform":
        builder = getattr(model, "mmseq_config", {}).get("builder", type(model).__name__)
        raise ConfigError(f"{where} ({builder}) is not a speaker encoder: embed-speakers needs an x-vector model "
                          "(an xvector_* checkpoint or a SpeechBrain x-vector folder)")
    return model


def npy_names(utterances: list[Utterance]) -> list[str]:
    """A file name per utterance id (characters other than letters, digits, ``._-`` become ``_``), unique."""
    names = [_UNSAFE.sub("_", u.id) + ".npy" for u in utterances]
    seen: dict[str, str] = {}
    for utt, name in zip(utterances, names):
        if name in seen:
            raise InputError(f"utterance ids {seen[name]!r} and {utt.id!r} map to the same file name {name!r}")
        seen[name] = utt.id
    return names


@torch.no_grad()
def embed_speakers(manifest: str | Path, model: nn.Module | str | Path, out_dir: str | Path | None = None,
                   batch_size: int = 16, device: str | torch.device | None = None, progress: bool = True) -> Path:
    """Write every utterance's x-vector and a manifest that names them (see the module notes).

    Args:
        manifest: a JSONL speech manifest (:mod:`mmseq.data.manifest`).
        model: a loaded speaker encoder, or its checkpoint (mmseq or SpeechBrain folder).
        out_dir: where the ``.npy`` files and the new manifest go; default: the manifest's folder.
        batch_size: utterances per batch.
        device: default CUDA when available.
        progress: show a tqdm bar.

    Returns:
        The new manifest's path, ``out_dir / "<stem>.xvector.jsonl"``.

    Raises:
        InputError: the manifest is missing or invalid, or an audio file cannot be read (named).
        CheckpointError: the model folder is missing or not a checkpoint.
        ConfigError: the model is not a speaker encoder, or ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    manifest = Path(manifest)
    utterances = read_manifest(manifest)  # InputError names a missing or bad manifest
    encoder = speaker_encoder(model, f"model {str(model)!r}" if isinstance(model, (str, Path)) else "the model")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = encoder.to(device).eval()
    out = Path(out_dir) if out_dir is not None else manifest.parent
    stem = manifest.name.removesuffix(".jsonl")
    folder = out / "xvectors" / stem
    folder.mkdir(parents=True, exist_ok=True)
    names = npy_names(utterances)
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].duration)  # similar lengths per batch
    rate = int(getattr(encoder, "sample_rate", 16000))
    bar = tqdm(total=len(utterances), desc="embed speakers", unit="utt", disable=not progress)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        waves = [load_audio(utterances[i].audio, rate) for i in rows]  # InputError names the file
        lengths = torch.tensor([w.numel() for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))
        for j, w in enumerate(waves):
            batch[j, : w.numel()] = w
        embeddings = encoder.embed(batch.to(device), lengths.to(device)).float().cpu().numpy()
        for j, i in enumerate(rows):
            np.save(folder / names[i], embeddings[j].astype(np.float32))
        bar.update(len(rows))
    bar.close()
    relative = Path("xvectors") / stem
    embedded = [replace(u, extra={**(u.extra or {}), FIELD: (relative / name).as_posix()})
                for u, name in zip(utterances, names)]
    return write_manifest(out / f"{stem}{SUFFIX}", embedded)


def read_xvector(manifest: str | Path, utterance: Utterance) -> np.ndarray:
    """The x-vector an ``embed-speakers`` manifest names for ``utterance`` (its ``extra.xvector``, relative to the
    manifest's folder)."""
    value = (utterance.extra or {}).get(FIELD)
    if not isinstance(value, str):
        raise InputError(f"utterance {utterance.id!r} of {str(manifest)!r} has no extra.{FIELD}; run "
                         "`mmseq data embed-speakers` on the manifest")
    path = Path(value) if Path(value).is_absolute() else Path(manifest).parent / value
    if not path.is_file():
        raise InputError(f"x-vector file {str(path)!r} of utterance {utterance.id!r} does not exist")
    return np.load(path, allow_pickle=False)


def _run(args: argparse.Namespace) -> int:
    path = embed_speakers(args.manifest, args.model, args.out, batch_size=args.batch_size, device=args.device,
                          progress=not args.no_progress)
    print(f"wrote the x-vectors of {args.manifest} under {path.parent / 'xvectors'}; manifest: {path}")
    return 0


def add_parser(data_subparsers: argparse._SubParsersAction) -> None:
    """Register ``mmseq data embed-speakers`` (the cli layer adds it to ``mmseq data``: the data layer cannot
    import models)."""
    p = data_subparsers.add_parser("embed-speakers", help="write a speaker x-vector (.npy) per utterance and a "
                                                          "manifest with extra.xvector")
    p.add_argument("manifest", help="a JSONL speech manifest")
    p.add_argument("--model", required=True, help="speaker encoder: an xvector_* checkpoint or a SpeechBrain "
                                                  "x-vector folder (spkrec-xvect-voxceleb)")
    p.add_argument("--out", default=None, help="output folder (default: the manifest's folder)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)
