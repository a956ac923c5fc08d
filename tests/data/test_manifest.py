"""Manifests: round trips, validation messages, the dataset, collation and ``mmseq data stats``."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from mmseq.data import manifest as manifest_module
from mmseq.data.manifest import (
    AudioDataset,
    Segment,
    SpeechCollator,
    Utterance,
    read_manifest,
    write_manifest,
)
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import InputError


def _write_wav(path, seconds: float, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(1).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32), rate)


@pytest.fixture
def corpus(tmp_path):
    """Three utterances under tmp_path/wav and a manifest in tmp_path."""
    for name, seconds in [("a", 0.5), ("b", 0.25), ("c", 0.75)]:
        _write_wav(tmp_path / "wav" / f"{name}.wav", seconds)
    _write_wav(tmp_path / "clean" / "a.wav", 0.5)
    lines = [
        {"id": "a", "audio": "wav/a.wav", "duration": 0.5, "text": "hello there", "speaker": "s1",
         "target_audio": "clean/a.wav", "snr": 5,
         "phones": [{"phone": "HH", "start": 0.0, "end": 0.1}], "words": [{"word": "hello", "start": 0, "end": 0.3}]},
        {"id": "b", "audio": "wav/b.wav", "duration": 0.25, "text": "hi", "speaker": "s2", "intent": "greet"},
        {"id": "c", "audio": str(tmp_path / "wav" / "c.wav"), "duration": 0.75, "text": "good day",
         "speaker": "s1", "translation": "guten tag", "extra": {"lang": "en"}},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    return path


def test_read_resolves_paths_and_types(corpus, tmp_path):
    utts = read_manifest(corpus)
    assert [u.id for u in utts] == ["a", "b", "c"]
    a = utts[0]
    assert a.audio == str(tmp_path.resolve() / "wav" / "a.wav")
    assert a.target_audio == str(tmp_path.resolve() / "clean" / "a.wav")
    assert a.phones == [Segment("HH", 0.0, 0.1)] and a.words == [Segment("hello", 0.0, 0.3)]
    assert a.snr == 5.0 and isinstance(a.snr, float)
    assert utts[1].intent == "greet" and utts[1].translation is None
    assert utts[2].extra == {"lang": "en"}


def test_write_read_round_trip_keeps_paths_relative(corpus, tmp_path):
    utts = read_manifest(corpus)
    out = tmp_path / "copy.jsonl"
    write_manifest(out, utts)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["audio"] == "wav/a.wav" and "intent" not in first
    assert read_manifest(out) == utts
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left
    with pytest.raises(InputError, match="duplicate utterance id 'a'"):
        write_manifest(out, [utts[0], utts[0]])


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"m\.jsonl:2: not valid JSON"),
        ('["a"]', r"m\.jsonl:2: each line must be a JSON object"),
        ('{"id": "x", "audio": "x.wav"}', r"m\.jsonl:2: missing required field 'duration'"),
        ('{"id": "x", "audio": "x.wav", "duration": -1}', r"m\.jsonl:2: field 'duration' must be > 0"),
        ('{"id": "x", "audio": "x.wav", "duration": "1.0"}', r"m\.jsonl:2: field 'duration' must be a finite"),
        ('{"id": "x", "audio": "x.wav", "duration": 1, "durration": 1}',
         r"m\.jsonl:2: unknown manifest field 'durration'\. Did you mean 'duration'\?"),
        ('{"id": "", "audio": "x.wav", "duration": 1}', r"m\.jsonl:2: field 'id' must be a non-empty string"),
        ('{"id": "x", "audio": "x.wav", "duration": 1, "speaker": 7}', r"m\.jsonl:2: field 'speaker' must be"),
        ('{"id": "x", "audio": "x.wav", "duration": 1, "phones": [{"phone": "a", "start": 2, "end": 1}]}',
         r"m\.jsonl:2: phones\[0\] needs 0 <= start <= end"),
        ('{"id": "x", "audio": "x.wav", "duration": 1, "words": [{"w": "a", "start": 0, "end": 1}]}',
         r"m\.jsonl:2: words\[0\] must be an object with keys 'word'"),
        ('{"id": "ok", "audio": "x.wav", "duration": 1}', r"m\.jsonl:2: duplicate id 'ok' \(first on line 1\)"),
    ],
)
def test_validation_names_line_and_field(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "ok", "audio": "x.wav", "duration": 1}\n' + line + "\n")
    with pytest.raises(InputError, match=message):
        read_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(InputError, match=r"manifest not found: .*none\.jsonl"):
        read_manifest(tmp_path / "none.jsonl")


def test_dataset_items_and_collate(corpus):
    dataset = AudioDataset(corpus)
    assert len(dataset) == 3 and dataset.durations == [0.5, 0.25, 0.75]
    item = dataset[0]
    assert item["audio"].shape == (8000,) and item["target_audio"].shape == (8000,)
    assert item["text"] == "hello there" and item["speaker"] == "s1"
    assert dataset[1]["target_audio"] is None

    tokenizer = SpeechT5CharTokenizer.train(["hello there hi good day"])
    batch = SpeechCollator(tokenizer=tokenizer)([dataset[i] for i in range(3)])
    assert batch["audio"].shape == (3, 12000)
    assert batch["audio_lengths"].tolist() == [8000, 4000, 12000]
    assert (batch["audio"][1, 4000:] == 0).all()
    torch.testing.assert_close(batch["audio"][0, :8000], item["audio"])
    assert "target_audio" not in batch  # only some items have it
    expected_ids, expected_lengths = tokenizer.batch_encode(["hello there", "hi", "good day"])
    assert torch.equal(batch["text_ids"], expected_ids) and torch.equal(batch["text_lengths"], expected_lengths)
    assert batch["id"] == ["a", "b", "c"] and batch["intent"] == [None, "greet", None]
    assert batch["translation"] == [None, None, "guten tag"] and batch["skipped"] == 0


def test_collate_target_audio_when_all_items_have_it(corpus):
    dataset = AudioDataset(corpus)
    batch = SpeechCollator()([dataset[0], dataset[0]])
    assert batch["target_audio"].shape == (2, 8000) and batch["target_audio_lengths"].tolist() == [8000, 8000]
    assert "text_ids" not in batch


def test_bad_audio_raises_by_default_and_is_skipped_with_a_warning(corpus, tmp_path):
    (tmp_path / "wav" / "b.wav").write_bytes(b"broken")
    strict = AudioDataset(corpus)
    with pytest.raises(InputError, match=r"utterance 'b': cannot read audio file .*b\.wav"):
        strict[1]
    lenient = AudioDataset(corpus, skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipping utterance 'b': cannot read audio file .*b\.wav"):
        items = [lenient[i] for i in range(3)]
    assert items[1] is None and lenient.skipped == 1
    batch = SpeechCollator()(items)
    assert batch["id"] == ["a", "c"] and batch["skipped"] == 1 and batch["audio"].shape == (2, 12000)


def test_too_long_audio_is_bad(corpus):
    dataset = AudioDataset(corpus, max_seconds=0.6, skip_bad=True)
    with pytest.warns(UserWarning, match="more than max_seconds=0.6"):
        assert dataset[2] is None
    assert dataset.skipped == 1


def test_stats_command(corpus, capsys):
    parser = argparse.ArgumentParser()
    manifest_module.add_parser(parser.add_subparsers(dest="data_command"))
    args = parser.parse_args(["stats", str(corpus), "--bins", "3"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "utterances: 3" in out
    assert "hours: 0.000" in out and "speakers: 2 (utterances per speaker: min 1, max 2)" in out
    assert "duration (s): min 0.25, mean 0.50, max 0.75" in out
    assert "text length histogram (3 with text):" in out
    assert len([line for line in out.splitlines() if line.rstrip().endswith("#")]) >= 2


def test_utterance_to_json_skips_none():
    utt = Utterance(id="x", audio=os.path.join("a", "b.wav"), duration=1.5, words=[Segment("hi", 0.0, 0.5)])
    assert utt.to_json() == {"id": "x", "audio": os.path.join("a", "b.wav"), "duration": 1.5,
                             "words": [{"word": "hi", "start": 0.0, "end": 0.5}]}


def test_dataloader_with_length_buckets_and_ddp_shards(corpus):
    from torch.utils.data import DataLoader

    from mmseq.data.samplers import ShardedBatchSampler
    from mmseq.data.samplers import LengthBucketBatches

    dataset = AudioDataset(corpus)
    plan = LengthBucketBatches(dataset.durations, max_total=1.0, min_items=2, seed=1)
    seen = []
    for rank in range(2):
        loader = DataLoader(dataset, batch_sampler=ShardedBatchSampler(plan, 0, rank=rank, world_size=2),
                            collate_fn=SpeechCollator())
        for batch in loader:
            assert batch["audio"].shape[0] == len(batch["id"]) == batch["audio_lengths"].numel()
            seen += batch["id"]
    assert sorted(seen) == ["a", "b", "c"]
