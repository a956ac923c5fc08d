"""Log-mel speech encoder pre-net: a CPU-practical alternative to the waveform convolutions of SpeechT5.

Raw 16 kHz waveform ``[B, S]`` -> log-mel filterbank (torchaudio, inside the pre-net: the model still reads
waveforms) -> optional utterance mean/variance normalisation -> ESPnet's ``Conv2dSubsampling``: two 3x3
convolutions with stride 2 over (time, mel) + ReLU, flattened channels x mel bins, a linear layer to the model
width -> the same position treatment as :class:`~mmseq.prenets.speech.SpeechEncoderPrenet` (SpecAugment time
masking with a learned mask embedding while training, a convolutional position embedding and fairseq sinusoidal
positions).

Frames are taken without centring (``center=False``), frame ``t`` covering samples ``[t * hop, t * hop + n_fft)``,
and the convolutions have no padding, so every valid output depends on valid input only: a row's outputs are the
same padded in a batch as alone, and the output lengths are exact,
``frames = (S - n_fft) // hop + 1`` then ``(L - 3) // 2 + 1`` twice. At the defaults (25 ms windows, 10 ms hop)
one output step is 40 ms (``downsample_rate`` 640 samples), twice the waveform pre-net's 20 ms.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor

from mmseq.nn.dropout import Dropout
from mmseq.nn.linear import Linear
from mmseq.prenets.speech import add_position_treatment, check_waveforms, mask_and_position, waveform_dummy_inputs

SUBSAMPLING_KERNEL, SUBSAMPLING_STRIDE = 3, 2  # each of the two convolutions


def _subsampled(length: Tensor | int) -> Tensor | int:
    for _ in range(2):
        length = (length - SUBSAMPLING_KERNEL) // SUBSAMPLING_STRIDE + 1
    return length


class LogMelFeatures(nn.Module):
    """Waveform ``[B, S]`` -> natural-log mel power spectrogram ``[B, T, n_mels]`` (float32, no parameters).

    Args:
        sample_rate: of the input.
        n_fft / win_length / hop_length: STFT sizes in samples (Hann window, periodic).
        num_mel_bins: mel bands (Slaney-normalised triangular filters on the Slaney mel scale, as librosa).
        f_min / f_max: band range in Hz (``f_max`` None: half the sample rate).
        floor: power floor before the logarithm.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int = 400, hop_length: int = 160,
                 num_mel_bins: int = 80, f_min: float = 0.0, f_max: float | None = None, floor: float = 1e-10):
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} must not exceed n_fft {n_fft}")
        self.n_fft, self.win_length, self.hop_length, self.floor = n_fft, win_length, hop_length, floor
        # Recomputed, never saved: checkpoints carry no copy of them.
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max if f_max is not None else sample_rate / 2,
                                   num_mel_bins, sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("mel_filters", fbank, persistent=False)  # [n_fft // 2 + 1, n_mels]

    def num_frames(self, samples: Tensor) -> Tensor:
        """Frames of ``samples`` (``[B]``) valid samples: ``(S - n_fft) // hop + 1`` (0 when shorter)."""
        return (torch.div(samples - self.n_fft, self.hop_length, rounding_mode="floor") + 1).clamp(min=0)

    def forward(self, wav: Tensor) -> Tensor:
        power = AF.spectrogram(wav.float(), pad=0, window=self.window.float(), n_fft=self.n_fft,
                               hop_length=self.hop_length, win_length=self.win_length, power=2.0,
                               normalized=False, center=False)  # [B, F, T]
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters.float())
        return mel.clamp_min(self.floor).log()


class Conv2dSubsampling(nn.Module):
    """ESPnet's 4x time subsampling: ``[B, T, n_mels]`` -> two ``Conv2d(3x3, stride 2)`` + ReLU -> flatten
    ``channels x n_mels'`` -> ``Linear`` -> ``[B, T', dim]`` with ``T' = ((T - 3) // 2 + 1 - 3) // 2 + 1``."""

    def __init__(self, num_mel_bins: int, channels: int, dim: int):
        super().__init__()
        self.conv = nn.ModuleList([nn.Conv2d(1, channels, SUBSAMPLING_KERNEL, SUBSAMPLING_STRIDE),
                                   nn.Conv2d(channels, channels, SUBSAMPLING_KERNEL, SUBSAMPLING_STRIDE)])
        self.out = Linear(channels * _subsampled(num_mel_bins), dim)

    def forward(self, features: Tensor) -> Tensor:
        x = features[:, None]  # [B, 1, T, n_mels]
        for conv in self.conv:
            x = F.relu(conv(x))
        b, c, t, f = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f))


