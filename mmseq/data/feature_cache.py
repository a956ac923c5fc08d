"""Features of a whole manifest, extracted once and cached in memory and on disk beside the manifest.

Recipes that train on fixed features (TERA's log-mel) run several times over the same corpus; extracting the
features once per manifest makes every later run start in seconds. The disk cache is ``<manifest>.<tag>.pt`` (a
list of tensors, read with ``torch.load(weights_only=True)``), rebuilt when the manifest is newer than it or holds
another number of utterances; a read-only corpus folder just means extracting again next time.

:class:`ShardedFeatures` is the cache for corpora whose features do not fit in memory (LiMBeR's frozen image
features of CC3M): fixed-size feature arrays, one per item, written in shards of ``shard_size`` items
(``<folder>/shard_<k>.npy``, fp16 by default, beside ``shard_<k>.json``, the keys that identify its items) and read
back through memory maps opened only when an item of the shard is read, so memory holds what was read, not the
corpus. A shard whose keys changed (an image rewritten) is computed again; the others are kept, so an interrupted
fill resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.atomic import atomic_file
from mmseq.data.audio import load_audio
from mmseq.data.manifest import Utterance
from mmseq.errors import ConfigError, InputError

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


SHARD_DTYPES = ("float16", "float32")


class ShardedFeatures:
    """Per-item features of one shape, in shards on disk, read lazily.

    Args:
        folder: where the shards live (name it after what computed them: another extractor, another folder).
        keys: one JSON-serialisable key per item (e.g. ``[path, size, mtime_ns]``); a shard is valid only for the
            same keys in the same order.
        shard_size: items per shard.
        dtype: ``"float16"`` (half the disk of fp32) or ``"float32"``.

    ``store[i]`` is item ``i``'s features ``[*shape]``, ``store[indices]`` (a sequence or 1-D tensor) is
    ``[len(indices), *shape]``, both float32 tensors. :meth:`fill` computes the shards that are missing or stale.
    """

    def __init__(self, folder: str | Path, keys: Sequence[Any], shard_size: int = 4096, dtype: str = "float16"):
        if shard_size < 1:
            raise ConfigError(f"feature shard size must be >= 1, got {shard_size}")
        if dtype not in SHARD_DTYPES:
            raise ConfigError(f"feature shard dtype {dtype!r}: expected one of {list(SHARD_DTYPES)}")
        self.folder, self.keys, self.shard_size, self.dtype = Path(folder), list(keys), shard_size, dtype
        self.opened: dict[int, np.ndarray] = {}  # shard -> its memory map, once an item of it was read

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_shards(self) -> int:
        return -(-len(self.keys) // self.shard_size)

    def _rows(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, len(self.keys)))

    def _files(self, shard: int) -> tuple[Path, Path]:
        return self.folder / f"shard_{shard:06d}.npy", self.folder / f"shard_{shard:06d}.json"

    def is_valid(self, shard: int) -> bool:
        """The shard's files exist, hold its items' keys, and its array has one row per item in the store's dtype."""
        array, index = self._files(shard)
        if not (array.is_file() and index.is_file()):
            return False
        try:
            if json.loads(index.read_text()) != json.loads(json.dumps(self.keys[self._rows(shard).start:
                                                                                  self._rows(shard).stop])):
                return False
            data = np.load(array, mmap_mode="r")
        except (OSError, ValueError):
            return False
        return data.shape[0] == len(self._rows(shard)) and data.dtype == np.dtype(self.dtype)

    def fill(self, compute: Callable[[list[int]], Any]) -> list[int]:
        """Compute and write every missing or stale shard: ``compute(items) -> [len(items), *shape]`` (a tensor or
        array) for a shard's item indices. Returns the shards computed. Each shard is written atomically, its
        array before its keys, so a shard either is complete or is computed again."""
        done = []
        for shard in range(self.num_shards):
            if self.is_valid(shard):
                continue
            rows = list(self._rows(shard))
            values = compute(rows)
            values = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
            if values.shape[0] != len(rows):
                raise InputError(f"feature shard {shard}: computed {values.shape[0]} rows for {len(rows)} items")
            with np.errstate(over="ignore"):  # an overflow is reported just below, naming the shard
                stored = values.astype(self.dtype)
            if not np.isfinite(stored).all() and np.isfinite(values).all():
                raise InputError(f"features of shard {shard} exceed {self.dtype}'s range (largest magnitude "
                                 f"{float(np.abs(values).max()):.4g}); store them as float32")
            array, index = self._files(shard)
            with atomic_file(array) as f:
                np.save(f, stored)
            with atomic_file(index, "w", encoding="utf-8") as f:
                json.dump(self.keys[rows[0] : rows[-1] + 1], f)
            self.opened.pop(shard, None)
            done.append(shard)
        return done

    def _open(self, shard: int) -> np.ndarray:
        if shard not in self.opened:
            path = self._files(shard)[0]
            if not path.is_file():
                raise InputError(f"feature shard {path} is missing: fill the store before reading it")
            self.opened[shard] = np.load(path, mmap_mode="r")
        return self.opened[shard]

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, (int, np.integer)) or (isinstance(index, Tensor) and index.dim() == 0):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"item {i} out of range for {len(self)} items")
            i %= len(self)
            return torch.from_numpy(np.array(self._open(i // self.shard_size)[i % self.shard_size],
                                             dtype=np.float32))
        items = [int(i) for i in (index.tolist() if isinstance(index, Tensor) else index)]
        if not items:
            raise InputError("no items to read")
        return torch.stack([self[i] for i in items])
