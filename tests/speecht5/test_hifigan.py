import pytest
import torch

import mmseq
from mmseq.generation import generate_speech
from mmseq.vocoders import GriffinLimVocoder

from speecht5_helpers import transformers

SMALL = dict(model_in_dim=16, upsample_initial_channel=32, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
             resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]])


@pytest.mark.parametrize("weight_norm", ["plain", "parametrizations", "weight_g"])
def test_hifigan_waveforms_equal_transformers(tmp_path, weight_norm):
    torch.manual_seed(0)
    hf = transformers.SpeechT5HifiGan(transformers.SpeechT5HifiGanConfig(**SMALL)).eval()
    with torch.no_grad():
        hf.mean.normal_()
        hf.scale.uniform_(0.5, 2.0)
    if weight_norm != "plain":
        hf.apply_weight_norm()
    hf.save_pretrained(tmp_path)
    if weight_norm == "weight_g":  # the older key style: rename in the saved file
        from safetensors.torch import load_file, save_file

        state = {k.replace("parametrizations.weight.original0", "weight_g")
                  .replace("parametrizations.weight.original1", "weight_v"): v
                 for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
        save_file(state, str(tmp_path / "model.safetensors"))
    ours = mmseq.load(tmp_path).eval()
    mel = torch.randn(2, 9, 16)
    with torch.no_grad():
        ref = hf(mel)
        got = ours(mel)
    assert got.shape == (2, 9 * 16) and (got - ref).abs().max() < 1e-4
    with torch.no_grad():
        torch.testing.assert_close(ours(mel[0]), got[0], atol=1e-6, rtol=1e-5)  # unbatched input


def test_tts_with_vocoder_returns_waveforms_and_lengths():
    torch.manual_seed(0)
    tts = mmseq.create_model("speecht5_tts_tiny").eval()
    vocoder = mmseq.create_model("hifigan_tiny").eval()
    out = generate_speech(tts, torch.tensor([[5, 6, 7, 2], [8, 9, 2, 1]]), torch.tensor([4, 3]),
                              speaker_embeddings=torch.randn(2, 8), vocoder=vocoder, max_len_ratio=4.0)
    assert out.waveform.shape == (2, out.mel.shape[1] * 16)
    assert out.waveform_lengths.tolist() == (out.lengths * 16).tolist()


def test_griffin_lim_reconstructs_a_tone():
    from mmseq.data.features import SpeechT5LogMel

    t = torch.arange(16000) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    mel, _ = SpeechT5LogMel()(wav[None])
    rebuilt = GriffinLimVocoder(n_iter=16)(mel)[0]
    spectrum = torch.fft.rfft(rebuilt).abs()
    peak_hz = spectrum.argmax().item() * 16000 / rebuilt.shape[0]
    assert abs(peak_hz - 440) < 10
