"""Audio I/O: formats, conversions, resampling, atomic writes and the errors a bad file gives."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from mmseq.data.audio import audio_info, check_waveform, load_audio, save_audio
from mmseq.errors import InputError


@pytest.fixture
def tone() -> np.ndarray:
    t = np.arange(8000) / 16000
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_formats_load_as_float32_mono(tmp_path, tone, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone, 16000)
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.shape == (8000,)
    tolerance = {"wav": 1 / 32768 + 1e-7, "flac": 1 / 32768 + 1e-7, "ogg": 0.05}[ext]
    assert np.abs(wav.numpy() - tone).max() <= tolerance


def test_int16_pcm_is_scaled_to_unit_range(tmp_path):
    pcm = np.array([0, 16384, -32768, 32767, -1], dtype=np.int16)
    sf.write(tmp_path / "i.wav", pcm, 16000, subtype="PCM_16")
    wav = load_audio(tmp_path / "i.wav")
    assert torch.equal(wav, torch.tensor(pcm / 32768.0, dtype=torch.float32))


def test_stereo_is_averaged_to_mono(tmp_path, tone):
    stereo = np.stack([tone, 0.25 * np.ones_like(tone)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    wav = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(wav.numpy(), stereo.mean(axis=1), atol=1e-7)


def test_resampling_matches_torchaudio(tmp_path, tone):
    sf.write(tmp_path / "r.wav", tone, 8000, subtype="FLOAT")
    wav = load_audio(tmp_path / "r.wav", sample_rate=16000)
    expected = torchaudio.functional.resample(torch.from_numpy(tone), 8000, 16000)
    assert wav.shape == (16000,)
    torch.testing.assert_close(wav, expected)
    # Same rate pair again (cached kernel) gives the same samples; None keeps the file's rate.
    torch.testing.assert_close(load_audio(tmp_path / "r.wav", sample_rate=16000), expected)
    assert load_audio(tmp_path / "r.wav", sample_rate=None).shape == (8000,)


def test_save_load_round_trip_is_16_bit_and_atomic(tmp_path, tone):
    path = tmp_path / "sub" / "out.wav"
    save_audio(path, torch.from_numpy(tone * 3), 16000)  # clipped to [-1, 1]
    info = sf.info(path)
    assert (info.subtype, info.samplerate, info.frames) == ("PCM_16", 16000, 8000)
    np.testing.assert_allclose(load_audio(path).numpy(), np.clip(tone * 3, -1, 1), atol=1 / 32768 + 1e-6)
    # A failed write leaves the old file whole and no temporary file behind.
    bad = tone.copy()
    bad[10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        save_audio(path, bad, 16000)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.wav"]
    assert load_audio(path).shape == (8000,)


def test_save_multichannel(tmp_path, tone):
    save_audio(tmp_path / "st.wav", np.stack([tone, -tone]), 16000)
    assert audio_info(tmp_path / "st.wav") == (8000, 16000, 2)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match=r"audio file not found: .*nope\.wav"):
        load_audio(tmp_path / "nope.wav")


def test_garbage_file_names_it(tmp_path):
    (tmp_path / "g.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(InputError, match=r"cannot read audio file .*g\.wav"):
        load_audio(tmp_path / "g.wav")


def test_truncated_wav_is_detected(tmp_path, tone):
    sf.write(tmp_path / "full.wav", tone, 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated .*cut\.wav"):
        load_audio(tmp_path / "cut.wav")


def test_truncated_flac_is_detected(tmp_path, tone):
    sf.write(tmp_path / "full.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.flac"):
        load_audio(tmp_path / "cut.flac")


def test_empty_audio(tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match=r"empty .*e\.wav"):
        load_audio(tmp_path / "e.wav")


def test_nan_and_inf_samples(tmp_path, tone):
    for value, name in [(np.nan, "nan.wav"), (np.inf, "inf.wav")]:
        bad = tone.copy()
        bad[100] = value
        sf.write(tmp_path / name, bad, 16000, subtype="FLOAT")
        with pytest.raises(InputError, match=rf"NaN or infinite samples: .*{name}"):
            load_audio(tmp_path / name)


def test_max_seconds(tmp_path, tone):
    sf.write(tmp_path / "long.wav", tone, 16000)  # 0.5 s
    assert load_audio(tmp_path / "long.wav", max_seconds=0.5).shape == (8000,)
    with pytest.raises(InputError, match=r"0\.50 s long, more than max_seconds=0\.4: .*long\.wav"):
        load_audio(tmp_path / "long.wav", max_seconds=0.4)


def test_check_waveform_conversions():
    pcm = np.array([[0, 16384], [32767, -32768]], dtype=np.int16)  # [C=2, T=2]
    wav = check_waveform(pcm)
    torch.testing.assert_close(wav, torch.tensor([32767 / 65536, (16384 - 32768) / 65536]))
    assert check_waveform([0.1, 0.2]).dtype == torch.float32
    assert torch.equal(check_waveform(torch.tensor([1, -2], dtype=torch.int16)), torch.tensor([1, -2]) / 32768.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0), "inputs\\[0\\]: waveform is empty"),
        (np.array([0.0, np.nan]), "inputs\\[0\\]: waveform holds NaN"),
        (np.zeros((1, 2, 3)), "must be \\[T\\] or \\[channels, T\\]"),
        (np.array(["a", "b"]), "float samples or int8/int16/int32 PCM"),
        (np.array([1, 2], dtype=np.int64), "got dtype int64"),
    ],
)
def test_check_waveform_errors(bad, message):
    with pytest.raises(InputError, match=message):
        check_waveform(bad, name="inputs[0]")
