import pytest
import torch

from mmseq.vocoders import GriffinLimVocoder


@pytest.mark.parametrize("frames", [0, 1, 2, 3, 6])
def test_short_mels_give_a_waveform_of_their_length(frames):
    """A model that stops after a frame or two must still be heard (the STFT needs n_fft // 2 samples)."""
    torch.manual_seed(0)
    wav = GriffinLimVocoder(n_iter=2)(torch.randn(2, frames, 80) - 3.0)
    assert wav.shape == (2, frames * 256)
    assert torch.isfinite(wav).all()
