"""Speech metrics: SI-SDR (torchmetrics), wide-band PESQ (``pesq``), STOI (``pystoi``) and mel-cepstral distortion
with DTW (``mel-cepstral-distance``).

Every function takes ``(estimate, reference)`` in that order (torchmetrics' ``(preds, target)``; ``pesq`` and
``pystoi`` take the reference first) and waveforms as 1-d numpy arrays or tensors (SI-SDR also takes padded
batches). Unusable input -- a wrong sample rate, a signal too short for the measure, shapes that differ --
raises :class:`~mmseq.errors.InputError` naming the problem, instead of the libraries' bare errors or their
silent fall-back values (pystoi returns 1e-5 with a warning when too little speech is left).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmseq.errors import InputError

PESQ_SAMPLE_RATE = 16000
PESQ_MIN_SECONDS = 0.25  # the pesq library refuses shorter buffers
# pystoi works at 10 kHz on 256-sample frames with hop 128 and needs 30 of them (intermediate intelligibility).
STOI_MIN_SECONDS = (29 * 128 + 256) / 10000


def _waveform(x: Any, name: str) -> np.ndarray:
    """A 1-d float64 numpy copy of ``x`` (numpy array, tensor or list)."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 1:
        raise InputError(f"{name} must be a 1-d waveform, got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} has NaN or infinite samples")
    return array


def _pair(estimate: Any, reference: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    est, ref = _waveform(estimate, f"{what} estimate"), _waveform(reference, f"{what} reference")
    if est.shape != ref.shape:
        raise InputError(f"{what}: estimate has {est.shape[0]} samples but reference {ref.shape[0]}; the measure "
                         f"compares sample-aligned signals of one length")
    return est, ref


def _check_rate(sample_rate: int, what: str) -> None:
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"{what}: sample_rate must be a positive integer, got {sample_rate!r}")


# --- SI-SDR ------------------------------------------------------------------------------------------------------

