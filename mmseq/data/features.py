"""Batched spectral features of waveforms: SpeechT5's log-mel targets and TERA's log-mel / fbank inputs.

Every extractor takes a zero-padded batch ``wav [B, T]`` with ``lengths [B]`` (valid samples per row) and returns
``(features [B, frames, dim], frame_lengths [B])``. Each row is computed as if it were alone: the reflect
padding of ``center=True`` framing reflects at the row's own end (not into the batch's zero padding), so a row's
valid frames never depend on what else is in the batch. Frames past a row's ``frame_lengths`` are set to
``pad_value`` (0 by default; TERA detects padding as all-zero frames).

Extractors are ``nn.Module``s with their windows and filterbanks as (non-persistent) buffers, so ``.to(device)``
moves them and nothing is written into checkpoints. Like pre-nets they expose ``output_dim`` and
``downsample_rate`` (waveform samples per output frame).

Frame counts:

- :class:`SpeechT5LogMel` (hop 256, centred): ``1 + len // 256``, as ``SpeechT5FeatureExtractor`` returns.
- :class:`TeraLogMel` (hop 160, centred): ``1 + len // 160``.
- :class:`TeraFbank` (Kaldi framing, 400-sample windows, ``snip_edges``): ``1 + (len - 400) // 160`` for
  ``len >= 400``, else 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchaudio
from torch import nn

from mmseq.errors import InputError

__all__ = [
    "SpeechT5LogMel",
    "TeraLogMel",
    "TeraFbank",
    "centered_frame_lengths",
    "map_centered_frames",
    "reflect_pad_rows",
    "rms_normalize",
    "utterance_cmvn",
]


def _as_batch(wav: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept ``[T]`` or ``[B, T]`` (+ optional lengths) and return ``([B, T], lengths [B])`` after checks."""
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    if wav.dim() != 2:
        raise InputError(f"waveform batch must be [T] or [B, T], got shape {tuple(wav.shape)}")
    if not wav.is_floating_point():
        raise InputError(f"waveform batch must be floating point, got dtype {wav.dtype}")
    batch, total = wav.shape
    if lengths is None:
        lengths = torch.full((batch,), total, dtype=torch.long, device=wav.device)
    else:
        lengths = torch.as_tensor(lengths, device=wav.device).long()
        if lengths.shape != (batch,):
            raise InputError(f"lengths must have shape [{batch}], got {tuple(lengths.shape)}")
        if batch and (int(lengths.min()) < 1 or int(lengths.max()) > total):
            raise InputError(f"lengths must lie in [1, {total}] (the padded length), got {lengths.tolist()}")
    return wav, lengths


