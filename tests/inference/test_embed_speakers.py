"""``mmseq data embed-speakers`` end to end on a tiny manifest: files, the ``extra.xvector`` field, values equal to
the model's embedding of each utterance alone (whatever the batch size), and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import mmseq
from mmseq.cli import main
from mmseq.data.audio import load_audio
from mmseq.data.manifest import read_manifest
from mmseq.inference.speaker import embed_speakers, read_xvector


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = []
    for i, seconds in enumerate([0.4, 1.1, 0.25, 0.7, 0.9]):
        n = int(seconds * 16000)
        wav = (0.2 * np.sin(2 * np.pi * (150 + 40 * i) * np.arange(n) / 16000) + 0.01 * rng.standard_normal(n))
        name = f"wav/spk{i % 2}/utt {i}.wav"  # a space in the name, and ids with a slash
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, wav.astype(np.float32), 16000)
        lines.append({"id": f"spk{i % 2}/utt{i}", "audio": name, "duration": n / 16000, "speaker": f"spk{i % 2}",
                      "text": "hello", "extra": {"kind": "sentence"}})
    (root / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = mmseq.create_model("xvector_tiny")
    return mmseq.save_pretrained(model, tmp_path_factory.mktemp("models") / "xvector")


def test_writes_one_normalised_xvector_per_utterance_and_the_manifest_field(corpus, encoder_dir, capsys):
    assert main(["data", "embed-speakers", str(corpus / "train.jsonl"), "--model", str(encoder_dir),
                 "--batch-size", "2", "--no-progress"]) == 0
    out = corpus / "train.xvector.jsonl"
    assert str(out) in capsys.readouterr().out
    original, embedded = read_manifest(corpus / "train.jsonl"), read_manifest(out)
    model = mmseq.load(encoder_dir).eval()
    assert [u.id for u in embedded] == [u.id for u in original]
    raw = [json.loads(line) for line in out.read_text().splitlines()]
    for utt, before, line in zip(embedded, original, raw):
        assert line["audio"] == before.audio.removeprefix(str(corpus) + "/")  # still relative to the folder
        assert utt.text == before.text and utt.extra["kind"] == "sentence"
        relative = utt.extra["xvector"]
        assert relative.startswith("xvectors/train/") and not relative.startswith("/")
        vector = np.load(corpus / relative)
        assert vector.shape == (512,) and vector.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vector), 1.0, atol=1e-5)
        with torch.no_grad():  # equal to embedding the utterance alone, although it was batched with others
            alone = model.embed(load_audio(before.audio)[None])[0].numpy()
        np.testing.assert_allclose(vector, alone, atol=1e-6)
        np.testing.assert_array_equal(read_xvector(out, utt), vector)


def test_out_folder_elsewhere_and_batch_size_do_not_change_the_values(corpus, encoder_dir, tmp_path):
    one = embed_speakers(corpus / "train.jsonl", encoder_dir, tmp_path / "one", batch_size=1, progress=False)
    five = embed_speakers(corpus / "train.jsonl", mmseq.load(encoder_dir), tmp_path / "five", batch_size=5,
                          progress=False)
    assert one == tmp_path / "one" / "train.xvector.jsonl"
    for a, b in zip(read_manifest(one), read_manifest(five), strict=True):
        assert a.audio == b.audio and load_audio(a.audio).numel() > 0  # the audio paths still resolve
        np.testing.assert_allclose(read_xvector(one, a), read_xvector(five, b), atol=1e-6)


def test_missing_inputs_and_wrong_models_are_one_line_errors(corpus, encoder_dir, tmp_path, capsys):
    assert main(["data", "embed-speakers", str(tmp_path / "nope.jsonl"), "--model", str(encoder_dir)]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main(["data", "embed-speakers", str(corpus / "train.jsonl"), "--model", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    text_model = mmseq.save_pretrained(mmseq.create_model("text_transformer_tiny"), tmp_path / "text")
    assert main(["data", "embed-speakers", str(corpus / "train.jsonl"), "--model", str(text_model)]) == 2
    assert "is not a speaker encoder" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "a", "audio": str(tmp_path / "missing.wav"), "duration": 1.0}) + "\n")
    assert main(["data", "embed-speakers", str(broken), "--model", str(encoder_dir), "--no-progress"]) == 2
    assert "missing.wav" in capsys.readouterr().err
