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


def _tap_groups(x: Tensor, kernel: int, stride: int, t_out: int) -> list[tuple[int, int, Tensor]]:
    """The windows of ``x [B, T, C]`` split into groups of at most ``stride`` taps: ``(first tap, taps, view
    [B, T_out, taps * C])``. Within a group consecutive windows do not overlap (row stride ``stride * C`` >=
    row width), which is a layout matrix-product kernels read in place; whole windows would need a copy."""
    b, t, c = x.shape
    groups = []
    for first in range(0, kernel, stride):
        taps = min(stride, kernel - first)
        view = x.as_strided((b, t_out, taps * c), (t * c, stride * c, 1), x.storage_offset() + first * c)
        groups.append((first, taps, view))
    return groups


class _TimeMajorConv1d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        c_out, c_in, kernel = weight.shape
        x = x.contiguous()
        t_out = (x.shape[1] - kernel) // stride + 1
        w = weight.permute(0, 2, 1).reshape(c_out, kernel * c_in)  # [C_out, k * C]: tap-major like the windows
        y = x.new_empty(x.shape[0], t_out, c_out)
        groups = [(view, w[:, first * c_in : (first + taps) * c_in].t())
                  for first, taps, view in _tap_groups(x, kernel, stride, t_out)]
        for row in range(x.shape[0]):  # 2-d products read the strided windows in place
            (view, w_group), rest = groups[0], groups[1:]
            if bias is None:
                torch.mm(view[row], w_group, out=y[row])
            else:
                torch.addmm(bias, view[row], w_group, out=y[row])
            for view, w_group in rest:
                y[row].addmm_(view[row], w_group)
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.kernel, ctx.has_bias = stride, kernel, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, w = ctx.saved_tensors
        stride, kernel = ctx.stride, ctx.kernel
        b, _, c = x.shape
        grad_y = grad_y.contiguous()
        t_out = grad_y.shape[1]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            groups = _tap_groups(grad_x, kernel, stride, t_out)
            for row in range(b):
                for first, taps, view in groups:  # input step stride * t + i gets tap i of output t
                    view[row].addmm_(grad_y[row], w[:, first * c : (first + taps) * c])
        if ctx.needs_input_grad[1]:
            grad_wm = w.new_zeros(w.shape)
            for first, taps, view in _tap_groups(x, kernel, stride, t_out):
                part = grad_wm[:, first * c : (first + taps) * c]
                for row in range(b):
                    part.addmm_(grad_y[row].t(), view[row])
            grad_w = grad_wm.view(-1, kernel, c).permute(0, 2, 1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 1))
        return grad_x, grad_w, grad_b, None


def conv1d_time_major(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """``F.conv1d`` without padding on time-major input: ``x [B, T, C_in]``, ``weight [C_out, C_in, k]`` (the
    ``nn.Conv1d`` layout) -> ``[B, T_out, C_out]``, ``T_out = (T - k) // stride + 1``."""
    if x.shape[1] < weight.shape[2]:
        raise ValueError(f"input of {x.shape[1]} steps is shorter than the kernel ({weight.shape[2]})")
    return _TimeMajorConv1d.apply(x, weight, bias, stride)
