import pytest
import torch

from mmseq.nn.conv import conv1d_time_major


@pytest.mark.parametrize("kernel, stride, bias", [(3, 2, False), (2, 2, True), (10, 5, False), (3, 1, True)])
def test_time_major_conv_equals_conv1d_forward_and_backward(kernel, stride, bias):
    torch.manual_seed(0)
    x = torch.randn(3, 23, 6, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, 6, kernel, dtype=torch.double, requires_grad=True)
    b = torch.randn(4, dtype=torch.double, requires_grad=True) if bias else None
    ref = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, stride=stride).transpose(1, 2)
    torch.testing.assert_close(conv1d_time_major(x, w, b, stride), ref)
    assert torch.autograd.gradcheck(lambda x, w, b: conv1d_time_major(x, w, b, stride), (x, w, b))
