"""The feature API (forward_features from waveforms or frames), the weighted sum and the downstream wrapper."""

from __future__ import annotations

import torch

import mmseq
from mmseq.data.features import TeraLogMel
from mmseq.nn.layer_sum import WeightedLayerSum


def test_forward_features_from_waveforms_and_frames_agree():
    torch.manual_seed(0)
    model = mmseq.create_model("tera_tiny").eval()
    wav = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 4000])
    wav[1, 4000:] = 0
    with torch.no_grad():
        from_wav = model.forward_features(wav, lengths)
        frames, frame_lengths = TeraLogMel()(wav, lengths)
        from_frames = model.forward_features(frames, frame_lengths)
    assert from_wav.downsample_rate == 160
    assert from_wav.lengths.tolist() == [51, 26]  # 1 + samples // 160
    assert len(from_wav.hidden_states) == 3  # input projection + 2 layers
    for a, b in zip(from_wav.hidden_states, from_frames.hidden_states, strict=True):
        assert a.shape == (2, 51, 32) and torch.allclose(a, b, atol=1e-6)
    # a row's valid states do not depend on the rest of the batch
    with torch.no_grad():
        alone = model.forward_features(wav[1:, :4000], lengths[1:])
    assert torch.allclose(alone.hidden_states[-1][0], from_wav.hidden_states[-1][1, :26], atol=1e-5)


def test_chunking_bounds_attention_span():
    torch.manual_seed(0)
    model = mmseq.create_model("tera_tiny", max_input_frames=10).eval()
    frames = torch.randn(1, 25, 80)
    with torch.no_grad():
        chunked = model.forward_features(frames).hidden_states[-1]
        # 25 frames -> 3 chunks of ceil(25 / 3) = 9 frames (torch.chunk's split); each is encoded alone
        first = model.forward_features(frames[:, :9]).hidden_states[-1]
    assert chunked.shape == (1, 25, 32)
    assert torch.allclose(chunked[:, :9], first, atol=1e-6)
    model.max_input_frames = 0
    with torch.no_grad():
        whole = model.forward_features(frames).hidden_states[-1]
    assert not torch.allclose(whole[:, :9], first, atol=1e-3)


def test_weighted_sum_starts_uniform_and_learns():
    layers = [torch.full((1, 2, 3), float(i)) for i in range(4)]
    ws = WeightedLayerSum(4)
    assert torch.allclose(ws(layers), torch.full((1, 2, 3), 1.5))
    ws(layers).sum().backward()
    assert ws.weights.grad is not None and ws.weights.grad.abs().sum() > 0


def test_frozen_upstream_gets_no_gradient_and_stays_in_eval():
    torch.manual_seed(0)
    probe = mmseq.create_model("tera_downstream", upstream="tera_tiny", num_classes=5, level="frame")
    probe.train()
    assert not probe.upstream.training and probe.head.training
    inputs = probe.dummy_inputs(2)
    logits = probe(**inputs)
    assert logits.shape == (2, 21, 5)
    logits.sum().backward()
    assert all(p.grad is None for p in probe.upstream.parameters())
    assert probe.layer_sum.weights.grad is not None
    tuned = mmseq.create_model("tera_downstream", upstream="tera_tiny", num_classes=3, level="utterance",
                               hidden_dim=16, freeze_upstream=False)
    out = tuned(**tuned.dummy_inputs(2))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert any(p.grad is not None for p in tuned.upstream.parameters())


def test_logmel_baseline_uses_the_same_door():
    probe = mmseq.create_model("tera_downstream", upstream="logmel", num_classes=4)
    inputs = probe.dummy_inputs(2)
    assert probe(**inputs).shape == (2, 21, 4)
    assert probe.upstream.forward_features(**inputs).downsample_rate == 160


def test_utterance_normalised_hidden_states_have_zero_mean_unit_std_and_ignore_padding():
    torch.manual_seed(0)
    probe = mmseq.create_model("tera_downstream", upstream="tera_tiny", num_classes=5, level="frame",
                               normalize_utterances=True)
    wav = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 4800])
    wav[1, 4800:] = 0
    features = probe.upstream_features(wav, lengths)
    alone = probe.upstream_features(wav[1:, :4800], lengths[1:])
    n = int(features.lengths[1])
    for h, h_alone in zip(features.hidden_states, alone.hidden_states):
        for row, length in enumerate(features.lengths.tolist()):
            valid = h[row, :length]
            torch.testing.assert_close(valid.mean(0), torch.zeros(h.shape[-1]), atol=1e-5, rtol=0)
            torch.testing.assert_close(valid.std(0), torch.ones(h.shape[-1]), atol=1e-4, rtol=0)
        assert (h[1, n:] == 0).all()  # padding stays zero
        torch.testing.assert_close(h[1, :n], h_alone[0], atol=1e-5, rtol=1e-5)  # padding does not enter the stats
    plain = mmseq.create_model("tera_downstream", upstream="tera_tiny", num_classes=5, level="frame")
    plain.load_state_dict(probe.state_dict())
    raw = plain.upstream_features(wav, lengths).hidden_states[-1]
    assert not torch.allclose(raw[0, :10].mean(0), torch.zeros(raw.shape[-1]), atol=1e-3)  # the option does it
