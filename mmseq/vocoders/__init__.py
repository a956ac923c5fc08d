"""Vocoders: mel frames ``[B, T, n_mels]`` -> waveforms ``[B, T * samples_per_frame]``."""

from mmseq.vocoders.discriminators import HifiGanDiscriminator
from mmseq.vocoders.griffin_lim import GriffinLimVocoder
from mmseq.vocoders.hifigan import HifiGan

__all__ = ["GriffinLimVocoder", "HifiGan", "HifiGanDiscriminator"]
