"""The positional encodings equal the ones SpeechT5 uses in transformers (the peer implementation)."""

import pytest
import torch

from mmseq.nn.positional import (ConvPositionalEmbedding, ScaledPositionalEncoding, SinusoidalPositionalEmbedding,
                                 make_positions)

speecht5 = pytest.importorskip("transformers.models.speecht5.modeling_speecht5")


def test_fairseq_sinusoidal_equals_transformers():
    ref = speecht5.SpeechT5SinusoidalPositionalEmbedding(600, 32, padding_idx=1)
    ours = SinusoidalPositionalEmbedding(32, padding_idx=1)
    ids = torch.tensor([[5, 6, 7, 8, 1, 1], [5, 6, 7, 8, 9, 10]])
    expected = ref(ids)
    got = ours(make_positions(ids.eq(1), padding_idx=1))
    torch.testing.assert_close(got, expected)
    # Incremental: the last step with 5 steps already decoded.
    torch.testing.assert_close(ours(make_positions(ids[:, -1:].eq(1), 1, past_length=5)),
                               ref(ids[:, -1:], 5))


def test_table_grows_beyond_initial_size():
    ours = SinusoidalPositionalEmbedding(8, padding_idx=1, init_size=4)
    out = ours(torch.tensor([[10]]))
    assert out.shape == (1, 1, 8) and ours.weights.shape[0] == 11


def test_scaled_positional_encoding_equals_transformers():
    ref = speecht5.SpeechT5ScaledPositionalEncoding(0.0, 32, max_len=100)
    ours = ScaledPositionalEncoding(32)
    with torch.no_grad():
        ref.alpha.fill_(0.7)
        ours.alpha.fill_(0.7)
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours(x[:, 3:4], offset=3), ref(x)[:, 3:4])


def test_conv_positional_embedding_keeps_length_and_uses_weight_norm_keys():
    conv = ConvPositionalEmbedding(32, kernel_size=8, groups=4)
    assert conv(torch.randn(2, 11, 32)).shape == (2, 11, 32)
    keys = set(conv.state_dict())
    assert {"conv.parametrizations.weight.original0", "conv.parametrizations.weight.original1"} <= keys
