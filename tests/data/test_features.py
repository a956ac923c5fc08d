"""Features: parity with transformers' SpeechT5 extractor, naive references for TERA, batch independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from mmseq.data.features import (
    SpeechT5LogMel,
    TeraFbank,
    TeraLogMel,
    reflect_pad_rows,
    rms_normalize,
    utterance_cmvn,
)
from mmseq.errors import InputError

LENGTHS = [16000, 12345, 300, 777, 5000]


@pytest.fixture(scope="module")
def batch() -> tuple[list[np.ndarray], torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    waves = []
    for n in LENGTHS:  # a chirp plus noise, so every mel band has energy
        t = np.arange(n) / 16000
        waves.append((0.3 * np.sin(2 * np.pi * (100 + 3000 * t) * t) + 0.05 * rng.standard_normal(n))
                     .astype(np.float32))
    padded = torch.zeros(len(waves), max(LENGTHS))
    for i, w in enumerate(waves):
        padded[i, : len(w)] = torch.from_numpy(w)
    return waves, padded, torch.tensor(LENGTHS)


@pytest.mark.parametrize("chunk_frames", [256, 7, None], ids=lambda c: f"chunk_frames={c}")
def test_speecht5_log_mel_matches_transformers(batch, chunk_frames):
    transformers = pytest.importorskip("transformers")
    extractor = transformers.SpeechT5FeatureExtractor()
    waves, padded, lengths = batch
    log_mel = SpeechT5LogMel(chunk_frames=chunk_frames)
    mel, frames = log_mel(padded, lengths)
    assert mel.shape == (5, 1 + max(LENGTHS) // 256, 80)
    assert frames.tolist() == [1 + n // 256 for n in LENGTHS]
    for i, wave in enumerate(waves):
        expected = np.asarray(extractor(audio_target=wave, sampling_rate=16000)["input_values"][0])
        assert expected.shape == (frames[i], 80)
        assert np.abs(mel[i, : frames[i]].numpy() - expected).max() < 1e-4
        assert (mel[i, frames[i]:] == 0).all()
        alone, _ = log_mel(torch.from_numpy(wave))  # rows longer than 512 samples take the fast padding path
        assert np.abs(alone[0].numpy() - expected).max() < 1e-4


@pytest.mark.parametrize(
    "extractor",
    [SpeechT5LogMel(), TeraLogMel(), TeraLogMel(chunk_frames=None), TeraLogMel(pad_value=-1.0), TeraFbank()],
    ids=["speecht5", "tera", "tera-one-pass", "tera-pad-value", "fbank"],
)
def test_rows_do_not_depend_on_the_batch(batch, extractor):
    _, padded, lengths = batch
    feats, frames = extractor(padded, lengths)
    assert feats.shape[-1] == extractor.output_dim
    for i, n in enumerate(LENGTHS):
        alone, alone_frames = extractor(padded[i, :n])
        assert alone_frames.item() == frames[i].item() == extractor.frame_lengths(torch.tensor([n])).item()
        torch.testing.assert_close(feats[i, : frames[i]], alone[0], atol=1e-4, rtol=1e-4)
        assert (feats[i, frames[i]:] == getattr(extractor, "pad_value", 0.0)).all()


def test_tera_log_mel_equals_naive_reference(batch):
    waves, _, _ = batch
    wav = torch.from_numpy(waves[1])
    # The reference pipeline written out step by step.
    wav_ref = wav * (10 ** (-25 / 20) / (wav.pow(2).mean().sqrt() + 1e-10))
    spec = torch.stft(wav_ref, 400, 160, 400, torch.hann_window(400), center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2
    mel = torchaudio.transforms.MelScale(sample_rate=16000, n_mels=80, n_stft=201)(spec).T
    logmel = torch.log(mel + 1e-10)
    expected = (logmel - logmel.mean(0)) / (logmel.std(0) + 1e-10)
    feats, frames = TeraLogMel()(wav)
    assert frames.item() == 1 + len(wav) // 160 == expected.shape[0]
    assert TeraLogMel().downsample_rate == 160
    torch.testing.assert_close(feats[0], expected, atol=1e-4, rtol=1e-4)


def test_tera_fbank_equals_naive_reference(batch):
    waves, _, _ = batch
    wav = torch.from_numpy(waves[0])
    wav_ref = wav * (10 ** (-25 / 20) / (wav.pow(2).mean().sqrt() + 1e-10))
    fbank = torchaudio.compliance.kaldi.fbank(wav_ref[None], num_mel_bins=80, frame_length=25, frame_shift=10)
    d1 = torchaudio.functional.compute_deltas(fbank.T, win_length=5)
    d2 = torchaudio.functional.compute_deltas(d1, win_length=5)
    feats = torch.cat([fbank, d1.T, d2.T], dim=1)
    expected = (feats - feats.mean(0)) / (feats.std(0) + 1e-10)
    out, frames = TeraFbank()(wav)
    assert out.shape == (1, 1 + (16000 - 400) // 160, 240) and frames.item() == 98
    torch.testing.assert_close(out[0], expected, atol=1e-4, rtol=1e-4)


def test_tera_fbank_short_rows_have_no_frames():
    out, frames = TeraFbank()(torch.randn(2, 500), torch.tensor([399, 500]))
    assert frames.tolist() == [0, 1]
    assert out.shape == (2, 1, 240) and (out[0] == 0).all()


@pytest.mark.parametrize("pad", [2, 5], ids=["narrower-than-rows", "wider-than-a-row"])
def test_reflect_padding_matches_numpy(pad):
    wav = torch.arange(1.0, 8.0).repeat(2, 1)  # [2, 7]
    lengths = torch.tensor([7, 3])
    wav[1, 3:] = 0
    out = reflect_pad_rows(wav, lengths, pad)
    assert out.shape == (2, 7 + 2 * pad)
    np.testing.assert_array_equal(out[0].numpy(), np.pad(wav[0].numpy(), pad, mode="reflect"))
    np.testing.assert_array_equal(out[1, : 3 + 2 * pad].numpy(), np.pad(wav[1, :3].numpy(), pad, mode="reflect"))


def test_rms_normalize_and_cmvn_use_only_valid_samples():
    wav = torch.randn(2, 1000)
    lengths = torch.tensor([1000, 400])
    wav[1, 400:] = 0
    normed = rms_normalize(wav, lengths)
    target = 10 ** (-25 / 20)
    torch.testing.assert_close(normed[0].pow(2).mean().sqrt(), torch.tensor(target), rtol=1e-4, atol=0)
    torch.testing.assert_close(normed[1, :400].pow(2).mean().sqrt(), torch.tensor(target), rtol=1e-4, atol=0)
    feats = torch.randn(2, 10, 3) * 5 + 2
    out = utterance_cmvn(feats, torch.tensor([10, 4]))
    torch.testing.assert_close(out[1, :4], (feats[1, :4] - feats[1, :4].mean(0)) / (feats[1, :4].std(0) + 1e-10))
    assert (out[1, 4:] == 0).all()


def test_float64_input_and_modules_move_with_to():
    mel = SpeechT5LogMel().to(torch.float64)
    out, _ = mel(torch.randn(1, 4000, dtype=torch.float64))
    assert out.dtype == torch.float64
    for module in (mel, TeraLogMel(), TeraFbank()):  # buffers are not persistent: nothing lands in checkpoints
        assert module.state_dict() == {}


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match=r"\[T\] or \[B, T\], got shape \(1, 2, 3\)"):
        SpeechT5LogMel()(torch.zeros(1, 2, 3))
    with pytest.raises(InputError, match=r"lengths must lie in \[1, 100\]"):
        TeraLogMel()(torch.zeros(2, 100), torch.tensor([100, 101]))
    with pytest.raises(InputError, match="floating point"):
        TeraLogMel()(torch.zeros(2, 100, dtype=torch.int16))
