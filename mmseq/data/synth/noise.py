"""Noise for the speech-enhancement part of the synthetic corpus, and mixing at an exact SNR.

Four noise types, all generated from a seeded generator (no recordings needed):

* ``white``: Gaussian, flat spectrum.
* ``pink``: Gaussian shaped to a 1/f power spectrum in the frequency domain.
* ``babble``: the sum of 3-5 other utterances (other speakers of the same split), each at a random offset and
  gain, looped to the target length.
* ``hum``: mains hum, a 50 or 60 Hz fundamental with harmonics up to the 7th at decaying amplitudes and random
  phases, slightly frequency-modulated, plus a faint white floor (-30 dB).

:func:`mix_at_snr` scales the noise so that ``10 log10(sum(clean^2) / sum(noise^2))`` is the requested SNR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NOISE_TYPES = ("white", "pink", "babble", "hum")
SNR_RANGE = (0.0, 15.0)


def white_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Unit-variance Gaussian noise ``[length]``."""
    return rng.standard_normal(length).astype(np.float64)


def pink_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Noise with a 1/f power spectrum ``[length]`` (unit variance)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), n=length)
    return pink / (pink.std() + 1e-12)


def hum_noise(rng: np.random.Generator, length: int, sample_rate: int) -> np.ndarray:
    """Mains hum at 50 or 60 Hz with harmonics ``[length]`` (unit variance)."""
    t = np.arange(length, dtype=np.float64) / sample_rate
    mains = 50.0 if rng.random() < 0.5 else 60.0
    wobble = 0.002 * mains * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)  # a slow, slight drift
    phase = 2 * np.pi * np.cumsum(mains + wobble) / sample_rate
    hum = np.zeros(length)
    for harmonic in range(1, 8):
        amplitude = rng.uniform(0.4, 1.0) / harmonic
        hum += amplitude * np.sin(harmonic * phase + rng.uniform(0, 2 * np.pi))
    hum /= hum.std() + 1e-12
    return hum + 10 ** (-30 / 20) * rng.standard_normal(length)


def babble_noise(rng: np.random.Generator, length: int, talkers: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of ``talkers`` (other utterances), each looped, offset and scaled ``[length]`` (unit variance).

    Args:
        rng: Random generator for offsets and gains.
        length: Output length in samples.
        talkers: At least one waveform ``[T_i]``; silence-only inputs are skipped.
    """
    mix = np.zeros(length)
    for wave in talkers:
        wave = np.asarray(wave, dtype=np.float64)
        if wave.size == 0 or not np.any(wave):
            continue
        wave = wave / (wave.std() + 1e-12)
        looped = np.resize(np.concatenate([wave, np.zeros(int(rng.integers(0, 1600)))]), length + wave.size)
        start = int(rng.integers(0, wave.size))
        mix += rng.uniform(0.5, 1.0) * looped[start : start + length]
    if not np.any(mix):
        return white_noise(rng, length)
    return mix / (mix.std() + 1e-12)


def make_noise(
    kind: str,
    rng: np.random.Generator,
    length: int,
    sample_rate: int,
    talkers: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Generate ``length`` samples of noise of type ``kind`` (one of :data:`NOISE_TYPES`)."""
    if kind == "white":
        return white_noise(rng, length)
    if kind == "pink":
        return pink_noise(rng, length)
    if kind == "hum":
        return hum_noise(rng, length, sample_rate)
    if kind == "babble":
        return babble_noise(rng, length, talkers)
    raise ValueError(f"unknown noise type {kind!r}; expected one of {NOISE_TYPES}")


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` to ``clean`` scaled to the requested signal-to-noise ratio.

    Args:
        clean: Speech ``[T]``.
        noise: Noise ``[T]``.
        snr_db: Target SNR in dB over the whole utterance (energy ratio, silence included).

    Returns:
        The mixture ``[T]`` (float64).
    """
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    clean_energy = float(np.sum(clean**2))
    noise_energy = float(np.sum(noise**2)) + 1e-20
    gain = np.sqrt(clean_energy / (noise_energy * 10 ** (snr_db / 10)))
    return clean + gain * noise


def measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR in dB of ``noisy`` against its clean reference: ``10 log10(sum(clean^2) / sum((noisy - clean)^2))``."""
    clean = np.asarray(clean, dtype=np.float64)
    residual = np.asarray(noisy, dtype=np.float64) - clean
    return float(10 * np.log10(np.sum(clean**2) / (np.sum(residual**2) + 1e-20)))