def _as_batch(x: Any, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    if x.dim() not in (1, 2):
        raise InputError(f"{name} must be a waveform [samples] or a batch [batch, samples], got {list(x.shape)}")
    return x


def si_sdr(estimate: Any, reference: Any, lengths: Tensor | None = None, zero_mean: bool = False) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB
    (``torchmetrics.functional.scale_invariant_signal_distortion_ratio``).

    Args:
        estimate: ``[T]`` or a padded batch ``[B, T]``.
        reference: the same shape.
        lengths: valid samples per row ``[B]`` (a batch only); each row is measured on its valid part.
        zero_mean: subtract each signal's mean first (torchmetrics' option, off by default there too).

    Returns:
        a scalar for ``[T]``, else ``[B]`` (float64 for float64 input, else float32).
    """
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    est, ref = _as_batch(estimate, "SI-SDR estimate"), _as_batch(reference, "SI-SDR reference")
    if est.shape != ref.shape:
        raise InputError(f"SI-SDR: estimate {list(est.shape)} and reference {list(ref.shape)} differ in shape")
    dtype = torch.promote_types(est.dtype, ref.dtype)
    est, ref = est.to(dtype), ref.to(dtype)
    if lengths is None:
        return scale_invariant_signal_distortion_ratio(est, ref, zero_mean=zero_mean)
    if est.dim() != 2 or len(lengths) != est.shape[0]:
        raise InputError(f"SI-SDR: lengths [{len(lengths)}] need a batch [batch, samples], got {list(est.shape)}")
    rows = []
    for row, n in enumerate(torch.as_tensor(lengths).tolist()):
        if not 0 < n <= est.shape[1]:
            raise InputError(f"SI-SDR: row {row} has length {n}, outside 1 .. {est.shape[1]}")
        rows.append(scale_invariant_signal_distortion_ratio(est[row, :n], ref[row, :n], zero_mean=zero_mean))
    return torch.stack(rows)


def si_sdr_improvement(estimate: Any, reference: Any, mixture: Any, lengths: Tensor | None = None,
                       zero_mean: bool = False) -> Tensor:
    """SI-SDR of the estimate minus SI-SDR of the unprocessed mixture, both against the reference (dB).

    Args:
        estimate / reference / mixture: ``[T]`` or padded batches ``[B, T]`` of one shape.
        lengths / zero_mean: as :func:`si_sdr`.
    """
    mix = _as_batch(mixture, "SI-SDR mixture")
    if mix.shape != torch.as_tensor(reference).shape:
        raise InputError(f"SI-SDR improvement: mixture {list(mix.shape)} and reference "
                         f"{list(torch.as_tensor(reference).shape)} differ in shape")
    return (si_sdr(estimate, reference, lengths, zero_mean) - si_sdr(mix, reference, lengths, zero_mean))


# --- PESQ and STOI -----------------------------------------------------------------------------------------------

def pesq_wb(estimate: Any, reference: Any, sample_rate: int = PESQ_SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO about 1.0 - 4.6) of 16 kHz speech (``pesq.pesq(..., 'wb')``).

    Args:
        estimate: degraded or enhanced waveform ``[T]``.
        reference: clean waveform ``[T]``, sample-aligned with the estimate.
        sample_rate: must be 16000 (resample first: wide-band PESQ is defined at 16 kHz only).
    """
    import pesq

    _check_rate(sample_rate, "PESQ")
    if sample_rate != PESQ_SAMPLE_RATE:
        raise InputError(f"wide-band PESQ needs {PESQ_SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}; "
                         f"resample both signals to {PESQ_SAMPLE_RATE} Hz first")
    est, ref = _pair(estimate, reference, "PESQ")
    if est.shape[0] < PESQ_MIN_SECONDS * sample_rate:
        raise InputError(f"PESQ: signals of {est.shape[0]} samples are too short; wide-band PESQ needs at least "
                         f"{PESQ_MIN_SECONDS} s ({int(PESQ_MIN_SECONDS * sample_rate)} samples)")
    if not np.any(ref) or not np.any(est):
        raise InputError("PESQ: the " + ("reference" if not np.any(ref) else "estimate") + " is all zeros")
    try:
        return float(pesq.pesq(sample_rate, ref, est, "wb"))
    except pesq.NoUtterancesError:
        raise InputError("PESQ found no speech in the signals (no utterance detected)") from None
    except pesq.PesqError as e:
        raise InputError(f"PESQ failed on these signals: {e}") from None


