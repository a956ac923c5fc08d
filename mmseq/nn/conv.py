"""Strided 1-d convolution on time-major features as one matrix product per row, forward and backward.

A convolution with kernel ``k`` and stride ``s`` over ``x [B, T, C]`` (time-major, contiguous) reads, for output
step ``t``, the ``k * C`` consecutive numbers starting at ``x[b, s * t]``. Those windows are rows of a strided
view of ``x`` (row stride ``s * C``, no copy), so the convolution is ``window_view @ W.T`` with the weight laid
out as ``[C_out, k * C]``, and its backward is two more matrix products plus ``k`` strided additions.

On the CPU the wav2vec 2.0 feature encoder's 512 -> 512 layers (``k`` 3 or 2, stride 2) spend most of their
time in the convolution backward, which oneDNN runs at about half the speed of a matrix product of the same
size; this formulation runs both directions at matrix-product speed and keeps features time-major, so the
encoder needs no transpose afterwards. ``bench/speecht5_vs_transformers.py`` (training row) measures the effect.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _windows(x: Tensor, kernel: int, stride: int) -> Tensor:
    """``x [B, T, C]`` -> overlapping windows ``[B, T_out, kernel * C]`` (a view)."""
    b, t, c = x.shape
    t_out = (t - kernel) // stride + 1
    return x.as_strided((b, t_out, kernel * c), (t * c, stride * c, 1), x.storage_offset())


class _TimeMajorConv1d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        c_out, c_in, kernel = weight.shape
        x = x.contiguous()
        w = weight.permute(0, 2, 1).reshape(c_out, kernel * c_in)  # [C_out, k * C]: tap-major like the windows
        windows = _windows(x, kernel, stride)
        y = x.new_empty(x.shape[0], windows.shape[1], c_out)
        for row in range(x.shape[0]):  # a 2-d product per row reads the strided windows in place
            if bias is None:
                torch.mm(windows[row], w.t(), out=y[row])
            else:
                torch.addmm(bias, windows[row], w.t(), out=y[row])
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.kernel, ctx.has_bias = stride, kernel, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, w = ctx.saved_tensors
        stride, kernel = ctx.stride, ctx.kernel
        b, t, c = x.shape
        c_out = w.shape[0]
        grad_y = grad_y.contiguous()
        t_out = grad_y.shape[1]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_windows = torch.mm(grad_y.view(b * t_out, c_out), w).view(b, t_out, kernel, c)
            grad_x = x.new_zeros(b, t, c)
            span = stride * (t_out - 1) + 1
            for tap in range(kernel):  # window tap i of output t is input step stride * t + i
                grad_x[:, tap : tap + span : stride] += grad_windows[:, :, tap]
        if ctx.needs_input_grad[1]:
            windows = _windows(x, kernel, stride)
            grad_wm = torch.mm(grad_y[0].t(), windows[0])
            for row in range(1, b):
                grad_wm.addmm_(grad_y[row].t(), windows[row])
            grad_w = grad_wm.view(c_out, kernel, c).permute(0, 2, 1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 1))
        return grad_x, grad_w, grad_b, None


def conv1d_time_major(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """``F.conv1d`` without padding on time-major input: ``x [B, T, C_in]``, ``weight [C_out, C_in, k]`` (the
    ``nn.Conv1d`` layout) -> ``[B, T_out, C_out]``, ``T_out = (T - k) // stride + 1``."""
    if x.shape[1] < weight.shape[2]:
        raise ValueError(f"input of {x.shape[1]} steps is shorter than the kernel ({weight.shape[2]})")
    return _TimeMajorConv1d.apply(x, weight, bias, stride)
