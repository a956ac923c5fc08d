"""``nn.Linear`` with a faster path for single-row bf16 inference on the CPU.

Incremental decoding at batch 1 multiplies each weight matrix by one vector, which is bound by how fast the
weights stream from memory. On the CPU, torch's bf16 ``mv`` kernel streams about 1.5x faster than the bf16
``addmm`` that ``F.linear`` dispatches to for a ``[1, in]`` input (measured in bench/speecht5_vs_transformers.py's
notes), so one-row bf16 inputs take ``mv``. Everything else, and every parameter name, is ``nn.Linear``'s.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        if (x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.numel() == self.in_features
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))):
            y = torch.mv(self.weight, x.reshape(-1))
            if self.bias is not None:
                y = y + self.bias
            return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)