def centered_frame_lengths(lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames of a centred STFT (``center=True``) of each row: ``1 + len // hop``.

    Args:
        lengths: Valid samples per row ``[B]``.
        hop_length: Samples between frame starts.

    Returns:
        Frame counts ``[B]``, long.
    """
    return 1 + torch.div(lengths, hop_length, rounding_mode="floor")


def reflect_pad_rows(wav: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad every row by ``pad`` samples on both sides at its *own* ends.

    Padding wider than a row reflects repeatedly (like ``numpy.pad(mode="reflect")``), so short rows work too.
    Samples after ``len + 2 * pad`` are unspecified (no valid frame reads them).

    Args:
        wav: Zero-padded batch ``[B, T]``.
        lengths: Valid samples per row ``[B]``.
        pad: Samples to add before the start and after the end.

    Returns:
        Padded batch ``[B, T + 2 * pad]``.
    """
    offsets = torch.arange(pad, device=wav.device)
    if pad == 0:
        return wav
    if bool((lengths > pad).all()):
        # Common case: one reflection per side. The left edge is the same slice for every row; the right edge is
        # gathered from each row's own end and scattered just after it.
        out = nn.functional.pad(wav, (pad, pad))
        out[:, :pad] = wav[:, 1 : pad + 1].flip(1)
        source = lengths.unsqueeze(1) - 2 - offsets  # [B, pad]
        out.scatter_(1, lengths.unsqueeze(1) + pad + offsets, torch.gather(wav, 1, source))
        return out
    # General case (some row no longer than the padding): fold every output position back into its row.
    positions = torch.arange(-pad, wav.shape[1] + pad, device=wav.device).unsqueeze(0)  # [1, T + 2 pad]
    last = (lengths - 1).clamp(min=0).unsqueeze(1)  # [B, 1]
    period = (2 * last).clamp(min=1)
    folded = torch.remainder(positions, period)
    index = torch.where(folded > last, period - folded, folded)
    index = torch.where(last == 0, torch.zeros_like(index), index)
    return torch.gather(wav, 1, index)


def map_centered_frames(
    wav: torch.Tensor,
    lengths: torch.Tensor,
    n_fft: int,
    hop_length: int,
    frame_fn: Callable[[torch.Tensor], torch.Tensor],
    out_dim: int,
    pad_value: float = 0.0,
    chunk_frames: int | None = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``frame_fn`` to the centred, reflect-padded frames of every row; the shared core of the extractors.

    On CPU (with ``chunk_frames``) each row's valid frames are strided views of that row, processed
    ``chunk_frames`` at a time: no work is spent on padding frames and each chunk's intermediates stay in cache,
    which is several times faster than one pass over the padded batch (``bench/features.py`` measures both;
    ``bench/README.md`` has the numbers). On other devices (or with ``chunk_frames=None``) the padded batch is processed in
    one pass and the padding frames are masked.

    Args:
        wav: Zero-padded batch ``[B, T]``.
        lengths: Valid samples per row ``[B]``.
        n_fft: Frame length in samples (frames are centred: ``n_fft // 2`` samples of reflect padding).
        hop_length: Samples between frame starts.
        frame_fn: Maps frames ``[N, n_fft]`` to features ``[N, out_dim]``.
        out_dim: Feature size.
        pad_value: Value of frames past each row's frame count.
        chunk_frames: Frames per call of ``frame_fn`` on CPU; ``None`` for the single batched pass.

    Returns:
        ``(features [B, 1 + T // hop_length, out_dim], frame_lengths [B])``.
    """
    pad = n_fft // 2
    padded = reflect_pad_rows(wav, lengths, pad)
    frame_lengths = centered_frame_lengths(lengths, hop_length)
    total_frames = 1 + wav.shape[1] // hop_length
    if chunk_frames is None or wav.device.type != "cpu":
        frames = padded.unfold(1, n_fft, hop_length)[:, :total_frames]  # [B, F, n_fft], a view
        feats = frame_fn(frames.reshape(-1, n_fft)).view(wav.shape[0], total_frames, out_dim)
        return _mask_padding(feats, frame_lengths, pad_value), frame_lengths
    out = wav.new_full((wav.shape[0], total_frames, out_dim), pad_value)
    for row, (length, count) in enumerate(zip(lengths.tolist(), frame_lengths.tolist())):
        frames = padded[row, : length + 2 * pad].unfold(0, n_fft, hop_length)[:count]  # [count, n_fft]
        for start in range(0, count, chunk_frames):
            stop = min(start + chunk_frames, count)
            out[row, start:stop] = frame_fn(frames[start:stop])
    return out, frame_lengths


def _power_spectrum(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """``|rfft(frames * window)|^2`` of frames ``[N, n_fft]`` -> ``[N, n_fft // 2 + 1]``."""
    spec = torch.view_as_real(torch.fft.rfft(frames * window, dim=-1))
    return spec.square().sum(dim=-1)


def _mask_padding(feats: torch.Tensor, frame_lengths: torch.Tensor, pad_value: float) -> torch.Tensor:
    """Set frames at or after ``frame_lengths`` to ``pad_value``. ``feats``: ``[B, F, D]``."""
    valid = torch.arange(feats.shape[1], device=feats.device).unsqueeze(0) < frame_lengths.unsqueeze(1)
    return feats.masked_fill(~valid.unsqueeze(-1), pad_value)


def rms_normalize(wav: torch.Tensor, lengths: torch.Tensor, target_level: float = -25.0) -> torch.Tensor:
    """Scale each row to an RMS level of ``target_level`` dB over its valid samples (TERA's input level).

    ``wav * 10 ** (target_level / 20) / (rms + 1e-10)``; padding stays zero.

    Args:
        wav: Zero-padded batch ``[B, T]``.
        lengths: Valid samples per row ``[B]``.
        target_level: Wanted level in dB relative to full scale.

    Returns:
        Normalised batch ``[B, T]``.
    """
    valid = torch.arange(wav.shape[1], device=wav.device).unsqueeze(0) < lengths.unsqueeze(1)
    wav = wav * valid
    rms = torch.sqrt((wav**2).sum(dim=1, keepdim=True) / lengths.unsqueeze(1).to(wav.dtype))
    return wav * (10 ** (target_level / 20) / (rms + 1e-10))


def utterance_cmvn(feats: torch.Tensor, frame_lengths: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-utterance, per-bin mean and variance normalisation over each row's valid frames.

    ``(x - mean) / (std + eps)`` with the unbiased standard deviation (``torch.std``'s default, as TERA's CMVN
    uses); a row with a single frame gets std 0. Padded frames come out as 0.

    Args:
        feats: Features ``[B, F, D]``.
        frame_lengths: Valid frames per row ``[B]``.
        eps: Added to the standard deviation.

    Returns:
        Normalised features ``[B, F, D]``.
    """
    valid = (torch.arange(feats.shape[1], device=feats.device).unsqueeze(0) < frame_lengths.unsqueeze(1))
    valid = valid.unsqueeze(-1).to(feats.dtype)  # [B, F, 1]
    count = frame_lengths.to(feats.dtype).clamp(min=1).view(-1, 1, 1)
    mean = (feats * valid).sum(dim=1, keepdim=True) / count
    centred = (feats - mean) * valid
    var = (centred**2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
    return centred / (var.sqrt() + eps)


class _CentredMel(nn.Module):
    """What the STFT log-mel features share: centred frames of ``n_fft`` samples every ``hop_length`` with
    reflect padding, a window and a mel filterbank ``[n_freq, n_mels]``, evaluated chunk by chunk on valid frames
    (:func:`map_centered_frames`) by the subclass's ``log_mel_frames``."""

    def __init__(self, n_fft: int, hop_length: int, window: torch.Tensor, mel_fbank: torch.Tensor,
                 pad_value: float, chunk_frames: int | None) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.pad_value, self.chunk_frames = pad_value, chunk_frames
        self.output_dim = mel_fbank.shape[1]
        self.downsample_rate = hop_length
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_fbank", mel_fbank, persistent=False)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per row for waveform ``lengths [B]``: ``1 + len // hop_length``."""
        return centered_frame_lengths(lengths, self.hop_length)

    def _centred_features(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return map_centered_frames(wav, lengths, self.n_fft, self.hop_length, self.log_mel_frames,
                                   self.output_dim, self.pad_value, self.chunk_frames)


class SpeechT5LogMel(_CentredMel):
    """SpeechT5's log-mel spectrogram (the TTS/VC/SE target and the HiFi-GAN input).

    16 kHz audio, 1024-sample periodic Hann window and FFT, hop 256, centred frames with reflect padding,
    magnitude spectrum (power 1), 80 Slaney-normalised Slaney-scale mel bands from 80 to 7600 Hz, then
    ``log10(max(mel_floor, mel))``. Matches ``transformers.SpeechT5FeatureExtractor(audio_target=...)``.

    Args:
        sample_rate: Sample rate of the input in Hz.
        n_fft: FFT size and window length in samples.
        hop_length: Samples between frames.
        n_mels: Mel bands.
        f_min: Lowest mel band edge in Hz.
        f_max: Highest mel band edge in Hz.
        mel_floor: Floor applied before the logarithm.
        pad_value: Value of frames past each row's length.
        chunk_frames: Frames processed at a time on CPU (see :func:`map_centered_frames`); ``None`` for one
            batched pass.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 80,
        f_min: float = 80.0,
        f_max: float = 7600.0,
        mel_floor: float = 1e-10,
        pad_value: float = 0.0,
        chunk_frames: int | None = 256,
    ) -> None:
        fbank = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm="slaney", mel_scale="slaney")
        super().__init__(n_fft, hop_length, torch.hann_window(n_fft, periodic=True), fbank, pad_value,
                         chunk_frames)
        self.sample_rate, self.mel_floor = sample_rate, mel_floor

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel spectrogram of a batch.

        Args:
            wav: Zero-padded waveforms ``[B, T]`` (or one ``[T]``), float.
            lengths: Valid samples per row ``[B]``; ``None`` means all ``T``.

        Returns:
            ``(log_mel [B, 1 + T // hop, n_mels], frame_lengths [B])``.
        """
        return self._centred_features(*_as_batch(wav, lengths))

    def log_mel_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Log-mel of raw (unwindowed) frames ``[N, n_fft]`` -> ``[N, n_mels]``."""
        magnitude = _power_spectrum(frames, self.window.to(frames.dtype)).sqrt()
        mel = magnitude @ self.mel_fbank.to(frames.dtype)
        return torch.log10(mel.clamp(min=self.mel_floor))


class TeraLogMel(_CentredMel):
    """TERA's default input and target features: 80-d log-mel at 10 ms with per-utterance CMVN.

    Each row is RMS-normalised to ``target_level`` dB, then framed like ``torch.stft`` (n_fft = window = 400,
    hop 160, Hann, centred with reflect padding); the power spectrum goes through ``torchaudio``'s
    ``MelScale(sample_rate, n_mels)`` with its defaults (HTK scale, no normalisation, 0 Hz to Nyquist), then
    ``log(x + 1e-10)`` and, when ``cmvn``, :func:`utterance_cmvn`.

    Args:
        sample_rate: Sample rate of the input in Hz.
        n_mels: Mel bands (the feature size).
        n_fft: FFT size and window length in samples.
        hop_length: Samples between frames (TERA's downsample rate, 160).
        target_level: RMS level in dB applied before framing; ``None`` skips the level normalisation.
        cmvn: Normalise each utterance's bins to zero mean and unit variance.
        pad_value: Value of frames past each row's length.
        chunk_frames: Frames processed at a time on CPU (see :func:`map_centered_frames`); ``None`` for one
            batched pass.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 400,
        hop_length: int = 160,
        target_level: float | None = -25.0,
        cmvn: bool = True,
        pad_value: float = 0.0,
        chunk_frames: int | None = 256,
    ) -> None:
        # torchaudio.transforms.MelScale(sample_rate, n_mels)'s defaults: 0 Hz to Nyquist, HTK scale, no norm.
        fbank = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm=None, mel_scale="htk")
        super().__init__(n_fft, hop_length, torch.hann_window(n_fft), fbank, pad_value, chunk_frames)
        self.target_level, self.cmvn = target_level, cmvn

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a batch.

        Args:
            wav: Zero-padded waveforms ``[B, T]`` (or one ``[T]``), float.
            lengths: Valid samples per row ``[B]``; ``None`` means all ``T``.

        Returns:
            ``(features [B, 1 + T // hop, n_mels], frame_lengths [B])``.
        """
        wav, lengths = _as_batch(wav, lengths)
        if self.target_level is not None:
            wav = rms_normalize(wav, lengths, self.target_level)
        feats, frames = self._centred_features(wav, lengths)
        if self.cmvn:
            feats = _mask_padding(utterance_cmvn(feats, frames), frames, self.pad_value)
        return feats, frames

    def log_mel_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Log-mel (before CMVN) of raw frames ``[N, n_fft]`` -> ``[N, n_mels]``."""
        power = _power_spectrum(frames, self.window.to(frames.dtype))
        mel = power @ self.mel_fbank.to(frames.dtype)  # what MelScale computes, frames first
        return torch.log(mel + 1e-10)


class TeraFbank(nn.Module):
    """TERA's fbank variant: Kaldi log-mel fbank (80 bins, 25 ms / 10 ms) with deltas of order 2, 240-d.

    Each row is RMS-normalised to ``target_level`` dB, then ``torchaudio.compliance.kaldi.fbank`` (Kaldi defaults:
    Povey window, pre-emphasis 0.97, DC removal, no dither, ``snip_edges``) runs on its valid samples; first
    and second deltas (``compute_deltas``, ``win_length`` 5) are appended and, when ``cmvn``, each utterance is
    normalised with :func:`utterance_cmvn`. Kaldi's framing is not batched, so rows are processed one by one.

    Args:
        sample_rate: Sample rate of the input in Hz.
        n_mels: Mel bins of the fbank (the output has ``n_mels * (delta_order + 1)`` features).
        delta_order: Number of delta orders appended (0, 1 or 2).
        delta_window: ``win_length`` of :func:`torchaudio.functional.compute_deltas`.
        target_level: RMS level in dB applied first; ``None`` skips it.
        cmvn: Normalise each utterance's features to zero mean and unit variance.
        pad_value: Value of frames past each row's length.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        delta_order: int = 2,
        delta_window: int = 5,
        target_level: float | None = -25.0,
        cmvn: bool = True,
        pad_value: float = 0.0,
    ) -> None:
        super().__init__()
        # Kaldi framing is in milliseconds: 25 ms windows every 10 ms (400 / 160 samples at 16 kHz).
        self.frame_length_samples = int(sample_rate * 0.025)
        self.hop_length = int(sample_rate * 0.010)
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.delta_order, self.delta_window = delta_order, delta_window
        self.target_level, self.cmvn, self.pad_value = target_level, cmvn, pad_value
        self.output_dim = n_mels * (delta_order + 1)
        self.downsample_rate = self.hop_length

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per row for waveform ``lengths [B]`` (Kaldi ``snip_edges``): 0 below one window."""
        full = 1 + torch.div(lengths - self.frame_length_samples, self.hop_length, rounding_mode="floor")
        return torch.where(lengths >= self.frame_length_samples, full, torch.zeros_like(lengths))

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a batch.

        Args:
            wav: Zero-padded waveforms ``[B, T]`` (or one ``[T]``), float.
            lengths: Valid samples per row ``[B]``; ``None`` means all ``T``.

        Returns:
            ``(features [B, max(frame_lengths), n_mels * (delta_order + 1)], frame_lengths [B])``; a row shorter
            than one 25 ms window has 0 frames.
        """
        wav, lengths = _as_batch(wav, lengths)
        if self.target_level is not None:
            wav = rms_normalize(wav, lengths, self.target_level)
        frames = self.frame_lengths(lengths)
        out = wav.new_full((wav.shape[0], int(frames.max()) if len(frames) else 0, self.output_dim), 0.0)
        for row, (length, count) in enumerate(zip(lengths.tolist(), frames.tolist())):
            if count == 0:
                continue
            fbank = torchaudio.compliance.kaldi.fbank(
                wav[row : row + 1, :length], num_mel_bins=self.n_mels, frame_length=25.0, frame_shift=10.0,
                sample_frequency=float(self.sample_rate))  # [F, n_mels]
            parts = [fbank]
            for _ in range(self.delta_order):
                parts.append(torchaudio.functional.compute_deltas(
                    parts[-1].transpose(0, 1), win_length=self.delta_window).transpose(0, 1))
            out[row, :count] = torch.cat(parts, dim=1)
        if self.cmvn:
            out = utterance_cmvn(out, frames)
        return _mask_padding(out, frames, self.pad_value), frames
