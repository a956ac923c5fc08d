"""Griffin-Lim phase reconstruction (torchaudio) for SpeechT5 log10 mel frames, when no vocoder weights exist."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchaudio
from torch import Tensor


class GriffinLimVocoder(nn.Module):
    """``[B, T, n_mels]`` log10 Slaney mel (SpeechT5 features) -> ``[B, T * hop]`` waveform.

    Inverts the mel filterbank by least squares (torchaudio ``InverseMelScale``), then iterates Griffin-Lim.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 80,
                 f_min: float = 80.0, f_max: float = 7600.0, n_iter: int = 32):
        super().__init__()
        self.samples_per_frame, self.sampling_rate = hop_length, sample_rate
        self.min_frames = n_fft // hop_length + 2
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max,
            norm="slaney", mel_scale="slaney")
        self.griffin_lim = torchaudio.transforms.GriffinLim(n_fft=n_fft, hop_length=hop_length, power=1.0,
                                                            n_iter=n_iter)

    def forward(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        frames = mel.shape[1]
        if frames == 0:
            return mel.new_zeros(mel.shape[0], 0, dtype=torch.float32)
        # Griffin-Lim gives (frames - 1) * hop samples and its STFT needs more than n_fft // 2 of them: pad with the
        # quietest frame (at least one, more for a model that stopped at once) and cut back to frames * hop.
        pad = max(1, self.min_frames - frames)
        floor = mel.amin(dim=(1, 2), keepdim=True).expand(-1, pad, mel.shape[2])
        mel = torch.cat([mel, floor], dim=1)
        linear = self.inverse_mel(torch.pow(10.0, mel.float()).transpose(1, 2)).clamp(min=0)
        wav = self.griffin_lim(linear)
        return wav[:, : frames * self.samples_per_frame]
