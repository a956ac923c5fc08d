"""Audio file I/O: read any soundfile format (wav, flac, ogg) as a mono float32 waveform at one sample rate.

Every failure a user can cause (a missing, unreadable or truncated file; empty, silent-by-NaN or too-long
audio) raises :class:`~mmseq.errors.InputError` with a message that names the file, so a bad item in a corpus of
a million files is found from the message alone.

Resampling uses :func:`torchaudio.functional.resample`'s windowed-sinc filter. The filter depends only on the pair of
rates, so one :class:`torchaudio.transforms.Resample` module (which builds the kernel once) is kept per pair.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from mmseq.atomic import atomic_file
from mmseq.errors import InputError

__all__ = ["load_audio", "save_audio", "check_waveform", "audio_info", "resample"]

# Integer sample types and the value that maps to full scale (1.0).
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


@functools.lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    """One resampling module per rate pair; its sinc kernel is computed once at construction."""
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample with torchaudio's windowed-sinc filter (same result as ``torchaudio.functional.resample``).

    Args:
        wav: Waveform ``[..., T]``, float.
        orig_rate: Sample rate of ``wav`` in Hz.
        new_rate: Wanted sample rate in Hz.

    Returns:
        Waveform ``[..., ceil(T * new_rate / orig_rate)]`` (the input itself when the rates are equal).
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise InputError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wav
    module = _resampler(int(orig_rate), int(new_rate))
    if module.kernel.device != wav.device or module.kernel.dtype != wav.dtype:
        return torchaudio.functional.resample(wav, orig_rate, new_rate)
    with torch.no_grad():
        return module(wav)


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file, say how its ``data`` chunk is cut short (libsndfile silently reads what is there).

    Returns ``None`` for files that are whole, are not RIFF/WAVE, or whose writer left the size unknown
    (0 or 0xFFFFFFFF, as streaming writers do).
    """
    try:
        with open(path, "rb") as f:
            header = f.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk = f.read(8)
                chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if chunk_id == b"data":
                    if chunk_size in (0, 0xFFFFFFFF):
                        return None
                    available = size - pos - 8
                    if available < chunk_size:
                        return f"header says {chunk_size} bytes of samples, the file holds {available}"
                    return None
                pos += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """Header facts of an audio file without reading its samples.

    Args:
        path: Audio file.

    Returns:
        ``(num_frames, sample_rate, channels)`` as stated by the file's header.

    Raises:
        InputError: The file is missing, not an audio file soundfile can read, or a wav file shorter than its
            header says.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise InputError(f"cannot read audio file {path}: {e}") from None
    cut = _wav_truncation(path)
    if cut is not None:
        raise InputError(f"audio file is truncated ({cut}): {path}")
    return int(info.frames), int(info.samplerate), int(info.channels)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = 16000,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform.

    Multi-channel audio is averaged to mono; integer PCM becomes float in [-1, 1); the result is resampled to
    ``sample_rate`` when the file has another rate.

    Args:
        path: A wav, flac or ogg file (any format libsndfile reads).
        sample_rate: Wanted rate in Hz; ``None`` keeps the file's rate.
        max_seconds: Longest accepted duration (checked from the header, before reading the samples);
            ``None`` accepts any length.

    Returns:
        Waveform ``[T]``, float32.

    Raises:
        InputError: The file is missing, unreadable, truncated (fewer samples than its header states), empty,
            longer than ``max_seconds``, or holds NaN or infinite samples. The message names the file.
    """
    path = Path(path)
    frames, file_rate, _ = audio_info(path)
    if frames == 0:
        raise InputError(f"audio file is empty (0 samples): {path}")
    if max_seconds is not None and frames / file_rate > max_seconds:
        raise InputError(
            f"audio file is {frames / file_rate:.2f} s long, more than max_seconds={max_seconds:g}: {path}")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise InputError(f"cannot read audio file {path}: {e}") from None
    if data.shape[0] < frames:
        raise InputError(
            f"audio file is truncated: header says {frames} samples, only {data.shape[0]} could be read: {path}")
    if data.shape[0] == 0:
        raise InputError(f"audio file is empty (0 samples): {path}")
    if not np.isfinite(data).all():
        raise InputError(f"audio file holds NaN or infinite samples: {path}")
    wav = torch.from_numpy(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0].copy())
    if sample_rate is not None and sample_rate != file_rate:
        wav = resample(wav, file_rate, sample_rate)
    return wav


def check_waveform(wav: np.ndarray | torch.Tensor | list[float], name: str = "waveform") -> torch.Tensor:
    """Validate an in-memory waveform and return it as a mono float32 tensor.

    Args:
        wav: Samples ``[T]`` or channels-first ``[C, T]`` (averaged to mono). Integer arrays (int8, int16,
            int32) are scaled to [-1, 1); floats are taken as they are.
        name: What to call the input in error messages (a file name, ``"inputs[3]"``, ...).

    Returns:
        Waveform ``[T]``, float32, on the input's device for tensors.

    Raises:
        InputError: ``wav`` is not numeric, has more than two dimensions, is empty, or holds NaN/inf values.
    """
    if isinstance(wav, torch.Tensor):
        tensor = wav.detach()
        if tensor.dtype in (torch.int16, torch.int32, torch.int8):
            tensor = tensor.to(torch.float32) / _INT_SCALE[np.dtype(str(tensor.dtype).removeprefix("torch."))]
        elif not tensor.is_floating_point():
            raise InputError(
                f"{name}: waveform must hold float samples or int8/int16/int32 PCM, got dtype {tensor.dtype}")
    else:
        try:
            array = np.asarray(wav)
        except (ValueError, TypeError) as e:
            raise InputError(f"{name}: cannot convert to an array of samples: {e}") from None
        if array.dtype in _INT_SCALE:
            array = array.astype(np.float32) / _INT_SCALE[array.dtype]
        elif array.dtype.kind != "f":
            raise InputError(
                f"{name}: waveform must hold float samples or int8/int16/int32 PCM, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.dim() == 2:
        tensor = tensor.mean(dim=0)
    elif tensor.dim() != 1:
        raise InputError(f"{name}: waveform must be [T] or [channels, T], got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise InputError(f"{name}: waveform is empty (0 samples)")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise InputError(f"{name}: waveform holds NaN or infinite samples")
    return tensor


def save_audio(path: str | os.PathLike, wav: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write a waveform as 16-bit PCM wav, atomically (a temporary file in the same folder, then a rename).

    Samples outside [-1, 1] are clipped. A reader never sees a half-written file: it sees the old file or the
    new one.

    Args:
        path: Destination ``.wav`` file; its folder is created if missing.
        wav: Samples ``[T]`` or channels-first ``[C, T]``, float in [-1, 1] (or integer PCM).
        sample_rate: Sample rate in Hz.

    Returns:
        The path written.

    Raises:
        InputError: The waveform is empty or not finite, or the sample rate is not positive.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise InputError(f"cannot write {path}: sample_rate must be positive, got {sample_rate}")
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu()
    tensor = torch.as_tensor(np.asarray(wav))
    if tensor.dim() == 2:
        channels = [check_waveform(c, name=str(path)) for c in tensor]
        data = torch.stack(channels, dim=1).numpy()  # soundfile wants [T, C]
    else:
        data = check_waveform(tensor, name=str(path)).numpy()
    data = np.clip(data, -1.0, 1.0)
    with atomic_file(path, "wb") as f:
        sf.write(f, data, sample_rate, subtype="PCM_16", format="WAV")
    return path
