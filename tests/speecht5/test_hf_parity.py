"""mmseq SpeechT5 against transformers' SpeechT5 on the same (random) weights: max abs 1e-4 in fp32."""

import pytest
import torch

import mmseq
from mmseq.interop.hf_speecht5 import export_hf_speecht5

from speecht5_helpers import hf_config, randomize_batchnorm, transformers

ATOL = 1e-4


def assert_close(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= ATOL, f"max abs diff {diff}"


def speech_batch(n=3, samples=4000):
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(n, samples, generator=g) * 0.3
    lengths = torch.tensor([samples, samples - 700, samples - 1500][:n])
    mask = (torch.arange(samples)[None, :] < lengths[:, None]).long()
    return wav * mask, lengths, mask


def save_hf(model_cls, config, tmp_path, fmt="safetensors"):
    torch.manual_seed(0)
    hf = model_cls(config).eval()
    randomize_batchnorm(hf)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=fmt == "safetensors")
    return hf


@pytest.mark.parametrize("shape", [{}, {"hidden_size": 48, "encoder_attention_heads": 6, "decoder_layers": 3}])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_asr_encoder_states_and_decoder_logits(tmp_path, shape, fmt):
    hf = save_hf(transformers.SpeechT5ForSpeechToText, hf_config(**shape), tmp_path, fmt)
    ours = mmseq.load(tmp_path / "hf").eval()
    wav, lengths, mask = speech_batch()
    dec_in = torch.tensor([[2, 10, 11, 12, 13], [2, 20, 21, 22, 1], [2, 30, 31, 1, 1]])
    with torch.no_grad():
        feats = ours.forward_features(wav, lengths)
        out = ours(wav, lengths, dec_in, dec_in.ne(1).sum(1))
        for i in range(3):
            # Each row against transformers on that row alone: its batched outputs for padded rows depend on
            # the padding (GroupNorm over the padded length); mmseq's do not.
            n, m = int(lengths[i]), int(dec_in[i].ne(1).sum())
            ref = hf(input_values=wav[i : i + 1, :n], decoder_input_ids=dec_in[i : i + 1, :m],
                     output_hidden_states=True)
            t = int(feats.lengths[i])
            assert len(feats.hidden_states) == len(ref.encoder_hidden_states)
            for a, b in zip(feats.hidden_states, ref.encoder_hidden_states):
                assert_close(a[i : i + 1, :t], b)
            assert_close(out.outputs[i : i + 1, :m], ref.logits)
        # A batch without padding goes through the same path as transformers' batched forward.
        full = hf(input_values=wav[:, :3000], decoder_input_ids=dec_in[:, :3]).logits
        assert_close(ours(wav[:, :3000], None, dec_in[:, :3], None).outputs, full)


def test_asr_training_gradients_equal_transformers(tmp_path):
    # mmseq's feature encoder runs its convolutions as time-major matrix products with hand-written backward
    # (mmseq.nn.conv) and folds the first layer's GroupNorm into its weights: the gradients of every parameter
    # must still be transformers'. Eval mode keeps dropout and SpecAugment out; gradients flow as in training.
    hf = save_hf(transformers.SpeechT5ForSpeechToText, hf_config(), tmp_path)
    ours = mmseq.load(tmp_path / "hf").eval()
    wav = speech_batch()[0][:, :3000]
    dec_in = torch.tensor([[2, 10, 11, 12, 13], [2, 20, 21, 22, 23], [2, 30, 31, 32, 33]])
    weights = torch.randn(3, 5, 81, generator=torch.Generator().manual_seed(1))
    (hf(input_values=wav, decoder_input_ids=dec_in).logits * weights).sum().backward()
    (ours(wav, None, dec_in, None).outputs * weights).sum().backward()
    hf_grads = {k: v.grad for k, v in hf.named_parameters() if v.grad is not None}
    ours_grads = dict(ours.named_parameters())
    pairs = [("speecht5.encoder.prenet.feature_encoder.conv_layers.0.conv.weight",
              "encoder_prenet.feature_encoder.conv_layers.0.conv.weight"),
             ("speecht5.encoder.prenet.feature_encoder.conv_layers.0.layer_norm.weight",
              "encoder_prenet.feature_encoder.conv_layers.0.layer_norm.weight"),
             ("speecht5.encoder.prenet.feature_encoder.conv_layers.0.layer_norm.bias",
              "encoder_prenet.feature_encoder.conv_layers.0.layer_norm.bias"),
             ("speecht5.encoder.prenet.feature_encoder.conv_layers.1.conv.weight",
              "encoder_prenet.feature_encoder.conv_layers.1.conv.weight"),
             ("speecht5.encoder.prenet.feature_encoder.conv_layers.2.conv.weight",
              "encoder_prenet.feature_encoder.conv_layers.2.conv.weight"),
             ("speecht5.encoder.wrapped_encoder.layers.0.attention.q_proj.weight",
              "encoder.layers.0.attention.q_proj.weight"),
             ("speecht5.decoder.wrapped_decoder.layers.1.fc2.weight", "decoder.layers.1.feed_forward.output_dense.weight")]
    for hf_name, ours_name in pairs:
        if hf_name not in hf_grads:
            hf_name = hf_name.replace(".fc2.", ".feed_forward.output_dense.")
        ref, got = hf_grads[hf_name], ours_grads[ours_name].grad
        scale = ref.abs().max().item()
        assert (got - ref).abs().max().item() <= 1e-4 * scale, (ours_name, scale, (got - ref).abs().max().item())