class LogMelPrenet(nn.Module):
    """Raw waveform ``[B, S]`` -> ``[B, T, D]`` at one step per ``downsample_rate`` samples (log-mel front-end).

    Args:
        dim: output width D.
        num_mel_bins: log-mel bands.
        channels: channels of the two subsampling convolutions (ESPnet uses D; fewer are cheaper).
        sample_rate / n_fft / win_length / hop_length / f_min / f_max: the filterbank (:class:`LogMelFeatures`).
        utterance_norm: normalise each mel band to zero mean and unit variance over the row's valid frames.
        pos_conv_kernel / pos_conv_groups: the convolutional position embedding (kernel 0: none).
        feature_dropout: dropout after the projection.
        mask_time_prob / mask_time_length / mask_time_min_masks: SpecAugment over output steps (training only),
            spans replaced by a learned embedding, as the waveform pre-net does.
        max_positions: initial size of the sinusoidal position table (grows on demand).
        padding_idx: position id of padding (SpeechT5: the text pad id, 1).
    """

    modality = "waveform"

    def __init__(self, dim: int = 768, num_mel_bins: int = 80, channels: int = 256, sample_rate: int = 16000,
                 n_fft: int = 400, win_length: int = 400, hop_length: int = 160, f_min: float = 0.0,
                 f_max: float | None = None, utterance_norm: bool = True, pos_conv_kernel: int = 128,
                 pos_conv_groups: int = 16, feature_dropout: float = 0.0, mask_time_prob: float = 0.05,
                 mask_time_length: int = 10, mask_time_min_masks: int = 2, max_positions: int = 4000,
                 padding_idx: int = 1, norm_eps: float = 1e-5):
        super().__init__()
        if _subsampled(num_mel_bins) < 1:
            raise ValueError(f"num_mel_bins {num_mel_bins} is too few for two 3x3 stride-2 convolutions (>= 7)")
        self.output_dim = dim
        self.downsample_rate = hop_length * SUBSAMPLING_STRIDE ** 2
        self.features = LogMelFeatures(sample_rate, n_fft, win_length, hop_length, num_mel_bins, f_min, f_max)
        self.utterance_norm, self.norm_eps = utterance_norm, norm_eps
        self.subsampling = Conv2dSubsampling(num_mel_bins, channels, dim)
        self.dropout = Dropout(feature_dropout)
        add_position_treatment(self, dim, pos_conv_kernel, pos_conv_groups, mask_time_prob, mask_time_length,
                               mask_time_min_masks, max_positions, padding_idx)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Output steps of rows of ``lengths [B]`` samples (0 for rows shorter than :attr:`receptive_field`)."""
        return _subsampled(self.features.num_frames(lengths)).clamp(min=0)

    @property
    def receptive_field(self) -> int:
        """Fewest input samples that give one output step: 7 frames."""
        frames = 1
        for _ in range(2):
            frames = (frames - 1) * SUBSAMPLING_STRIDE + SUBSAMPLING_KERNEL
        return self.features.n_fft + (frames - 1) * self.features.hop_length

    def _normalise(self, feats: Tensor, frames: Tensor) -> Tensor:
        """Per-row, per-band mean / variance over the valid frames; padded frames set to 0."""
        valid = (torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None])[..., None]
        if not self.utterance_norm:
            return feats.masked_fill(~valid, 0.0)
        weight = valid.to(feats.dtype)
        count = weight.sum(1, keepdim=True)
        mean = (feats * weight).sum(1, keepdim=True) / count
        var = ((feats - mean).square() * weight).sum(1, keepdim=True) / count
        return ((feats - mean) * torch.rsqrt(var + self.norm_eps)).masked_fill(~valid, 0.0)

    def forward(self, wav: Tensor, lengths: Tensor | None = None,
                time_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``wav [B, S]`` float, ``lengths [B]`` in samples -> ``([B, T, D], lengths [B])``.

        Args:
            time_mask: optional ``[B, T]`` bool steps to replace by the mask embedding (otherwise drawn while
                training when ``mask_time_prob > 0``).
        """
        lengths = check_waveforms(wav, lengths, self.receptive_field, "log-mel pre-net")
        feats = self.features(wav)
        feats = self._normalise(feats, self.features.num_frames(lengths).clamp(max=feats.shape[1]))
        x = self.dropout(self.subsampling(feats.to(self.masked_spec_embed.dtype)))
        out_lengths = self.output_lengths(lengths).clamp(max=x.shape[1])
        return mask_and_position(self, x, out_lengths, time_mask), out_lengths

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, Tensor]:
        return waveform_dummy_inputs(self, batch_size)
