"""``mmseq data units MANIFEST [MORE ...] --features mfcc|MODEL:LAYER --clusters K``: discrete speech units, the
targets of HuBERT-style masked prediction (SpeechT5 pre-training).

As fairseq's ``examples/hubert/simple_kmeans``: frame features of the first manifest's utterances (a random share
``--percent`` of them) train scikit-learn's ``MiniBatchKMeans`` (k-means++ init, batches of 10000, 100 iterations,
tolerance 0, 100 batches without improvement, 20 inits, no reassignment), then every frame of every manifest given
gets its nearest centroid. Features:

* ``mfcc`` -- HuBERT's first iteration: 13 Kaldi MFCCs (``torchaudio.compliance.kaldi.mfcc``, no energy, no dither)
  with deltas and delta-deltas (``torchaudio.functional.compute_deltas``), 39 per frame, computed with a frame
  shift of ``--hop`` samples (the encoder's frame rate: 320 = 20 ms for SpeechT5's waveform convolutions) and
  windows of 25 ms (or the hop, when longer);
* ``MODEL:LAYER`` -- the second iteration: hidden states of layer ``LAYER`` of a trained model (``forward_features``
  of any checkpoint ``mmseq.load`` reads), at that model's frame rate. Higher layers provide this source
  (:func:`register_feature_source`; ``import mmseq`` registers the model one).

Written beside each manifest (``TAG`` = ``--tag``, default ``<features>_km<K>``):

* ``<manifest>.<TAG>.km`` -- one line per manifest line, that utterance's unit ids separated by spaces, one per
  frame of ``hop`` samples;
* ``<manifest>.<TAG>.json`` -- features, clusters, hop, seed, frames, and the centroids' file;
* ``<first manifest>.<TAG>.centroids.npy`` -- the ``[K, D]`` centroids.

The same manifests, features and seed give the same files.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmseq.atomic import atomic_file, atomic_write_text
from mmseq.data.audio import load_audio
from mmseq.data.manifest import read_manifest
from mmseq.errors import ConfigError, InputError

SAMPLE_RATE = 16000
# fairseq simple_kmeans' MiniBatchKMeans settings
KMEANS_OPTIONS = dict(init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
                      reassignment_ratio=0.0)

# A frame feature function: waveform [S] at 16 kHz -> features [T, D] at `hop` samples per frame.
FrameFeatures = Callable[[torch.Tensor], torch.Tensor]
# Feature sources that higher layers provide: (spec, e.g. "MODEL:LAYER") -> (features, hop in samples).
_SOURCES: list[Callable[[str], tuple[FrameFeatures, int] | None]] = []


def register_feature_source(resolve: Callable[[str], tuple[FrameFeatures, int] | None]) -> None:
    """Add a resolver of ``--features`` specs other than ``mfcc``; it returns None for specs it does not know."""
    _SOURCES.append(resolve)


def mfcc_features(wav: torch.Tensor, hop: int = 320, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """HuBERT's first-iteration features of ``wav [S]``: 13 MFCCs + deltas + delta-deltas, ``[T, 39]``."""
    import torchaudio

    shift_ms = 1000.0 * hop / sample_rate
    window_ms = max(25.0, shift_ms)
    if wav.numel() < int(window_ms * sample_rate / 1000):
        raise InputError(f"audio of {wav.numel()} samples is shorter than one {window_ms:g} ms MFCC window")
    mfcc = torchaudio.compliance.kaldi.mfcc(wav.float()[None], sample_frequency=sample_rate, use_energy=False,
                                            frame_shift=shift_ms, frame_length=window_ms, dither=0.0)
    x = mfcc.t()  # [13, T]
    deltas = torchaudio.functional.compute_deltas(x)
    return torch.cat([x, deltas, torchaudio.functional.compute_deltas(deltas)], dim=0).t().contiguous()


def resolve_features(spec: str, hop: int) -> tuple[FrameFeatures, int]:
    """``(features, hop)`` of a ``--features`` spec."""
    if spec == "mfcc":
        return (lambda wav: mfcc_features(wav, hop)), hop
    for resolve in _SOURCES:
        found = resolve(spec)
        if found is not None:
            return found
    raise ConfigError(f"--features must be 'mfcc' or MODEL:LAYER (a checkpoint and a layer index), got {spec!r}")


def default_tag(spec: str, clusters: int) -> str:
    name = "mfcc" if spec == "mfcc" else Path(spec.rsplit(":", 1)[0]).name + "_l" + spec.rsplit(":", 1)[-1]
    return f"{name}_km{clusters}"


