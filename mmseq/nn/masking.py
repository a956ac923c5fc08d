"""Span masks over time with fairseq's ``compute_mask_indices`` semantics (wav2vec 2.0, HuBERT, SpeechT5).

For each row of valid length ``n`` (static span lengths, overlap allowed, the default of those projects):

1. the number of spans is ``max(min_masks, int(mask_prob * n / span + u))`` with ``u ~ U[0, 1)`` drawn per row,
   so ``mask_prob / span`` of the frames start a span on average (8% for SpeechT5's 0.8 and 10);
2. the starts are drawn *without replacement* from ``[0, n - span)`` (when that range holds fewer than the number of
   spans, from ``[0, n - count + 1)`` as fairseq does for short rows), each covers ``span`` frames, frames past
   ``n`` are dropped and overlapping spans merge, so the masked share is below ``mask_prob`` (about 0.55 of the
   frames at 0.8 and 10);
3. with ``require_same_masks`` every row then keeps a random subset of its masked frames of the size of the least
   masked row's, so each row has the same number of masked frames (fairseq's behaviour before the option existed,
   and HuBERT's and SpeechT5's setting).

:func:`mmseq.prenets.speech.time_mask_spans` (SpecAugment in fine-tuning) draws starts *with* replacement, caps
the count at ``n // span`` and does not equalise rows: a different, cheaper rule for a different purpose.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_starts(length: int, mask_prob: float, span: int, min_masks: int = 0,
                generator: torch.Generator | None = None) -> Tensor:
    """Start frames of the spans of one row of ``length`` valid frames (steps 1-2 of the module notes), unsorted."""
    count = max(min_masks, int(mask_prob * length / float(span) + float(torch.rand((), generator=generator))))
    shortest = span
    if length - shortest <= count:
        shortest = length - count - 1
    choices = length - shortest
    if count <= 0 or choices <= 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.randperm(choices, generator=generator)[: min(count, choices)]


def compute_mask_indices(lengths: Tensor, max_length: int, mask_prob: float, span: int, min_masks: int = 0,
                         require_same_masks: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """A ``[B, max_length]`` bool mask of spans (see the module notes).

    Args:
        lengths: valid frames per row ``[B]`` (frames past them are never masked).
        max_length: T, the padded length.
        mask_prob: the share of frames that would be masked without overlaps (0.8 in SpeechT5 pre-training).
        span: frames per span (10).
        min_masks: fewest spans per row (2).
        require_same_masks: give every row the same number of masked frames (the least masked row's).
        generator: the random source (the global one when None).
    """
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    rows: list[Tensor] = []
    for n in lengths.tolist():
        n = min(int(n), max_length)
        starts = span_starts(n, mask_prob, span, min_masks, generator)
        frames = (starts[:, None] + torch.arange(span)[None, :]).flatten()
        rows.append(torch.unique(frames[frames < n]))
    mask = torch.zeros(len(rows), max_length, dtype=torch.bool)
    fewest = min((len(r) for r in rows), default=0)
    for i, frames in enumerate(rows):
        if require_same_masks and len(frames) > fewest:
            frames = frames[torch.randperm(len(frames), generator=generator)[:fewest]]
        mask[i, frames] = True
    return mask
