import json

import pytest
import torch

import mmseq
from mmseq import checkpoint
from mmseq.errors import CheckpointError


@pytest.fixture
def model():
    torch.manual_seed(0)
    return mmseq.create_model("text_transformer_tiny").eval()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_files_and_tied_weights(model, tmp_path):
    mmseq.save_pretrained(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["builder"] == "text_transformer_tiny"
    loaded = mmseq.load(tmp_path / "ckpt")
    assert _same_weights(model, loaded)
    # The LM head is still tied to the decoder embedding after loading.
    assert loaded.decoder_postnet.lm_head.weight is loaded.decoder_prenet.embed_tokens.weight


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_interrupted_write_leaves_previous_checkpoint_loadable(model, tmp_path, monkeypatch, exchange):
    target = tmp_path / "ckpt"
    mmseq.save_pretrained(model, target)
    other = mmseq.create_model("text_transformer_tiny")
    if not exchange:
        monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)

    def crash(module, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)  # part of the weights, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        mmseq.save_pretrained(other, target)
    assert _same_weights(model, mmseq.load(target))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # the temporary directory was removed
    monkeypatch.undo()
    if not exchange:
        monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)
    mmseq.save_pretrained(other, target)  # a later write replaces it whole
    assert _same_weights(other, mmseq.load(target))


def test_swap_interrupted_between_renames_is_recovered(model, tmp_path):
    target = tmp_path / "ckpt"
    mmseq.save_pretrained(model, target)
    target.rename(tmp_path / "ckpt.old")  # state after the first of the two fallback renames
    assert _same_weights(model, mmseq.load(target))


def test_truncated_weights_are_reported_not_loaded(model, tmp_path):
    mmseq.save_pretrained(model, tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="incomplete.*model.safetensors has"):
        mmseq.load(tmp_path / "ckpt")


def test_directory_without_config_is_not_a_checkpoint(model, tmp_path):
    (tmp_path / "half").mkdir()
    torch.save(model.state_dict(), tmp_path / "half" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="has no config.json"):
        mmseq.load(tmp_path / "half")
    with pytest.raises(CheckpointError, match="does not exist"):
        mmseq.load(tmp_path / "missing")


def test_weights_that_do_not_fit_are_named(model, tmp_path):
    mmseq.save_pretrained(model, tmp_path / "ckpt")
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["args"]["encoder_layers"] = 3
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit.*missing.*encoder.layers.2"):
        mmseq.load(tmp_path / "ckpt")


def test_model_not_from_registry_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="not built by mmseq.create_model"):
        mmseq.save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_a_tokenizer_that_does_not_fit_the_vocabulary_is_refused_at_load(tmp_path):
    from mmseq.data.tokenizers import SpeechT5CharTokenizer

    tokenizer = SpeechT5CharTokenizer.train(["hello world", "turn on the lights"])
    model = mmseq.create_model("speecht5_asr_tiny", vocab_size=len(tokenizer))
    model.tokenizer = tokenizer
    mmseq.save_pretrained(model, tmp_path / "fits")
    assert len(mmseq.load(tmp_path / "fits").tokenizer) == len(tokenizer)
    wrong = mmseq.create_model("speecht5_asr_tiny")  # the default 81-token vocabulary
    wrong.tokenizer = tokenizer
    mmseq.save_pretrained(wrong, tmp_path / "wrong")
    with pytest.raises(CheckpointError, match=f"tokenizer of .* has {len(tokenizer)} tokens but the model's "
                                              "decoder_prenet has a vocabulary of 81"):
        mmseq.load(tmp_path / "wrong")


def test_loading_follows_no_path_recorded_in_the_config(tmp_path, monkeypatch):
    # A probe built around a loaded upstream records the upstream's spec; moving everything keeps it loadable.
    upstream = mmseq.create_model("tera_tiny")
    mmseq.save_pretrained(upstream, tmp_path / "up")
    probe = mmseq.create_model("tera_downstream", upstream=mmseq.load(tmp_path / "up"), num_classes=3)
    mmseq.save_pretrained(probe, tmp_path / "probe")
    config = json.loads((tmp_path / "probe" / "config.json").read_text())
    assert config["args"]["upstream"] == {"builder": "tera_tiny", "args": {}}
    (tmp_path / "up").rename(tmp_path / "gone")
    monkeypatch.chdir(tmp_path / "gone")
    loaded = mmseq.load(tmp_path / "probe")
    assert _same_weights(probe, loaded)


def test_class_names_travel_with_the_checkpoint_into_the_pipeline(tmp_path):
    model = mmseq.create_model("speecht5_sid_tiny")
    model.labels = [f"spk{i:02d}" for i in range(5)]
    mmseq.save_pretrained(model, tmp_path / "sid")
    assert mmseq.load(tmp_path / "sid").labels == model.labels
    pipe = mmseq.pipeline("sid", model=str(tmp_path / "sid"))
    result = pipe(torch.randn(16000).numpy(), sampling_rate=16000)
    assert result["label"] in model.labels
    (tmp_path / "sid" / "labels.json").write_text('{"a": 1}')
    with pytest.raises(CheckpointError, match="list of class names"):
        mmseq.load(tmp_path / "sid")