def stoi(estimate: Any, reference: Any, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility, 0 - 1 (``pystoi.stoi``; ``extended``: ESTOI).

    pystoi resamples to 10 kHz and drops silent frames (40 dB below the loudest) first; at least
    :data:`STOI_MIN_SECONDS` of speech must remain.

    Args:
        estimate: processed waveform ``[T]``.
        reference: clean waveform ``[T]``, sample-aligned with the estimate.
        sample_rate: of both signals.
    """
    from pystoi import stoi as pystoi_stoi

    _check_rate(sample_rate, "STOI")
    est, ref = _pair(estimate, reference, "STOI")
    need = math.ceil(STOI_MIN_SECONDS * sample_rate)
    if est.shape[0] < need:
        raise InputError(f"STOI: signals of {est.shape[0]} samples at {sample_rate} Hz are too short; STOI needs at "
                         f"least {STOI_MIN_SECONDS:.4f} s ({need} samples)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(ref, est, sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise InputError(f"STOI: less than {STOI_MIN_SECONDS:.4f} s of the reference is left after removing its "
                         f"silent frames")
    return value


# --- Mel-cepstral distortion -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MelCepstralDistortion:
    """Mean mel-cepstral distance over the aligned frames and the DTW alignment penalty.

    Attributes:
        mcd: mean over frames of ``||MC_est - MC_ref||`` over coefficients ``s .. D-1`` (no dB scaling;
            multiply by ``10 * sqrt(2) / ln 10`` for the dB convention of voice-conversion papers).
        penalty: ``2 - (N_est + N_ref) / N_aligned`` in [0, 1): how much warping the alignment needed.
    """

    mcd: float
    penalty: float


def mel_cepstral_distortion(estimate: Any, reference: Any, sample_rate: int, *, n_fft_ms: float = 32,
                            win_len_ms: float = 32, hop_len_ms: float = 8, num_mels: int = 20,
                            num_coefficients: int = 16, first_coefficient: int = 1, fmin: int = 0,
                            fmax: int | None = None, aligning: str = "dtw", align_target: str = "mel",
                            dtw_radius: int | None = 10, norm_audio: bool = True) -> MelCepstralDistortion:
    """Mel-cepstral distortion (Kubichek 1993) with DTW alignment, by the ``mel-cepstral-distance`` package.

    The signals need not have one length: DTW aligns their frames. The steps are the package's own
    ``compare_audio_files`` for arrays instead of files: peak normalisation, its STFT, then
    ``compare_amplitude_spectrograms`` (log10 mel power, DCT, frame distances, DTW via ``fastdtw``). Defaults are
    the package's (32 ms Hann windows, 8 ms hop, 20 mel bands, coefficients 1 .. 15).

    Args:
        estimate: synthesised / converted waveform ``[T_est]``.
        reference: target waveform ``[T_ref]``.
        sample_rate: of both signals.
        n_fft_ms / win_len_ms / hop_len_ms: STFT sizes in milliseconds.
        num_mels / num_coefficients / first_coefficient: the package's ``M``, ``D`` and ``s``
            (``first_coefficient=1`` leaves out the energy term).
        fmin / fmax: mel band range in Hz (``fmax`` None: half the sample rate).
        aligning: 'dtw' or 'pad' (zero-padding the shorter one).
        align_target: where DTW aligns: 'spec', 'mel' or 'mfcc'.
        dtw_radius: Sakoe-Chiba radius of fastdtw (None: unrestricted).
        norm_audio: scale each signal to a peak of 1 first.

    Returns:
        :class:`MelCepstralDistortion`.
    """
    from mel_cepstral_distance import compare_amplitude_spectrograms
    from mel_cepstral_distance.computation import get_X_km
    from mel_cepstral_distance.helper import ms_to_samples, norm_audio_signal

    _check_rate(sample_rate, "MCD")
    est, ref = _waveform(estimate, "MCD estimate"), _waveform(reference, "MCD reference")
    if aligning not in ("dtw", "pad"):
        raise InputError(f"MCD: aligning must be 'dtw' or 'pad', got {aligning!r}")
    win = ms_to_samples(win_len_ms, sample_rate)
    hop = ms_to_samples(hop_len_ms, sample_rate)
    if win <= 0 or hop <= 0 or ms_to_samples(n_fft_ms, sample_rate) <= 0:
        raise InputError(f"MCD: window {win_len_ms} ms / hop {hop_len_ms} ms / FFT {n_fft_ms} ms are under one "
                         f"sample at {sample_rate} Hz")
    for name, x in (("estimate", est), ("reference", ref)):
        if x.shape[0] <= win + hop:
            raise InputError(f"MCD: the {name} has {x.shape[0]} samples; at least {win + hop + 1} "
                             f"({win_len_ms} ms window + {hop_len_ms} ms hop) are needed for two frames")
        if norm_audio and not np.any(x):
            raise InputError(f"MCD: the {name} is all zeros")
    if norm_audio:
        est, ref = norm_audio_signal(est), norm_audio_signal(ref)
    spectra = [get_X_km(x, ms_to_samples(n_fft_ms, sample_rate), win, hop, "hanning") for x in (ref, est)]
    try:
        mcd, penalty = compare_amplitude_spectrograms(
            spectra[0], spectra[1], sample_rate, n_fft_ms, fmin=fmin, fmax=fmax, M=num_mels, s=first_coefficient,
            D=num_coefficients, aligning=aligning, align_target=align_target, remove_silence="no",
            dtw_radius=dtw_radius)
    except ValueError as e:  # the package validates M, D, s, fmin, fmax, align_target, dtw_radius
        raise InputError(f"MCD: {e}") from None
    return MelCepstralDistortion(float(mcd), float(penalty))
