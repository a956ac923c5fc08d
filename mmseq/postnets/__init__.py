"""Post-nets: map trunk states ``(hidden [B, T, D], lengths)`` back to a modality, to logits or to loss inputs.

:class:`PostnetDict` holds several named post-nets in one slot of a composition (a text head beside contrastive
projection heads, a CTC head beside another encoder head): it calls each on the same states and returns a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from torch import Tensor


class PostnetDict(nn.ModuleDict):
    """Named post-nets on the same hidden states: ``forward(hidden, lengths) -> {name: outputs}``.

    Parameters are named ``<slot>.<name>.*`` in checkpoints.
    """

    def __init__(self, postnets: Mapping[str, nn.Module]):
        if not postnets:
            raise ValueError("PostnetDict needs at least one post-net")
        super().__init__(postnets)

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> dict[str, Any]:
        return {name: postnet(hidden, lengths) for name, postnet in self.items()}


__all__ = ["PostnetDict"]
