"""mmseq's wav2vec 2.0 encoder and the seq2seq SLU model on it: padding, normalisation, SpecAugment, freezing,
composition checks and generation (parity with transformers is tests/interop/test_hf_wav2vec2.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import mmseq
from mmseq.errors import ConfigError, InputError
from mmseq.generation.text import generate
from mmseq.models.wav2vec2 import LayerNormConvLayer, normalize_waveforms

QUIET = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0)


def waves(*lengths: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wav[i, :n] = 0.2 * torch.randn(n, generator=g) + 0.1
    return wav, torch.tensor(lengths)


@pytest.mark.parametrize("name", ["wav2vec2_tiny", "wav2vec2_tiny_stable"])
@pytest.mark.parametrize("normalize", [True, False])
def test_a_padded_row_equals_the_row_alone(name, normalize):
    torch.manual_seed(0)
    model = mmseq.create_model(name, normalize_waveform=normalize).eval()
    wav, n = waves(2400, 1710, 900)
    with torch.no_grad():
        batch = model.forward_features(wav, n)
        assert torch.equal(batch.lengths, model.prenet.output_lengths(n))
        for row in range(3):
            alone = model.forward_features(wav[row : row + 1, : int(n[row])])
            t = int(batch.lengths[row])
            assert alone.lengths.tolist() == [t]
            for a, b in zip(batch.hidden_states, alone.hidden_states, strict=True):
                torch.testing.assert_close(a[row, :t], b[0], atol=2e-5, rtol=1e-5)


def test_normalisation_is_per_row_over_valid_samples():
    wav, n = waves(300, 120)
    out = normalize_waveforms(wav, n)
    for row, length in enumerate(n.tolist()):
        x = wav[row, :length].double()
        expected = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        torch.testing.assert_close(out[row, :length].double(), expected, atol=1e-5, rtol=1e-5)
        assert not out[row, length:].any()


def test_layer_norm_conv_layer_cpu_path_equals_its_reference():
    torch.manual_seed(0)
    layer = LayerNormConvLayer(3, 8, 4, 2, bias=True)
    x = torch.randn(2, 31, 3)
    torch.testing.assert_close(layer(x), layer.reference(x), atol=1e-6, rtol=1e-5)


def test_spec_augment_masks_time_and_feature_spans_while_training():
    torch.manual_seed(0)
    prenet = mmseq.create_model("wav2vec2_tiny", mask_time_prob=0.0, mask_feature_prob=0.5,
                                mask_feature_length=4).prenet

    class Zero(nn.Module):  # no positions, to see the masked features themselves
        def forward(self, x):
            return torch.zeros_like(x)

    prenet.pos_conv_embed = Zero()
    wav, n = waves(2400)
    x, _ = prenet.train()(wav, n)
    zero_channels = (x == 0).all(1)[0]
    assert 4 <= int(zero_channels.sum()) < 32  # whole channels set to 0, the rest untouched
    assert not (prenet.eval()(wav, n)[0] == 0).all(1).any()
    mask = torch.zeros(1, x.shape[1], dtype=torch.bool)
    mask[0, 3:6] = True
    masked, _ = prenet.eval()(wav, n, time_mask=mask)
    assert torch.equal(masked[0, 3], prenet.masked_spec_embed.detach())
    no_embed = mmseq.create_model("wav2vec2_tiny", mask_time_prob=0.0).prenet
    assert no_embed.masked_spec_embed is None and "masked_spec_embed" not in no_embed.state_dict()
    with pytest.raises(InputError, match="no mask embedding"):
        no_embed(wav, n, time_mask=mask)
    with pytest.raises(InputError, match="shorter than the wav2vec 2.0 feature encoder's receptive field"):
        no_embed(wav[:, :20])


@pytest.mark.parametrize("name,frozen_norm", [("wav2vec2_tiny", True), ("wav2vec2_tiny_stable", False)])
def test_freezing_the_feature_encoder_and_the_lower_layers(name, frozen_norm):
    size = {} if name == "wav2vec2_tiny" else dict(feat_extract_norm="layer", norm_first=True, conv_bias=True)
    model = mmseq.create_model("wav2vec2_seq2seq_tiny", vocab_size=20, freeze_encoder_layers=1, **size)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("encoder_prenet.", "encoder.layers.0.")) for n in trainable)
    assert any(n.startswith("encoder.layers.1.") for n in trainable)
    assert ("encoder.layer_norm.weight" in trainable) == (not frozen_norm)
    assert all(p.requires_grad for p in model.decoder.parameters())
    inputs = model.dummy_inputs(2)
    model.train()(**inputs).outputs.sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    assert model.encoder.layers[1].final_layer_norm.weight.grad is not None

    conv_only = mmseq.create_model("wav2vec2_seq2seq_tiny", vocab_size=20, freeze_feature_encoder=True, **size)
    frozen = {n for n, p in conv_only.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in conv_only.named_parameters() if n.startswith("encoder_prenet.feature_encoder.")}
    whole = mmseq.create_model("wav2vec2_seq2seq_tiny", vocab_size=20, freeze_encoder_layers=2, **size)
    assert not any(p.requires_grad for p in whole.encoder.parameters())
    with pytest.raises(ConfigError, match=r"freeze_encoder_layers must be in \[0, 2\]"):
        mmseq.create_model("wav2vec2_seq2seq_tiny", freeze_encoder_layers=3)


def test_a_narrower_decoder_cross_attends_and_generates():
    torch.manual_seed(0)
    model = mmseq.create_model("wav2vec2_seq2seq_tiny", vocab_size=20, decoder_dim=24, **QUIET,
                               decoder_dropout=0.0, positional_dropout=0.0).eval()
    assert model.decoder.dim == 24 and model.encoder.dim == 32 and model.writes == "text"
    wav, n = waves(2400, 1500)
    fast = generate(model, wav, n, max_new_tokens=6, start_id=2, eos_id=2, pad_id=1)
    slow = generate(model, wav, n, max_new_tokens=6, start_id=2, eos_id=2, pad_id=1, fast=False)
    assert torch.equal(fast, slow) and fast.shape[0] == 2 and (fast[:, 0] == 2).all()
    beams = generate(model, wav, n, num_beams=3, max_new_tokens=6, start_id=2, eos_id=2, pad_id=1)
    assert beams.shape[0] == 2
    # COCONUT's heads pool the encoder (32 wide) and the decoder's token embeddings (24 wide) each at its width
    heads = mmseq.create_model("wav2vec2_seq2seq_tiny", vocab_size=20, decoder_dim=24, projection_dim=8,
                               **QUIET).projection_heads
    audio = heads.audio(torch.randn(2, 5, 32), torch.tensor([5, 3]))
    text = heads.text(torch.randn(2, 4, 24), torch.tensor([4, 2]))
    assert audio.shape == text.shape == (2, 8)
    with pytest.raises(RuntimeError):
        heads.text(torch.randn(2, 4, 32), torch.tensor([4, 2]))


def test_encoder_from_takes_wav2vec2_models_only():
    torch.manual_seed(0)
    encoder = mmseq.create_model("wav2vec2_tiny_stable", **QUIET)
    model = mmseq.create_model("wav2vec2_seq2seq_tiny", encoder_from=encoder, vocab_size=20, projection_dim=8)
    assert model.encoder_prenet is encoder.prenet and model.encoder is encoder.encoder
    assert model.mmseq_config["args"]["encoder_from"] == {"builder": "wav2vec2_tiny_stable", "args": QUIET}
    assert model.projection_heads.projection_dim == 8
    with pytest.raises(ConfigError, match="must be a wav2vec 2.0 encoder.*speecht5_asr_tiny"):
        mmseq.create_model("wav2vec2_seq2seq_tiny", encoder_from=mmseq.create_model("speecht5_asr_tiny"))
    with pytest.raises(ConfigError, match="encoder_from 'nowhere/wav2vec2': no such folder"):
        mmseq.create_model("wav2vec2_seq2seq_tiny", encoder_from="nowhere/wav2vec2")
