"""A Gumbel-softmax vector quantiser (wav2vec 2.0; fairseq's ``GumbelVectorQuantizer``), as SpeechT5's cross-modal
codebook uses it.

Each input vector ``x [D]`` is projected to ``groups x num_vars`` logits; each group picks one of its ``num_vars``
codewords (``vq_dim / groups`` wide) and the picks are concatenated:

* training: a hard one-hot from ``gumbel_softmax(logits, tau, hard=True)`` -- the forward pass uses the one-hot, the
  backward pass the gradient of the soft Gumbel-softmax (straight-through);
* evaluation: the argmax of the logits, no noise;
* the temperature ``tau = max(max_temp * decay ** updates, min_temp)`` (2 -> 0.5 by 0.999995 per update in SpeechT5),
  where ``updates`` counts the training forward passes (a buffer, so it is saved and resumed with the weights);
* the statistics: ``prob_perplexity = sum_g exp(-sum_v p_gv log(p_gv + 1e-7))`` with ``p_g`` the softmax of the
  logits (no noise) averaged over the positions, and ``code_perplexity`` the same of the hard picks; the diversity
  loss is ``(groups * num_vars - prob_perplexity) / (groups * num_vars)``.

``valid`` restricts the statistics to real positions (fairseq averages over every position of the padded batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class QuantizerOutput:
    """What :class:`GumbelVectorQuantizer` returns.

    Attributes:
        x: the quantised vectors ``[B, T, vq_dim]``.
        prob_perplexity: the soft perplexity summed over groups (a tensor with gradient).
        code_perplexity: the perplexity of the hard picks (no gradient).
        num_vars: ``groups * num_vars``.
        temperature: the Gumbel temperature used.
        indices: the picked codeword per group ``[B, T, groups]``.
    """

    x: Tensor
    prob_perplexity: Tensor
    code_perplexity: Tensor
    num_vars: int
    temperature: float
    indices: Tensor

    def diversity_loss(self) -> Tensor:
        """``(num_vars - prob_perplexity) / num_vars``: 0 when every codeword is used equally, near 1 when one is."""
        return (self.num_vars - self.prob_perplexity) / self.num_vars


def _perplexity(probs: Tensor) -> Tensor:
    """``sum_g exp(entropy(probs[g]))`` of per-group distributions ``[G, V]`` (fairseq's 1e-7 inside the log)."""
    return torch.exp(-torch.sum(probs * torch.log(probs + 1e-7), dim=-1)).sum()


class GumbelVectorQuantizer(nn.Module):
    """``[B, T, dim]`` -> quantised ``[B, T, vq_dim]`` (see the module notes).

    Args:
        dim: input width.
        num_vars: codewords per group (100 in SpeechT5).
        groups: codebook groups (2).
        vq_dim: output width (the encoder's in SpeechT5), split evenly over the groups.
        temperature: ``(max, min, decay per update)``, SpeechT5's ``(2, 0.5, 0.999995)``.
    """

    def __init__(self, dim: int, num_vars: int = 100, groups: int = 2, vq_dim: int | None = None,
                 temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995)):
        super().__init__()
        vq_dim = dim if vq_dim is None else vq_dim
        if vq_dim % groups:
            raise ValueError(f"vq_dim {vq_dim} must be divisible by groups {groups}")
        if len(temperature) != 3:
            raise ValueError(f"temperature must be (max, min, decay), got {temperature}")
        self.dim, self.num_vars, self.groups, self.vq_dim = dim, num_vars, groups, vq_dim
        self.max_temp, self.min_temp, self.temp_decay = (float(t) for t in temperature)
        self.vars = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups).uniform_())
        self.weight_proj = nn.Linear(dim, groups * num_vars)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def temperature(self) -> float:
        """The current Gumbel temperature."""
        return max(self.max_temp * self.temp_decay ** int(self.num_updates), self.min_temp)

    def set_num_updates(self, updates: int) -> None:
        """Set the update count the temperature follows (fairseq's ``set_num_updates``)."""
        self.num_updates.fill_(int(updates))

    def codewords(self, onehot: Tensor) -> Tensor:
        """``[N, groups, num_vars]`` one-hot (or soft) picks -> ``[N, vq_dim]`` concatenated codewords."""
        words = self.vars.view(self.groups, self.num_vars, -1)
        return torch.einsum("ngv,gvd->ngd", onehot.to(words.dtype), words).reshape(onehot.shape[0], -1)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> QuantizerOutput:
        """``x [B, T, dim]``; ``valid [B, T]`` bool: the positions the statistics count (all when None).

        In training mode each call is one update: the temperature used is the current one, then the count grows.
        """
        b, t, _ = x.shape
        logits = self.weight_proj(x).reshape(b * t, self.groups, self.num_vars).float()
        keep = None if valid is None else valid.reshape(b * t)
        counted = logits if keep is None else logits[keep]
        with torch.no_grad():
            picks = logits.argmax(-1)
            hard = F.one_hot(picks, self.num_vars).float()
            code_perplexity = _perplexity((hard if keep is None else hard[keep]).mean(0))
        prob_perplexity = _perplexity(torch.softmax(counted, dim=-1).mean(0))
        tau = self.temperature
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=tau, hard=True)
            picks = onehot.argmax(-1)
            if torch.is_grad_enabled():
                self.num_updates += 1
        else:
            onehot = hard
        out = self.codewords(onehot).view(b, t, self.vq_dim).to(x.dtype)
        return QuantizerOutput(out, prob_perplexity, code_perplexity, self.groups * self.num_vars, tau,
                               picks.view(b, t, self.groups))
