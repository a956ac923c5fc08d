"""The model kinds and the pre-net / trunk / post-net contract: other modalities (images, point clouds), pre-net
extras, several named post-nets, and the decoder-only composition with generation."""

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.prenets.points import farthest_point_sample


def _train_steps(model, make_batch, steps=60, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        x, y = make_batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = make_batch()
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_image_patch_prenet_with_classifier_learns_where_the_bright_quadrant_is():
    torch.manual_seed(0)
    model = mmseq.create_model("image_classifier_tiny", num_classes=4, image_size=16, patch_size=4)

    def batch():
        y = torch.randint(0, 4, (32,))
        x = torch.randn(32, 3, 16, 16) * 0.3
        for i, q in enumerate(y.tolist()):
            r, c = divmod(q, 2)
            x[i, :, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 1.0
        return x, y

    assert _train_steps(model, batch) > 0.9


def test_point_group_prenet_with_classifier_separates_shapes():
    torch.manual_seed(0)
    model = mmseq.create_model("point_classifier_tiny", num_classes=2, num_groups=8, group_size=8)

    def batch():
        y = torch.randint(0, 2, (16,))
        pts = torch.randn(16, 64, 3)
        sphere = pts / pts.norm(dim=-1, keepdim=True)
        cube = pts.clamp(-1, 1).sign() * torch.rand(16, 64, 3) ** 0.1
        x = torch.where(y[:, None, None] == 0, sphere, cube)
        return x, y

    assert _train_steps(model, batch, steps=40) > 0.9


@pytest.mark.parametrize("name", ["image_classifier_tiny", "point_classifier_tiny", "text_transformer_tiny"])
def test_forward_features_reports_every_layer_and_lengths(name):
    model = mmseq.create_model(name).eval()
    inputs = model.dummy_inputs(2)
    feats = model.forward_features(inputs["x"], inputs["lengths"])
    assert len(feats.hidden_states) == 3  # the encoder input and 2 layers
    assert feats.lengths.shape == (2,) and feats.hidden_states[-1].shape[1] == int(feats.lengths.max())
    prenet = model.prenet if hasattr(model, "prenet") else model.encoder_prenet
    assert feats.downsample_rate == prenet.downsample_rate


def test_farthest_point_sampling_spreads_out():
    pts = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [10, 0, 0], [0, 10, 0], [0.2, 0, 0]]])
    assert sorted(farthest_point_sample(pts, 3)[0].tolist()) == [0, 2, 3]


def test_pre_net_width_must_match_trunk():
    from mmseq.models.compose import EncoderModel
    from mmseq.nn.transformer import LayerSpec, TransformerEncoder
    from mmseq.prenets.image import ImagePatchPrenet

    with pytest.raises(ValueError, match="output_dim 16 != encoder width 32"):
        EncoderModel(ImagePatchPrenet(8, 4, 3, 16), TransformerEncoder(LayerSpec(32, 4, 64), 1))


def test_prenet_output_carries_extras_and_unpacks_as_a_pair():
    from mmseq.contracts import PrenetOutput
    from mmseq.models.compose import EncoderModel
    from mmseq.nn.transformer import LayerSpec, TransformerEncoder

    class CentresPrenet(torch.nn.Module):
        output_dim, downsample_rate = 8, 1

        def forward(self, x, lengths=None):
            return PrenetOutput(x, torch.full((x.shape[0],), x.shape[1]), centres=x[..., :3].mean(1))

    out = CentresPrenet()(torch.randn(2, 5, 8))
    hidden, lengths = out
    assert hidden.shape == (2, 5, 8) and lengths.tolist() == [5, 5] and out.extras["centres"].shape == (2, 3)
    model = EncoderModel(CentresPrenet(), TransformerEncoder(LayerSpec(8, 2, 16), 1)).eval()
    assert model(torch.randn(2, 5, 8)).shape == (2, 5, 8)  # compositions accept it like a pair


def test_postnet_dict_runs_every_named_head_and_trains_them():
    from mmseq.models.compose import EncoderModel
    from mmseq.nn.transformer import LayerSpec, TransformerEncoder
    from mmseq.postnets import PostnetDict
    from mmseq.postnets.classifier import ClassifierPostnet, FrameClassifier
    from mmseq.prenets.spectrogram import SpectrogramPrenet

    model = EncoderModel(SpectrogramPrenet(6, 8), TransformerEncoder(LayerSpec(8, 2, 16), 1),
                         PostnetDict({"utterance": ClassifierPostnet(8, 3), "frames": FrameClassifier(8, 4)}))
    out = model(torch.randn(2, 5, 6), torch.tensor([5, 3]))
    assert set(out) == {"utterance", "frames"} and out["utterance"].shape == (2, 3) and out["frames"].shape == (2, 5, 4)
    (out["utterance"].sum() + out["frames"].sum()).backward()
    assert all(p.grad is not None for p in model.postnet.parameters())
    assert any(k.startswith("postnet.utterance.") for k in model.state_dict())


