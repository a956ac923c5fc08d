"""Features of a whole manifest, extracted once and cached in memory and on disk beside the manifest.

Recipes that train on fixed features (TERA's log-mel) run several times over the same corpus; extracting the
features once per manifest makes every later run start in seconds. The disk cache is ``<manifest>.<tag>.pt`` (a
list of tensors, read with ``torch.load(weights_only=True)``), rebuilt when the manifest is newer than it or holds
another number of utterances; a read-only corpus folder just means extracting again next time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.atomic import atomic_file
from mmseq.data.audio import load_audio
from mmseq.data.manifest import Utterance

_MEMORY: dict[tuple[str, str, int], list[Tensor]] = {}


def manifest_features(utterances: Sequence[Utterance], manifest: str | Path, extractor: nn.Module, tag: str,
                      sample_rate: int = 16000) -> list[Tensor]:
    """``extractor(waveform [1, S]) -> (frames [1, T, F], lengths)`` of every utterance, as ``[T_i, F]`` tensors.

    Args:
        utterances: the manifest's utterances (``read_manifest(manifest)``).
        manifest: the manifest file (names the cache and dates it).
        extractor: the feature front-end (e.g. :class:`mmseq.data.features.TeraLogMel`).
        tag: names the features in the cache file (change it when the extractor changes).
        sample_rate: the rate audio is loaded at.
    """
    manifest = Path(manifest)
    key = (str(manifest.resolve()), tag, len(utterances))
    if key in _MEMORY:
        return _MEMORY[key]
    disk = manifest.with_name(f"{manifest.name}.{tag}.pt")
    feats = None
    if disk.is_file() and disk.stat().st_mtime >= manifest.stat().st_mtime:
        cached = torch.load(disk, weights_only=True)
        if isinstance(cached, list) and len(cached) == len(utterances):
            feats = cached
    if feats is None:
        feats = []
        with torch.no_grad():
            for utt in utterances:
                frames, _ = extractor(load_audio(utt.audio, sample_rate)[None, :])
                feats.append(frames[0].clone())
        try:
            with atomic_file(disk) as f:
                torch.save(feats, f)
        except OSError:
            pass  # a read-only corpus: extract again next time
    _MEMORY[key] = feats
    return feats
