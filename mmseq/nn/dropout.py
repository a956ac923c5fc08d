"""Dropout whose CPU mask costs a fraction of ``torch.bernoulli_``.

On the CPU, ``F.dropout`` draws one Mersenne-Twister number per element through ``bernoulli_``. For the
attention probabilities and hidden states of a small model that is the largest single cost of a training step
(``bench/dropout.py`` compares the two; ``bench/README.md`` has its numbers). Here each 64-bit word of numpy's
SFC64 generator gives four independent 16-bit lanes, each compared with a threshold: a quarter of the draws, from
a faster generator, and no floating-point conversion. The drop probability is rounded to a multiple of 1/65536 (at
most 7.7e-6 away from ``p``). Each mask's SFC64 stream is seeded by one draw from torch's generator (the default
one, or the one given), so ``torch.manual_seed`` still makes runs repeatable.

This mask is a CPU specialisation and is used only there. On other devices ``F.dropout`` runs (GPU kernels draw
their masks from a counter-based generator that is already cheap), or, with an explicit ``generator``, a mask from
``torch.rand`` on the generator's device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None = None) -> Tensor:
    """CPU boolean tensor of ``shape``, each element False (dropped) with probability ``round(p * 65536) / 65536``."""
    n = 1
    for size in shape:
        n *= int(size)
    seed_device = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=seed_device))
    lanes = np.random.SFC64(seed).random_raw(-(-n // 4)).view(np.int16)[:n]  # each uniform over [-32768, 32767]
    return torch.from_numpy(lanes >= round(p * 65536) - 32768).view(shape)


def dropout(x: Tensor, p: float, training: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """``F.dropout`` with the cheaper CPU mask above (same scaling of kept values by ``1 / (1 - p)``)."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if p == 1.0:
        return x * 0.0
    if x.device.type != "cpu":
        if generator is None:
            return F.dropout(x, p, training=True)
        keep = torch.rand(x.shape, generator=generator, device=generator.device) >= p
        return x * keep.to(device=x.device, dtype=x.dtype).mul_(1.0 / (1.0 - p))
    # bool -> uint8 -> float is several times faster than bool -> float on the CPU; autograd saves only the
    # scaled mask for the backward of the product.
    scaled = keep_mask(x.shape, p, generator).view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * scaled.to(x.device)


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout`` (same ``p`` attribute, same train/eval behaviour) using :func:`dropout`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
