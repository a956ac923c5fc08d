"""Per-manifest feature cache: extracted once, reused from memory and disk, rebuilt when the manifest changes."""

import json
import os

import numpy as np
import soundfile as sf
import torch

from mmseq.data import feature_cache
from mmseq.data.features import TeraLogMel
from mmseq.data.manifest import read_manifest


class CountingExtractor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls, self.inner = 0, TeraLogMel()

    def forward(self, wav, lengths=None):
        self.calls += 1
        return self.inner(wav, lengths)


def test_features_are_extracted_once_and_rebuilt_when_the_manifest_is_newer(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(2):
        sf.write(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(4000 + 800 * i)).astype(np.float32), 16000)
        lines.append({"id": str(i), "audio": f"{i}.wav", "duration": (4000 + 800 * i) / 16000})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    utts = read_manifest(manifest)
    extractor = CountingExtractor()
    first = feature_cache.manifest_features(utts, manifest, extractor, "logmel")
    assert extractor.calls == 2 and [f.shape for f in first] == [(26, 80), (31, 80)]
    assert (tmp_path / "train.jsonl.logmel.pt").is_file()
    assert feature_cache.manifest_features(utts, manifest, extractor, "logmel") is first  # memory
    monkeypatch.setattr(feature_cache, "_MEMORY", {})
    again = feature_cache.manifest_features(utts, manifest, extractor, "logmel")  # disk
    assert extractor.calls == 2 and all(torch.equal(a, b) for a, b in zip(first, again))
    monkeypatch.setattr(feature_cache, "_MEMORY", {})
    later = os.stat(manifest).st_mtime + 10
    os.utime(manifest, (later, later))  # the manifest changed after the cache was written
    feature_cache.manifest_features(utts, manifest, extractor, "logmel")
    assert extractor.calls == 4
