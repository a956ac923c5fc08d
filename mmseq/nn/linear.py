"""``nn.Linear`` with faster paths for bf16 inference on CPUs without native bf16 matrix units.

Incremental decoding at batch 1 multiplies each weight matrix by one vector, which is bound by how fast the
weights stream from memory: there torch's bf16 ``mv`` kernel streams about 1.5x faster than fp32, while the
bf16 ``addmm`` that ``F.linear`` dispatches to is no faster than fp32. With many rows (an encoder output
projected once for cross-attention) the product is compute-bound and CPU bf16 ``addmm`` is several times slower
than fp32, so the weights are upcast for it. A single fp32 row without gradients uses ``addmv`` too: the
``addmm`` that ``F.linear`` dispatches to costs several times more for one row of a small matrix (the speech
decoder pre-net and post-net heads, run once per generated frame). Parameter names and every other case are
``nn.Linear``'s.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseq.nn.incremental import project


class Linear(nn.Linear):
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
