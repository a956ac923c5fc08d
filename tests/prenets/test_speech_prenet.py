"""The speech encoder pre-net's CPU specialisations (time-major convolutions, the folded GroupNorm) equal the plain
torch operators other devices run, forward and backward, padded rows included."""

import pytest
import torch

from mmseq.prenets.speech import ConvLayer


@pytest.mark.parametrize("first", [True, False])
def test_cpu_paths_equal_the_plain_reference(first):
    torch.manual_seed(0)
    layer = ConvLayer(1 if first else 6, 8, 10 if first else 3, 5 if first else 2, bias=not first, group_norm=first)
    with torch.no_grad():
        if first:
            layer.layer_norm.weight.uniform_(0.5, 1.5)
            layer.layer_norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 400, 1 if first else 6, dtype=torch.double, requires_grad=True)
    layer = layer.double()
    out_steps = (400 - layer.conv.kernel_size[0]) // layer.conv.stride[0] + 1
    lengths = torch.tensor([out_steps, out_steps - 20, out_steps - 37])
    fast = layer(x, lengths)
    reference = layer.reference(x, lengths)
    torch.testing.assert_close(fast, reference)
    grads = [torch.autograd.grad(out.square().sum(), [x, layer.conv.weight]) for out in (fast, reference)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    # padding never changes a row's valid outputs on either path
    n = int(lengths[2]) * layer.conv.stride[0] + layer.conv.kernel_size[0] - layer.conv.stride[0]
    alone = layer.reference(x[2:, :n], lengths[2:])
    torch.testing.assert_close(reference[2, : lengths[2]], alone[0, : lengths[2]])
