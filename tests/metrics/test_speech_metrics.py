"""SI-SDR (torchmetrics), wide-band PESQ, STOI and MCD-DTW: hand-checkable values, agreement with each library's
own call, and clear errors for sample rates, lengths and shapes the measures cannot take."""

import math

import numpy as np
import pesq
import pytest
import torch
from pystoi import stoi as pystoi_stoi
from scipy.io import wavfile

from mmseq.errors import InputError
from mmseq.metrics import mel_cepstral_distortion, pesq_wb, si_sdr, si_sdr_improvement, stoi

SR = 16000


def speech_like(seconds: float = 1.5, seed: int = 0, f0: float = 140.0) -> np.ndarray:
    """Harmonics of a gliding f0 in syllable-rate bursts: enough like speech for PESQ's utterance detection."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    return (0.3 * voiced * envelope + 0.003 * rng.standard_normal(t.shape)).astype(np.float64)


@pytest.fixture(scope="module")
def clean():
    return speech_like()


@pytest.fixture(scope="module")
def noisy(clean):
    return clean + 0.05 * np.random.default_rng(1).standard_normal(clean.shape)


# --- SI-SDR --------------------------------------------------------------------------------------------------------

def test_si_sdr_hand_values_and_scale_invariance():
    ref = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # est = 2 ref + [0, 1]: target 2 ref, residual [0, 1] -> 10 log10(4 / 1)
    assert float(si_sdr(torch.tensor([2.0, 1.0], dtype=torch.float64), ref)) == pytest.approx(10 * math.log10(4))
    assert float(si_sdr(torch.tensor([1.0, 1.0], dtype=torch.float64), ref)) == pytest.approx(0.0, abs=1e-6)
    est = torch.randn(800, dtype=torch.float64)
    target = torch.randn(800, dtype=torch.float64)
    assert float(si_sdr(5 * est, target)) == pytest.approx(float(si_sdr(est, target)))


def test_si_sdr_batch_with_lengths_equals_rows_alone():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 500, generator=g)
    est = ref + 0.3 * torch.randn(3, 500, generator=g)
    lengths = torch.tensor([500, 320, 101])
    padded_est, padded_ref = est.clone(), ref.clone()
    for row, n in enumerate(lengths):
        padded_est[row, n:] = 7.0  # garbage past the valid part must not matter
    batch = si_sdr(padded_est, padded_ref, lengths)
    rows = torch.stack([si_sdr(est[i, :n], ref[i, :n]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(batch, rows)
    torch.testing.assert_close(si_sdr(est, ref), torch.stack([si_sdr(est[i], ref[i]) for i in range(3)]))


def test_si_sdr_improvement_is_the_difference_over_the_mixture():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(2, 400, generator=g)
    noise = torch.randn(2, 400, generator=g)
    mixture, estimate = ref + noise, ref + 0.1 * noise
    improvement = si_sdr_improvement(estimate, ref, mixture)
    torch.testing.assert_close(improvement, si_sdr(estimate, ref) - si_sdr(mixture, ref))
    assert bool((improvement > 15).all())  # the noise is 20 dB lower after "enhancement"
    assert float(si_sdr_improvement(mixture[0], ref[0], mixture[0])) == pytest.approx(0.0, abs=1e-5)


def test_si_sdr_inputs_are_checked():
    with pytest.raises(InputError, match="differ in shape"):
        si_sdr(torch.zeros(10), torch.zeros(11))
    with pytest.raises(InputError, match="need a batch"):
        si_sdr(torch.zeros(10), torch.zeros(10), lengths=torch.tensor([5]))
    with pytest.raises(InputError, match="row 0 has length 0"):
        si_sdr(torch.zeros(1, 10), torch.zeros(1, 10), lengths=torch.tensor([0]))
    with pytest.raises(InputError, match="mixture"):
        si_sdr_improvement(torch.zeros(10), torch.zeros(10), torch.zeros(9))


# --- PESQ / STOI ---------------------------------------------------------------------------------------------------

def test_pesq_agrees_with_the_pesq_package_and_orders_quality(clean, noisy):
    assert pesq_wb(noisy, clean) == pytest.approx(pesq.pesq(SR, clean, noisy, "wb"))  # pesq: reference first
    assert pesq_wb(clean, clean) > 4.4  # wide-band PESQ of an undistorted signal: about 4.64
    assert pesq_wb(noisy, clean) < pesq_wb(clean + 0.01 * (noisy - clean), clean)
    assert pesq_wb(torch.from_numpy(noisy).float(), torch.from_numpy(clean)) == pytest.approx(
        pesq_wb(noisy, clean), abs=1e-3)


def test_pesq_errors_name_the_problem(clean):
    with pytest.raises(InputError, match="needs 16000 Hz audio, got sample_rate=8000"):
        pesq_wb(clean, clean, sample_rate=8000)
    with pytest.raises(InputError, match="too short.*at least 0.25 s"):
        pesq_wb(clean[:2000], clean[:2000])
    with pytest.raises(InputError, match="estimate has 23999 samples but reference 24000"):
        pesq_wb(clean[:-1], clean)
    with pytest.raises(InputError, match="1-d waveform"):
        pesq_wb(clean[None], clean[None])
    with pytest.raises(InputError, match="reference is all zeros"):
        pesq_wb(clean, np.zeros_like(clean))


def test_stoi_agrees_with_pystoi_and_orders_quality(clean, noisy):
    assert stoi(noisy, clean, SR) == pytest.approx(pystoi_stoi(clean, noisy, SR))
    assert stoi(noisy, clean, SR, extended=True) == pytest.approx(pystoi_stoi(clean, noisy, SR, extended=True))
    assert stoi(clean, clean, SR) == pytest.approx(1.0, abs=1e-6)
    very_noisy = clean + 0.5 * np.random.default_rng(2).standard_normal(clean.shape)
    assert stoi(very_noisy, clean, SR) < stoi(noisy, clean, SR)


def test_stoi_errors_name_the_problem(clean):
    with pytest.raises(InputError, match="too short; STOI needs at least 0.3968 s"):
        stoi(clean[:3000], clean[:3000], SR)
    with pytest.raises(InputError, match="estimate has 23990 samples but reference 24000"):
        stoi(clean[:-10], clean, SR)
    with pytest.raises(InputError, match="sample_rate must be a positive integer"):
        stoi(clean, clean, 0)
    quiet = clean.copy()
    quiet[: len(quiet) - 2000] *= 1e-4  # only 1/8 s of the reference left above pystoi's 40 dB range
    with pytest.raises(InputError, match="after removing its silent frames"):
        stoi(quiet, quiet, SR)


# --- MCD -----------------------------------------------------------------------------------------------------------

def test_mcd_agrees_with_the_package_entry_point(tmp_path):
    from mel_cepstral_distance import compare_audio_files

    ref, est = speech_like(0.8, seed=3), speech_like(0.9, seed=4, f0=120.0)
    wavfile.write(tmp_path / "ref.wav", SR, ref)
    wavfile.write(tmp_path / "est.wav", SR, est)
    for kwargs in ({}, {"aligning": "pad"}, {"num_mels": 40, "num_coefficients": 24, "dtw_radius": 3}):
        ours = mel_cepstral_distortion(est, ref, SR, **kwargs)
        names = {"num_mels": "M", "num_coefficients": "D", "aligning": "aligning", "dtw_radius": "dtw_radius"}
        theirs = compare_audio_files(tmp_path / "ref.wav", tmp_path / "est.wav",
                                     **{names[k]: v for k, v in kwargs.items()})
        assert (ours.mcd, ours.penalty) == pytest.approx(theirs)


def test_mcd_is_zero_for_equal_signals_and_dtw_absorbs_a_time_shift():
    ref = speech_like(0.8, seed=5)
    same = mel_cepstral_distortion(ref, ref, SR)
    assert same.mcd == 0.0 and same.penalty == 0.0
    delayed = np.concatenate([np.zeros(800), ref])  # 50 ms of silence in front
    dtw = mel_cepstral_distortion(delayed, ref, SR)
    padded = mel_cepstral_distortion(delayed, ref, SR, aligning="pad")
    assert dtw.mcd < 0.5 * padded.mcd
    assert dtw.penalty > 0


def test_mcd_errors_name_the_problem():
    ref = speech_like(0.5, seed=6)
    with pytest.raises(InputError, match="the estimate has 500 samples; at least 641"):
        mel_cepstral_distortion(ref[:500], ref, SR)
    with pytest.raises(InputError, match="aligning must be 'dtw' or 'pad'"):
        mel_cepstral_distortion(ref, ref, SR, aligning="warp")
    with pytest.raises(InputError, match="MCD: "):
        mel_cepstral_distortion(ref, ref, SR, num_mels=10, num_coefficients=16)
    with pytest.raises(InputError, match="reference is all zeros"):
        mel_cepstral_distortion(ref, np.zeros_like(ref), SR)