def test_tts_mel_and_stop_outputs(tmp_path, no_hf_prenet_dropout):
    hf = save_hf(transformers.SpeechT5ForTextToSpeech, hf_config(), tmp_path)
    ours = mmseq.load(tmp_path / "hf", speech_prenet_dropout=0.0).eval()
    ids = torch.tensor([[4, 5, 6, 7, 8, 2], [9, 10, 11, 2, 1, 1]])
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(2, 7, 16, generator=g)  # decoder inputs (already shifted)
    spk = torch.randn(2, 8, generator=g)
    with torch.no_grad():
        enc = hf.speecht5.encoder(input_values=ids, attention_mask=ids.ne(1).long()).last_hidden_state
        dec = hf.speecht5.decoder(input_values=frames, speaker_embeddings=spk, encoder_hidden_states=enc,
                                  encoder_attention_mask=ids.ne(1).long()).last_hidden_state
        before, after, stop = hf.speech_decoder_postnet(dec)
        out = ours(ids, ids.ne(1).sum(1), frames, None, speaker_embeddings=spk).outputs
    assert_close(out.mel_before, before)
    assert_close(out.mel_after, after)
    assert_close(out.stop_logits, stop)


def test_vc_encoder_decoder_outputs(tmp_path, no_hf_prenet_dropout):
    hf = save_hf(transformers.SpeechT5ForSpeechToSpeech, hf_config(), tmp_path)
    ours = mmseq.load(tmp_path / "hf", speech_prenet_dropout=0.0).eval()
    wav, lengths, mask = speech_batch(2)
    frames = torch.randn(2, 5, 16)
    spk = torch.randn(2, 8)
    with torch.no_grad():
        out = ours(wav, lengths, frames, None, speaker_embeddings=spk).outputs
        for i in range(2):
            ref = hf(input_values=wav[i : i + 1, : lengths[i]], decoder_input_values=frames[i : i + 1],
                     speaker_embeddings=spk[i : i + 1])
            assert_close(out.mel_after[i : i + 1], ref.spectrogram)


def test_export_round_trip_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    ours = mmseq.create_model("speecht5_asr_tiny", mask_time_prob=0.0).eval()
    export_hf_speecht5(ours, tmp_path / "exported")
    hf = transformers.SpeechT5ForSpeechToText.from_pretrained(tmp_path / "exported").eval()
    wav = speech_batch()[0][:, :3000]
    lengths = None
    dec_in = torch.tensor([[2, 10, 11], [2, 20, 21], [2, 30, 31]])
    with torch.no_grad():
        ref = hf(input_values=wav, decoder_input_ids=dec_in).logits
        out = ours(wav, lengths, dec_in, None).outputs
    assert_close(out, ref)
    again = mmseq.load(tmp_path / "exported").eval()
    with torch.no_grad():
        assert torch.equal(again(wav, lengths, dec_in, None).outputs, out)


def test_registered_sizes_build_what_they_name():
    from mmseq.registry import model_arguments

    for name, dim, layers, norm_first in [("speecht5_asr_base", 768, 12, False), ("speecht5_tts_large", 1024, 24, True),
                                          ("speecht5_vc_tiny", 32, 2, False)]:
        args = model_arguments(name)
        assert (args["dim"], args["encoder_layers"], args["norm_first"]) == (dim, layers, norm_first)
    model = mmseq.create_model("speecht5_sid_base")
    assert model.encoder.dim == 768 and len(model.encoder.layers) == 12
    assert mmseq.create_model("speecht5_tts_tiny").encoder.dim == 32
