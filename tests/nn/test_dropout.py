"""mmseq.nn.dropout: the cheaper CPU mask must still be dropout (rate, independence, scaling, gradients, seeding)."""

import math

import pytest
import torch

from mmseq.nn.attention import MultiheadAttention
from mmseq.nn.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_drop_rate_matches_p(p):
    mask = ~keep_mask((400, 1000), p, generator=torch.Generator().manual_seed(1))
    n = mask.numel()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(mask.float().mean().item() - p) < 5 * sd


def test_every_lane_and_position_is_unbiased():
    """Each of the four 16-bit lanes of a draw (and so every element index mod 4) drops at rate p, and
    neighbouring elements are independent (pairs dropped together at rate p**2)."""
    p = 0.1
    mask = (~keep_mask((4_000_000,), p, generator=torch.Generator().manual_seed(2))).float()
    lanes = mask.view(-1, 4).mean(0)
    sd = math.sqrt(p * (1 - p) / 1_000_000)
    assert (lanes - p).abs().max().item() < 5 * sd
    both = (mask[:-1] * mask[1:]).mean().item()
    assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / mask.numel())


def test_seeded_masks_repeat_and_successive_masks_differ():
    a = keep_mask((64, 64), 0.3, generator=torch.Generator().manual_seed(7))
    b = keep_mask((64, 64), 0.3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(7)
    assert not torch.equal(keep_mask((64, 64), 0.3, generator=g), keep_mask((64, 64), 0.3, generator=g))
    torch.manual_seed(3)
    c = dropout(torch.ones(1000), 0.5)
    torch.manual_seed(3)
    assert torch.equal(c, dropout(torch.ones(1000), 0.5))


def test_forward_scales_kept_values_and_backward_uses_the_same_mask():
    x = torch.randn(50, 70, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.25)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(x.grad, torch.where(kept, g / 0.75, torch.zeros_like(g)))


def test_module_is_identity_in_eval_and_at_p_zero():
    x = torch.randn(8, 16)
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert "p=0.5" in repr(module)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_reduced_precision_input_keeps_its_dtype():
    x = torch.randn(32, 32, dtype=torch.bfloat16)
    assert dropout(x, 0.1).dtype == torch.bfloat16


def test_attention_dropout_on_cpu_is_unbiased():
    """Training-mode attention on the CPU drops its probabilities with this dropout: each output differs from
    the eval output, and their mean over many masks converges to it (inverted dropout is unbiased)."""
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, dropout=0.2).train()
    x = torch.randn(4, 50, 8)
    out, _ = mha(x)
    assert out.shape == (4, 50, 8)
    mha.eval()
    ref, _ = mha(x)
    assert not torch.allclose(out, ref)
    mha.train()
    mean = torch.stack([mha(x)[0] for _ in range(200)]).mean(0)
    assert (mean - ref).abs().mean() < 0.1 * ref.abs().mean()
