"""Span masking with fairseq ``compute_mask_indices`` semantics: statistics against exact formulas."""

from __future__ import annotations

import math

import torch

from mmseq.nn.masking import compute_mask_indices, span_starts


def _expected_masked(n: int, count: int, span: int) -> float:
    """Exact mean of masked frames when ``count`` starts are drawn without replacement from ``n - span`` places."""
    choices = n - span
    total = 0.0
    for p in range(n):
        windows = len(range(max(0, p - span + 1), min(p, choices - 1) + 1))
        # P(no start among the `windows` places that cover p) for a sample without replacement
        uncovered = math.exp(math.lgamma(choices - windows + 1) - math.lgamma(choices - windows - count + 1)
                             - math.lgamma(choices + 1) + math.lgamma(choices - count + 1))
        total += 1.0 - uncovered
    return total


def test_span_count_is_mask_prob_over_span_of_the_frames_on_average():
    g = torch.Generator().manual_seed(0)
    n = 1005  # 0.8 * 1005 / 10 = 80.4: 80 spans with probability 0.6, 81 with 0.4
    counts = torch.tensor([len(span_starts(n, 0.8, 10, 2, g)) for _ in range(2000)], dtype=torch.float)
    assert set(counts.tolist()) == {80.0, 81.0}
    assert abs(counts.mean().item() - 80.4) < 0.04
    starts = torch.cat([span_starts(n, 0.8, 10, 2, g) for _ in range(50)])
    assert starts.min() >= 0 and starts.max() < n - 10  # fairseq draws from range(n - span)
    assert all(len(set(span_starts(1000, 0.8, 10, 2, g).tolist())) == 80 for _ in range(20))  # no replacement


def test_masked_share_matches_the_exact_coverage_of_spans_drawn_without_replacement():
    g = torch.Generator().manual_seed(1)
    n, draws = 500, 400  # 40 spans every time
    masks = torch.stack([compute_mask_indices(torch.tensor([n]), n, 0.8, 10, 2, generator=g)[0] for _ in range(draws)])
    expected = _expected_masked(n, 40, 10)
    assert abs(masks.sum(1).float().mean().item() - expected) < 0.01 * expected
    assert 0.5 < expected / n < 0.6  # overlaps: well below mask_prob
    # with replacement (SpecAugment's rule) the coverage would be lower: 1 - (1 - 10/490)^40 per interior frame
    assert expected / n > 1 - (1 - 10 / 490) ** 40


def test_masks_are_whole_spans_inside_the_valid_frames_and_rows_are_equalised():
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([300, 180, 60])
    for _ in range(50):
        mask = compute_mask_indices(lengths, 320, 0.8, 10, 2, generator=g)
        assert not mask[0, 300:].any() and not mask[1, 180:].any() and not mask[2, 60:].any()
        counts = mask.sum(1)
        assert len(set(counts.tolist())) == 1 and counts[0] > 0
    # without equalisation every row keeps whole spans: runs of masked frames are multiples-or-unions of 10
    mask = compute_mask_indices(lengths, 320, 0.8, 10, 2, require_same_masks=False, generator=g)
    assert mask[0].sum() > mask[2].sum()
    for row, n in zip(mask, lengths.tolist()):
        runs, run = [], 0
        for v in row[:n].tolist() + [False]:
            if v:
                run += 1
            elif run:
                runs.append(run)
                run = 0
        assert min(runs) >= 10 or n - 10 <= 0


def test_short_rows_get_the_minimum_number_of_spans_as_fairseq_does():
    g = torch.Generator().manual_seed(3)
    # n = 12: int(0.8 * 12 / 10 + u) <= 1 < min_masks = 2; n - span = 2 <= 2 spans, so starts come from range(9)
    for _ in range(30):
        starts = span_starts(12, 0.8, 10, 2, g)
        assert len(starts) == 2 and starts.max() < 9
    mask = compute_mask_indices(torch.tensor([5]), 8, 0.8, 10, 2, generator=g)
    assert mask[0, :5].all() or mask[0, :5].sum() >= 3  # spans clipped at the row's end
    assert not mask[0, 5:].any()


def test_the_generator_makes_masks_reproducible():
    a = compute_mask_indices(torch.tensor([100, 90]), 100, 0.8, 10, 2, generator=torch.Generator().manual_seed(7))
    b = compute_mask_indices(torch.tensor([100, 90]), 100, 0.8, 10, 2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