def units_path(manifest: str | os.PathLike, tag: str) -> Path:
    """The unit file of ``manifest`` for ``tag`` (``<manifest>.<tag>.km``)."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.name}.{tag}.km")


def read_units(manifest: str | os.PathLike, tag: str) -> tuple[list[list[int]], dict[str, Any]]:
    """The unit ids of every line of ``manifest`` and their metadata (``hop``, ``clusters``, ...)."""
    path = units_path(manifest, tag)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise InputError(f"no units {str(path)!r}; write them with `mmseq data units {manifest} --features mfcc "
                         "--clusters K --tag TAG`")
    meta = json.loads(meta_path.read_text())
    rows = [[int(v) for v in line.split()] for line in path.read_text().splitlines()]
    return rows, meta


def _features_of(manifest: Path, features: FrameFeatures) -> list[np.ndarray]:
    out = []
    for u in read_manifest(manifest):
        with torch.no_grad():
            out.append(features(load_audio(u.audio, SAMPLE_RATE)).float().cpu().numpy())
    if not out:
        raise InputError(f"{manifest} has no utterances")
    return out


def learn_units(manifests: list[str | os.PathLike], features: str = "mfcc", clusters: int = 100, hop: int = 320,
                seed: int = 0, percent: float = 1.0, tag: str | None = None) -> dict[str, Any]:
    """Learn k-means on the first manifest's frames and write units for every manifest (see the module notes).

    Returns a summary: the tag, the inertia per frame and, per manifest, its utterances and frames."""
    from sklearn.cluster import MiniBatchKMeans

    if clusters < 2:
        raise ConfigError(f"--clusters must be >= 2, got {clusters}")
    if not 0 < percent <= 1:
        raise ConfigError(f"--percent must be in (0, 1], got {percent}")
    paths = [Path(m) for m in manifests]
    for p in paths:
        if not p.is_file():
            raise InputError(f"manifest {str(p)!r} does not exist")
    tag = tag or default_tag(features, clusters)
    extract, frame_hop = resolve_features(features, hop)
    per_manifest = {p: _features_of(p, extract) for p in paths}
    train = per_manifest[paths[0]]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(train), max(1, int(round(percent * len(train)))), replace=False).tolist())
    frames = np.concatenate([train[i] for i in chosen], axis=0)
    if len(frames) < clusters:
        raise InputError(f"{len(frames)} training frames are fewer than --clusters {clusters}")
    kmeans = MiniBatchKMeans(n_clusters=clusters, random_state=seed, **KMEANS_OPTIONS).fit(frames)
    centroids_file = paths[0].with_name(f"{paths[0].name}.{tag}.centroids.npy")
    with atomic_file(centroids_file, "wb") as f:
        np.save(f, kmeans.cluster_centers_.astype(np.float32))
    summary: dict[str, Any] = {"tag": tag, "inertia_per_frame": float(-kmeans.score(frames) / len(frames)),
                               "manifests": {}}
    for p, feats in per_manifest.items():
        labels = [kmeans.predict(f.astype(kmeans.cluster_centers_.dtype)) for f in feats]
        atomic_write_text(units_path(p, tag), "".join(" ".join(map(str, row.tolist())) + "\n" for row in labels))
        meta = {"features": features, "clusters": clusters, "hop": frame_hop, "sample_rate": SAMPLE_RATE,
                "seed": seed, "percent": percent, "learnt_on": paths[0].name, "centroids": centroids_file.name,
                "utterances": len(labels), "frames": int(sum(len(r) for r in labels))}
        atomic_write_text(units_path(p, tag).with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
        summary["manifests"][str(p)] = {"utterances": len(labels), "frames": meta["frames"]}
    return summary


def _run(args: argparse.Namespace) -> int:
    summary = learn_units([args.manifest, *args.more], features=args.features, clusters=args.clusters, hop=args.hop,
                          seed=args.seed, percent=args.percent, tag=args.tag)
    for path, s in summary["manifests"].items():
        print(f"{path}: {s['utterances']} utterances, {s['frames']} frames -> {units_path(path, summary['tag'])}")
    print(f"k-means inertia per frame {summary['inertia_per_frame']:.3f} (tag {summary['tag']})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``units`` under ``mmseq data``."""
    p = subparsers.add_parser("units", help="k-means units of speech frames (HuBERT targets) beside manifests")
    p.add_argument("manifest", help="the manifest whose frames train the k-means (and get units)")
    p.add_argument("more", nargs="*", help="more manifests to label with the same centroids (dev, test)")
    p.add_argument("--features", default="mfcc", help="mfcc (default) or MODEL:LAYER, a checkpoint's hidden layer")
    p.add_argument("--clusters", type=int, default=100, help="k-means clusters (default: 100)")
    p.add_argument("--hop", type=int, default=320,
                   help="samples per unit frame for mfcc: the encoder's downsample rate (default: 320 = 20 ms)")
    p.add_argument("--seed", type=int, default=0, help="seed of the frame sample and k-means (default: 0)")
    p.add_argument("--percent", type=float, default=1.0, help="share of utterances that train k-means (default: 1)")
    p.add_argument("--tag", default=None, help="name of the unit files (default: <features>_km<K>)")
    p.set_defaults(run=_run)
