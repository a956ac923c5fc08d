"""CTC prefix scores for joint CTC/attention beam search, vectorised over hypotheses and candidate tokens.

For a prefix g and a candidate token c the score is log P_ctc(g + c as a prefix of the transcript), computed
with the prefix forward variables r^n_t(h) (paths ending in a non-blank at frame t) and r^b_t(h) (ending in a
blank) of Watanabe et al. (2017). Padded encoder frames are treated as certain blanks, which leaves every
score of the real frames unchanged, so rows of different lengths share one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = -1e30  # finite: -inf - -inf would give NaN in the recursions


class CTCPrefixScorer:
    """Holds CTC log-probabilities and, per hypothesis, the forward variables of its prefix.

    Args:
        log_probs: ``[B, T, V]`` CTC log-probabilities.
        lengths: ``[B]`` valid frames.
        blank: blank id.
        eos: end-of-sentence id (scored as "the whole transcript ends here").
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, blank: int, eos: int):
        b, t, v = log_probs.shape
        padded = torch.arange(t, device=log_probs.device)[None, :] >= lengths[:, None]
        lp = log_probs.float().masked_fill(padded[..., None], NEG_INF)
        lp[..., blank] = lp[..., blank].masked_fill(padded, 0.0)
        self.log_probs = lp.transpose(0, 1).contiguous()  # [T, B, V]
        self.blank, self.eos = blank, eos
        # Empty prefix: only blanks so far.
        self.r_nonblank = torch.full((t, b), NEG_INF, device=lp.device)
        self.r_blank = torch.cumsum(self.log_probs[:, :, blank], dim=0)
        self.prefix_score = torch.zeros(b, device=lp.device)
        self.last = torch.full((b,), -1, dtype=torch.long, device=lp.device)
        self.rows = torch.arange(b, device=lp.device)  # which utterance each hypothesis belongs to

    def repeat(self, times: int) -> None:
        """One state per beam: ``[B] -> [B * times]``."""
        self.select(torch.arange(len(self.prefix_score), device=self.prefix_score.device).repeat_interleave(times))

    def select(self, index: Tensor) -> None:
        self.r_nonblank, self.r_blank = self.r_nonblank[:, index], self.r_blank[:, index]
        self.prefix_score, self.last, self.rows = self.prefix_score[index], self.last[index], self.rows[index]

    def score(self, candidates: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Prefix scores of extending every hypothesis by each of its candidates.

        Args:
            candidates: ``[N, C]`` token ids per hypothesis.

        Returns:
            ``(delta [N, C], state)``: ``log P(g + c) - log P(g)``, and the forward variables of the extended
            prefixes for :meth:`advance`.
        """
        t_max = self.log_probs.shape[0]
        lp = self.log_probs[:, self.rows]  # [T, N, V]
        x = torch.gather(lp, 2, candidates[None].expand(t_max, -1, -1))  # [T, N, C] log p_t(c)
        previous = torch.logaddexp(self.r_nonblank, self.r_blank)[..., None].expand_as(x)  # [T, N, C]
        same = candidates == self.last[:, None]
        # A repeated token needs a blank in between: only paths ending in blank may continue.
        phi = torch.where(same[None], self.r_blank[..., None].expand_as(x), previous)
        r_n = torch.full_like(x, NEG_INF)
        r_b = torch.full_like(x, NEG_INF)
        start = (self.last == -1)[:, None]  # the empty prefix may start at frame 0
        r_n[0] = torch.where(start, x[0], torch.full_like(x[0], NEG_INF))
        blank_lp = lp[:, :, self.blank][..., None]
        for t in range(1, t_max):
            r_n[t] = torch.logaddexp(r_n[t - 1], phi[t - 1]) + x[t]
            r_b[t] = torch.logaddexp(r_b[t - 1], r_n[t - 1]) + blank_lp[t]
        psi = torch.logsumexp(torch.cat([r_n[:1], phi[:-1] + x[1:]], dim=0), dim=0)  # [N, C]
        is_eos = candidates == self.eos
        psi = torch.where(is_eos, previous[-1], psi)
        return psi - self.prefix_score[:, None], (r_n, r_b, psi)

    def advance(self, state: tuple[Tensor, Tensor, Tensor], hyp: Tensor, choice: Tensor, token: Tensor) -> None:
        """Keep hypothesis ``hyp[i]`` extended by its ``choice[i]``-th candidate (``token[i]``)."""
        r_n, r_b, psi = state
        self.r_nonblank = r_n[:, hyp, choice]
        self.r_blank = r_b[:, hyp, choice]
        self.prefix_score = psi[hyp, choice]
        self.last = token
        self.rows = self.rows[hyp]
