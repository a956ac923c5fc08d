"""Shared helpers of the SpeechT5 parity tests."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
def hf_config(**overrides):
    """A small SpeechT5 config with every size dimension shrunk (same code paths as base)."""
    base = dict(vocab_size=81, hidden_size=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=64, conv_dim=[32, 32, 32],
                conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2], num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, encoder_max_relative_position=16, speech_decoder_prenet_units=16,
                speaker_embedding_dim=8, speech_decoder_postnet_units=16, num_mel_bins=16,
                max_text_positions=64, max_speech_positions=256)
    return transformers.SpeechT5Config(**{**base, **overrides})


def randomize_batchnorm(model):
    """Give BatchNorm running statistics non-trivial values so the post-net parity is meaningful."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
