"""``mmseq data units`` (MFCC k-means units beside a manifest, deterministic for a seed) and ``mmseq data synth
text`` (grammar sentences, one per line, test transcripts excluded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmseq.cli import main
from mmseq.data.units import mfcc_features, read_units, units_path
from mmseq.errors import ConfigError


def _manifest(root: Path, name: str, seed: int, count: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        n = int(rng.integers(6000, 12000))
        t = np.arange(n) / 16000
        f = [200.0, 600.0, 1500.0][i % 3]
        wav = (0.3 * np.sin(2 * np.pi * f * t) * (t < n / 32000) + 0.3 * np.sin(2 * np.pi * 2 * f * t) * (t >= n / 32000)
               + 0.01 * rng.standard_normal(n)).astype(np.float32)
        sf.write(root / f"{name}_{i}.wav", wav, 16000)
        lines.append({"id": f"{name}_{i}", "audio": f"{name}_{i}.wav", "duration": n / 16000, "text": "a b"})
    path = root / f"{name}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_mfcc_features_are_13_coefficients_with_deltas_at_the_hop():
    wav = torch.randn(16000) * 0.1
    feats = mfcc_features(wav, hop=320)
    assert feats.shape == (1 + (16000 - 400) // 320, 39)  # Kaldi frames of 25 ms every 20 ms
    # the deltas are torchaudio's of the first 13
    import torchaudio

    assert torch.allclose(feats[:, 13:26].t(), torchaudio.functional.compute_deltas(feats[:, :13].t()), atol=1e-5)


def test_units_are_written_beside_each_manifest_frame_aligned_and_deterministic_for_a_seed(tmp_path):
    train, dev = _manifest(tmp_path, "train", 0), _manifest(tmp_path, "dev", 1, count=2)
    args = ["data", "units", str(train), str(dev), "--features", "mfcc", "--clusters", "8", "--hop", "320"]
    assert main([*args, "--seed", "3"]) == 0
    rows, meta = read_units(train, "mfcc_km8")
    first = units_path(train, "mfcc_km8").read_bytes(), units_path(dev, "mfcc_km8").read_bytes()
    assert meta["clusters"] == 8 and meta["hop"] == 320 and len(rows) == 4
    durations = [json.loads(line)["duration"] for line in train.read_text().splitlines()]
    for row, seconds in zip(rows, durations):
        samples = round(seconds * 16000)
        assert len(row) == 1 + (samples - 400) // 320  # one unit per encoder frame of 20 ms
        assert all(0 <= v < 8 for v in row)
    assert len({v for row in rows for v in row}) > 2  # the tones fall into different clusters
    assert main([*args, "--seed", "3"]) == 0
    assert (units_path(train, "mfcc_km8").read_bytes(), units_path(dev, "mfcc_km8").read_bytes()) == first
    assert (tmp_path / "train.jsonl.mfcc_km8.centroids.npy").is_file()
    # the dev units come from the training centroids
    centroids = np.load(tmp_path / "train.jsonl.mfcc_km8.centroids.npy")
    dev_rows, _ = read_units(dev, "mfcc_km8")
    import soundfile

    wav, _ = soundfile.read(tmp_path / "dev_0.wav", dtype="float32")
    feats = mfcc_features(torch.from_numpy(wav)).numpy()
    nearest = ((feats[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert nearest.tolist() == dev_rows[0]


def test_units_reject_bad_arguments(tmp_path):
    train = _manifest(tmp_path, "train", 0, count=1)
    with pytest.raises(ConfigError, match="--features"):
        from mmseq.data.units import learn_units

        learn_units([train], features="nonsense", clusters=4)
    assert main(["data", "units", str(tmp_path / "missing.jsonl")]) == 2


def test_synth_text_writes_grammar_sentences_without_the_excluded_transcripts(tmp_path):
    out = tmp_path / "text.txt"
    assert main(["data", "synth", "text", "--out", str(out), "--sentences", "50", "--seed", "1"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 50 and all(line == line.lower() and line.strip() for line in lines)
    from mmseq.data.synth.sentences import vocabulary

    words = vocabulary()
    assert all(w in words for line in lines for w in line.split())
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "audio": "x.wav", "duration": 1.0, "text": t}) + "\n"
                                for i, t in enumerate(lines[:10])))
    again = tmp_path / "again.txt"
    assert main(["data", "synth", "text", "--out", str(again), "--sentences", "50", "--seed", "1",
                 "--exclude", str(manifest)]) == 0
    kept = again.read_text().splitlines()
    assert len(kept) == 50 and not set(kept) & set(lines[:10])
    assert main(["data", "synth", "text", "--out", str(out), "--sentences", "50", "--seed", "1"]) == 0
    assert out.read_text().splitlines() == lines  # a seed fixes the file
