"""transformers wav2vec 2.0 folders read by mmseq.load: the same hidden states as transformers on the same (random)
weights in both layouts, padded batches, the other file and key spellings, and errors that say what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mmseq
from mmseq.errors import CheckpointError, ConfigError
from mmseq.interop.hf_wav2vec2 import load_hf_wav2vec2

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(32, 32, 32),
            conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2, vocab_size=12, layerdrop=0.0)
LAYOUTS = {"base": dict(feat_extract_norm="group", do_stable_layer_norm=False),
           "stable": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)}
ATOL = 2e-5


def hf_model(layout: str, cls: str = "Wav2Vec2Model", **more):
    """A tiny random transformers model, every parameter (norms included) moved off its initial value."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(**TINY, **LAYOUTS[layout], **more)
    model = getattr(transformers, cls)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def saved(model, folder):
    model.save_pretrained(folder)
    return folder


def waves(*lengths: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wav[i, :n] = torch.randn(n, generator=g)
    return wav, torch.tensor(lengths)


def hf_hidden(model, wav, mask=None):
    """transformers' hidden states as mmseq lists them -- the encoder input, then every layer's output, the last one
    being ``last_hidden_state`` (in the stable layout after the final layer norm, as transformers 4 listed it;
    transformers 5 lists the last layer's output before that norm) -- and the model's own output."""
    inner = getattr(model, "wav2vec2", model)
    with torch.no_grad():
        out = inner(wav, attention_mask=mask, output_hidden_states=True)
        head = model(wav, attention_mask=mask) if inner is not model else out
    return [*out.hidden_states[:-1], out.last_hidden_state], head


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cls", ["Wav2Vec2Model", "Wav2Vec2ForCTC"])
def test_every_hidden_state_equals_transformers(layout, cls, tmp_path):
    hf = hf_model(layout, cls)
    ours = mmseq.load(saved(hf, tmp_path / "hf")).eval()
    assert ours.mmseq_config["builder"] == ("wav2vec2_base" if layout == "base" else "wav2vec2_large")
    assert ours.encoder.norm_first == (layout == "stable")
    wav, _ = waves(3000)
    expected, out = hf_hidden(hf, wav)
    with torch.no_grad():
        features = ours.forward_features(wav)
    assert len(features.hidden_states) == len(expected) == ours.num_hidden_states == 3
    for a, b in zip(features.hidden_states, expected, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)
    if cls == "Wav2Vec2ForCTC":  # the CTC head is kept: log-probabilities of transformers' logits
        with torch.no_grad():
            torch.testing.assert_close(ours(wav), torch.log_softmax(out.logits, -1), atol=ATOL, rtol=1e-5)
        assert mmseq.load(tmp_path / "hf", ctc_vocab_size=0).postnet is None  # or dropped
    assert features.downsample_rate == 20
    if layout == "stable":  # what transformers 5 lists last is the same state before the final layer norm
        inner = getattr(hf, "wav2vec2", hf)
        with torch.no_grad():
            listed = inner(wav, output_hidden_states=True).hidden_states[-1]
            torch.testing.assert_close(inner.encoder.layer_norm(listed), features.hidden_states[-1], atol=ATOL,
                                       rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_padded_row_equals_transformers_on_the_row_alone(layout, tmp_path):
    hf = hf_model(layout)
    ours = mmseq.load(saved(hf, tmp_path / "hf")).eval()
    lengths = (3000, 2137, 1200)
    wav, n = waves(*lengths)
    with torch.no_grad():
        features = ours.forward_features(wav, n)
    frames = hf._get_feat_extract_output_lengths(n)
    assert torch.equal(features.lengths, frames)
    mask = (torch.arange(wav.shape[1])[None, :] < n[:, None]).long()
    batched, _ = hf_hidden(hf, wav, mask)
    for row, length in enumerate(lengths):
        alone, _ = hf_hidden(hf, wav[row : row + 1, :length])
        t = int(frames[row])
        for ours_h, alone_h, batched_h in zip(features.hidden_states, alone, batched, strict=True):
            torch.testing.assert_close(ours_h[row, :t], alone_h[0, :t], atol=ATOL, rtol=1e-5)
            if layout == "stable":  # transformers' padded batch (with its attention mask) agrees too
                torch.testing.assert_close(batched_h[row, :t], alone_h[0, :t], atol=ATOL, rtol=1e-5)
        if layout == "base" and length < max(lengths):
            # transformers' GroupNorm takes statistics over the padded length: its padded rows are not the rows alone
            assert not torch.allclose(batched[0][row, :t], alone[0][0, :t], atol=1e-3)


def _old_style(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    names = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    out = {}
    for key, value in state.items():
        for new, old in names.items():
            key = key.replace(new, old)
        out[key] = value.clone()
    return out


def test_pytorch_model_bin_with_weight_g_and_v(tmp_path):
    hf = hf_model("base", "Wav2Vec2ForCTC")
    folder = tmp_path / "old"
    folder.mkdir()
    hf.config.to_json_file(folder / "config.json")
    state = _old_style(hf.state_dict())
    assert any(k.endswith("pos_conv_embed.conv.weight_g") for k in state)
    torch.save(state, folder / "pytorch_model.bin")
    ours = mmseq.load(folder).eval()
    wav, _ = waves(2500)
    expected, _ = hf_hidden(hf, wav)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(wav).last_hidden_state, expected[-1], atol=ATOL, rtol=1e-5)


def test_pretraining_folder_drops_the_quantizer(tmp_path):
    hf = hf_model("base", "Wav2Vec2ForPreTraining", codevector_dim=16, proj_codevector_dim=16,
                  num_codevectors_per_group=8)
    ours = mmseq.load(saved(hf, tmp_path / "pt")).eval()
    assert ours.postnet is None
    wav, _ = waves(2500)
    expected, _ = hf_hidden(hf.wav2vec2, wav)
    with torch.no_grad():
        for a, b in zip(ours.forward_features(wav).hidden_states, expected, strict=True):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


def test_preprocessor_normalisation_is_folded_in(tmp_path):
    hf = hf_model("stable")
    folder = saved(hf, tmp_path / "hf")
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(folder)
    ours = mmseq.load(folder).eval()
    assert ours.prenet.normalize_waveform
    raw = (0.3 * np.random.default_rng(0).standard_normal(2800) + 0.05).astype(np.float32)
    inputs = extractor(raw, sampling_rate=16000, return_tensors="pt")
    expected, _ = hf_hidden(hf, inputs.input_values)
    with torch.no_grad():
        got = ours.forward_features(torch.from_numpy(raw)[None]).last_hidden_state
    torch.testing.assert_close(got, expected[-1], atol=1e-4, rtol=1e-4)


def test_seq2seq_encoder_from_a_folder_records_the_spec_not_the_path(tmp_path):
    from mmseq.checkpoint import build_model

    hf = hf_model("base", "Wav2Vec2ForCTC")
    folder = saved(hf, tmp_path / "hf")
    model = build_model("wav2vec2_seq2seq_tiny", {"encoder_from": str(folder), "vocab_size": 20,
                                                  "freeze_feature_encoder": True}).eval()
    spec = model.mmseq_config["args"]["encoder_from"]
    assert spec["builder"] == "wav2vec2_base" and str(folder) not in json.dumps(model.mmseq_config)
    assert model.encoder.dim == 32 and model.decoder.dim == 32
    assert not any(p.requires_grad for p in model.encoder_prenet.feature_encoder.parameters())
    assert all(p.requires_grad for p in model.encoder.parameters())
    wav, n = waves(2600, 1900)
    with torch.no_grad():
        memory = model(wav, n, torch.full((2, 3), 2), torch.tensor([3, 2])).encoder_hidden
    for row in range(2):
        expected, _ = hf_hidden(hf, wav[row : row + 1, : int(n[row])])
        t = expected[-1].shape[1]
        torch.testing.assert_close(memory[row, :t], expected[-1][0], atol=ATOL, rtol=1e-5)
    # a saved seq2seq checkpoint is self-contained: it loads with the folder gone
    mmseq.save_pretrained(model, tmp_path / "slu")
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    again = mmseq.load(tmp_path / "slu").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(wav, n, torch.full((2, 3), 2), torch.tensor([3, 2])).encoder_hidden, memory)
    with pytest.raises(ConfigError, match="encoder_from .*no such folder"):
        build_model("wav2vec2_seq2seq_tiny", {"encoder_from": str(folder)})


def test_errors_say_what_is_wrong(tmp_path):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="'bert' model, not wav2vec 2.0"):
        load_hf_wav2vec2(bert)
    with pytest.raises(CheckpointError):
        mmseq.load(bert)

    hf = hf_model("base")
    empty = tmp_path / "no_weights"
    empty.mkdir()
    hf.config.to_json_file(empty / "config.json")
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        mmseq.load(empty)

    state = {k: v.clone() for k, v in hf.state_dict().items()}
    partial = tmp_path / "partial"
    partial.mkdir()
    hf.config.to_json_file(partial / "config.json")
    torch.save({k: v for k, v in state.items() if "layers.1.final_layer_norm" not in k}, partial / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"missing \['encoder.layers.1.final_layer_norm.bias"):
        mmseq.load(partial)
    torch.save({**state, "wav2vec2.adapter.proj.weight": torch.zeros(2)}, partial / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="'wav2vec2.adapter.proj.weight' has no place"):
        mmseq.load(partial)

    classifier = tmp_path / "classifier"
    classifier.mkdir()
    config = json.loads(hf.config.to_json_string())
    (classifier / "config.json").write_text(json.dumps({**config, "architectures": ["Wav2Vec2ForSequenceClassification"]}))
    with pytest.raises(CheckpointError, match="Wav2Vec2ForSequenceClassification is not supported"):
        mmseq.load(classifier)