def test_encoder_decoder_forward_runs_the_encoder_postnet_so_ctc_trains():
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_asr_tiny", ctc=True, encoder_layerdrop=0.0, decoder_layerdrop=0.0)
    out = model(**model.dummy_inputs(2))
    assert out.encoder_outputs.shape[:2] == out.encoder_hidden.shape[:2]
    log_probs = out.encoder_outputs.transpose(0, 1)
    loss = F.ctc_loss(log_probs, torch.tensor([[5, 6, 7], [8, 9, 9]]), out.encoder_lengths, torch.tensor([3, 2]),
                      blank=model.encoder_postnet.vocab_size - 1, zero_infinity=True)
    loss.backward()
    assert model.encoder_postnet.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["text_lm_tiny", "image_prefix_lm_tiny"])
def test_decoder_only_generation_equals_teacher_forcing(name):
    from mmseq.generation import generate

    torch.manual_seed(0)
    model = mmseq.create_model(name).eval()
    inputs = model.dummy_inputs(2)
    prefix = inputs.get("prefix")
    prompt, lengths = inputs["tokens"][:, :5], torch.tensor([5, 3])
    prompt[1, 3:] = 1
    for fast in (True, False):
        new = generate(model, prompt, lengths, prefix=prefix, max_new_tokens=6, eos_id=31, fast=fast)
        assert new.shape == (2, 6)
        for row in range(2):
            # teacher-force the row's prompt + generated tokens alone: each generated token is the argmax
            tokens = torch.cat([prompt[row, : lengths[row]], new[row]])[None]
            with torch.no_grad():
                out = model(tokens, None, prefix=None if prefix is None else prefix[row : row + 1])
            logits = out.token_logits() if prefix is not None else out.outputs[:, :-1]
            start = int(lengths[row]) - (0 if prefix is not None else 1)
            assert logits[0, start : start + 6].argmax(-1).tolist() == new[row].tolist()


def test_decoder_only_beam_and_seeded_sampling():
    from mmseq.generation import generate

    torch.manual_seed(0)
    model = mmseq.create_model("text_lm_tiny").eval()
    prompt = torch.tensor([[5, 6, 7], [8, 9, 1]])
    lengths = torch.tensor([3, 2])
    beam = generate(model, prompt, lengths, num_beams=3, max_new_tokens=5, eos_id=31)
    for row in range(2):
        alone = generate(model, prompt[row : row + 1, : lengths[row]], num_beams=3, max_new_tokens=5, eos_id=31)
        assert beam[row][beam[row].ne(1)].tolist() == alone[0][alone[0].ne(1)].tolist()
    a = generate(model, prompt, lengths, do_sample=True, top_p=0.9, temperature=0.7, max_new_tokens=8,
                 generator=torch.Generator().manual_seed(3))
    b = generate(model, prompt, lengths, do_sample=True, top_p=0.9, temperature=0.7, max_new_tokens=8,
                 generator=torch.Generator().manual_seed(3))
    c = generate(model, prompt, lengths, do_sample=True, top_p=0.9, temperature=0.7, max_new_tokens=8,
                 generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_nucleus_filter_keeps_the_smallest_set_reaching_top_p():
    from mmseq.generation import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, top_p=0.8).isfinite()[0].tolist()
    assert kept == [True, True, False, False]
    assert filter_logits(logits, top_p=0.81).isfinite()[0].tolist() == [True, True, True, False]
    assert filter_logits(logits, top_k=1).isfinite()[0].tolist() == [True, False, False, False]
    with pytest.raises(mmseq.errors.InputError, match="temperature"):
        filter_logits(logits, temperature=0)


def test_generation_names_a_model_that_does_not_produce_its_output():
    from mmseq.generation import generate, generate_speech

    with pytest.raises(mmseq.errors.InputError, match="writes mel .*generate_speech"):
        generate(mmseq.create_model("speecht5_tts_tiny"), torch.tensor([[5, 6, 2]]))
    with pytest.raises(mmseq.errors.InputError, match="writes mel frames; EncoderDecoderModel writes text"):
        generate_speech(mmseq.create_model("speecht5_asr_tiny"), torch.randn(1, 4000))
    with pytest.raises(mmseq.errors.InputError, match="EncoderModel writes classes"):
        generate(mmseq.create_model("image_classifier_tiny"), torch.randn(1, 3, 32, 32))


def test_a_speecht5_model_is_a_probe_upstream_through_forward_features():
    torch.manual_seed(0)
    for upstream in ("speecht5_asr_tiny", "speecht5_sid_tiny"):
        probe = mmseq.create_model("tera_downstream", upstream=upstream, num_classes=3, level="utterance")
        logits = probe(**probe.dummy_inputs(2))
        assert logits.shape == (2, 3)
        logits.sum().backward()
        assert probe.layer_sum.weights.grad is not None
        assert all(p.grad is None for p in probe.upstream.parameters())
