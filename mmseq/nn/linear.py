"""Linear products for decoding: one-row matrix-vector products, reduced-precision weights on a CPU.

Incremental decoding at batch 1 multiplies each weight matrix by one vector, which is bound by how fast the
weights stream from memory. :func:`project` runs such a product as ``mv`` / ``addmv`` (the weights streamed once,
the bias fused), which the ``addmm`` that ``F.linear`` dispatches to does not do for one row. With reduced-precision
weights on a CPU (no native bf16/fp16 arithmetic) the input row is rounded to the weights' dtype and the product
handed back in the compute dtype; many rows use an fp32 copy of the weights, because CPU bf16/fp16 matrix products
are compute-bound and slow there. ``python bench/matvec.py`` measures these choices (``bench/README.md``).

:class:`Linear` is ``nn.Linear`` (same parameter names) that takes these paths on the CPU when no gradient is
needed; every other case, and every other device, is ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

REDUCED = (torch.bfloat16, torch.float16)


def compute_dtype(x: Tensor, weight_dtype: torch.dtype) -> torch.dtype:
    """fp32 for reduced-precision weights on a CPU (no native bf16/fp16 arithmetic there); else the input's."""
    if x.device.type == "cpu" and weight_dtype in REDUCED:
        return torch.float32
    return x.dtype


def project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x [N, in] @ weight.T + bias``; ``x`` and ``bias`` in the compute dtype, ``weight`` in its own.

    One row streams the weights once (``mv``); with reduced-precision weights on a CPU the row is rounded to the
    weights' dtype and the product returned in the compute dtype. Many rows with reduced-precision CPU weights
    use an fp32 copy of the weights.
    """
    if weight.dtype == x.dtype:
        if x.shape[0] == 1:
            if bias is None:
                y = torch.mv(weight, x.view(-1))
            elif weight.dtype in REDUCED and weight.device.type == "cpu":
                y = torch.mv(weight, x.view(-1)).add_(bias)  # CPU bf16 addmv is slower than mv and an add
            else:
                y = torch.addmv(bias, weight, x.view(-1))
            return y.view(1, -1)
        return F.linear(x, weight, bias)
    if x.shape[0] == 1:
        y = torch.mv(weight, x.view(-1).to(weight.dtype)).to(x.dtype).view(1, -1)
        return y if bias is None else y.add_(bias)
    return F.linear(x, weight.to(x.dtype), bias)


class Linear(nn.Linear):
    """``nn.Linear`` with :func:`project` for one CPU row without gradients, and fp32 products for bf16 rows."""

    def forward(self, x: Tensor) -> Tensor:
        if (x.device.type != "cpu" or x.dtype != self.weight.dtype
                or (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))):
            return F.linear(x, self.weight, self.bias)
        if x.numel() == self.in_features:  # one row: stream the weights
            return project(x.reshape(1, -1), self.weight, self.bias).view(*x.shape[:-1], self.out_features)
        if x.dtype != torch.bfloat16:
            return F.linear(x, self.weight, self.bias)
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), self.weight.float(), bias).to(torch.bfloat16)
