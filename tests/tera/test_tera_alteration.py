"""TERA's alteration statistics over many draws, and that the loss scores only altered positions."""

from __future__ import annotations

import pytest
import torch

from mmseq.errors import ConfigError
from mmseq.tasks.tera_alteration import AlterationConfig, alter, frequency_alteration, time_alteration
from mmseq.postnets.spectrogram import masked_reconstruction_loss

T_ONLY = AlterationConfig.ablation("T")


def runs(flags: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    out, count = [], 0
    for f in flags.tolist() + [False]:
        if f:
            count += 1
        elif count:
            out.append(count)
            count = 0
    return out


def test_time_alteration_fraction_and_span_length():
    g = torch.Generator().manual_seed(0)
    length = 1000
    fractions = []
    for _ in range(200):
        frames = torch.randn(length, 8)
        chosen, _ = time_alteration(frames, length, T_ONLY, g)
        flags = torch.zeros(length, dtype=torch.bool)
        flags[chosen] = True
        fractions.append(flags.float().mean().item())
        assert all(r >= 7 for r in runs(flags))  # overlapping spans merge, never shorter than 7
    # round(1000 * 0.15 / 7) = 21 spans of 7 = 14.7% before overlaps; overlaps only remove frames
    assert max(fractions) <= 21 * 7 / length + 1e-9
    assert 0.13 < sum(fractions) / len(fractions) < 0.147

    no_overlap = AlterationConfig(allow_overlap=False, frequency_proportion=0.0)
    for _ in range(100):
        frames = torch.randn(length, 8)
        chosen, _ = time_alteration(frames, length, no_overlap, g)
        flags = torch.zeros(length, dtype=torch.bool)
        flags[chosen] = True
        assert runs(flags) == [7] * 21  # buckets of round(7 * 1.5) = 11 frames: disjoint spans of exactly 7


def test_span_width_range_and_count():
    g = torch.Generator().manual_seed(1)
    cfg = AlterationConfig(span_min=3, span_max=9, allow_overlap=False, bucket_ratio=2.0, frequency_proportion=0.0)
    widths = set()
    for _ in range(300):
        frames = torch.randn(2000, 4)
        chosen, _ = time_alteration(frames, 2000, cfg, g)
        flags = torch.zeros(2000, dtype=torch.bool)
        flags[chosen] = True
        r = runs(flags)
        assert len(set(r)) == 1 and len(r) == round(2000 * 0.15 / r[0])
        widths.add(r[0])
    assert widths == set(range(3, 10))


def test_die_is_rolled_once_per_utterance_with_s3prl_frequencies():
    g = torch.Generator().manual_seed(2)
    counts = {"zero": 0, "random": 0, "unchanged": 0}
    n = 4000
    for _ in range(n):
        original = torch.randn(60, 6) + 3.0  # no frame is zero by chance
        frames = original.clone()
        chosen, outcome = time_alteration(frames, 60, T_ONLY, g)
        counts[outcome] += 1
        altered = frames[chosen]
        # the outcome applies to every chosen frame of the utterance at once
        if outcome == "zero":
            assert torch.all(altered == 0)
        elif outcome == "unchanged":
            assert torch.equal(frames, original)
        else:
            assert torch.all(altered != 0)
            untouched = torch.ones(60, dtype=torch.bool)
            untouched[chosen] = False
            assert torch.equal(frames[untouched], original[untouched])
            # replacements are frames of the same utterance
            assert all(any(torch.equal(row, o) for o in original) for row in altered)
    assert abs(counts["zero"] / n - 0.8) < 0.025
    assert abs(counts["random"] / n - 0.1) < 0.02
    assert abs(counts["unchanged"] / n - 0.1) < 0.02


def test_frequency_band_widths_are_uniform_0_to_16():
    g = torch.Generator().manual_seed(3)
    cfg = AlterationConfig.ablation("F")
    widths = []
    for _ in range(3400):
        frames = torch.randn(5, 80) + 3.0
        band = frequency_alteration(frames, cfg, g)
        zero_bins = (frames == 0).all(0)
        assert zero_bins.sum() == len(band)
        if len(band):  # one contiguous band
            assert runs(zero_bins) == [len(band)]
        widths.append(len(band))
    hist = torch.bincount(torch.tensor(widths), minlength=17)
    assert len(hist) == 17  # int(80 * 0.2) = 16 is the widest
    assert hist.min() > 140 and hist.max() < 260  # 200 expected per width


def test_magnitude_noise_probability_and_std():
    g = torch.Generator().manual_seed(4)
    cfg = AlterationConfig.ablation("M")  # noise with probability 0.15, std 0.2
    fired, stds = 0, []
    for _ in range(2000):
        x = torch.zeros(2, 20, 8)
        out = alter(x, torch.tensor([20, 12]), cfg, g)
        if out.noise_added:
            fired += 1
            stds.append(out.inputs.std().item())
        else:
            assert torch.equal(out.inputs, x)
        # noise alone is not an alteration the loss scores: with T and F off every valid position counts
        assert out.mask[0].all() and out.mask[1, :12].all() and not out.mask[1, 12:].any()
    assert abs(fired / 2000 - 0.15) < 0.025
    assert abs(sum(stds) / len(stds) - 0.2) < 0.01


def test_loss_counts_only_altered_positions():
    g = torch.Generator().manual_seed(5)
    clean = torch.randn(3, 80, 80)
    lengths = torch.tensor([80, 60, 30])
    clean[1, 60:], clean[2, 30:] = 0, 0
    out = alter(clean, lengths, AlterationConfig(), g)
    assert torch.equal(out.target, clean)
    assert not out.mask[1, 60:].any() and not out.mask[2, 30:].any()  # padding is never scored
    # a prediction that is perfect on altered positions and wrong elsewhere has zero loss
    prediction = torch.where(out.mask, clean, clean + 5.0)
    assert masked_reconstruction_loss(prediction, clean, out.mask).item() == 0.0
    # an error of 1 on every altered position is a loss of exactly 1 (a mean over scored elements)
    prediction = torch.where(out.mask, clean + 1.0, clean + 100.0)
    assert masked_reconstruction_loss(prediction, clean, out.mask).item() == pytest.approx(1.0)
    # gradients reach only altered positions
    prediction = clean.clone().requires_grad_(True)
    masked_reconstruction_loss(prediction + 0.5, clean, out.mask).backward()
    assert torch.equal(prediction.grad != 0, out.mask)
    # frequency-altered positions are scored over valid frames; time-altered ones over all bins
    assert out.mask.any(-1).float().mean() > 0


def test_short_and_empty_utterances_are_handled():
    g = torch.Generator().manual_seed(6)
    aggressive = AlterationConfig(time_proportion=0.9, span_min=7, span_max=7, frequency_proportion=0.0)
    for length in range(0, 12):
        x = torch.randn(1, 12, 5) + 3.0
        x[0, length:] = 0
        out = alter(x, torch.tensor([length]), aggressive, g)
        assert not out.mask[0, length:].any()  # never past the utterance's end
    # a batch where nothing is altered (utterances too short for a span): loss is 0, not an assertion
    out = alter(torch.randn(2, 10, 8), torch.tensor([10, 5]), T_ONLY, g)
    assert not out.mask.any()
    prediction = torch.randn(2, 10, 8, requires_grad=True)
    loss = masked_reconstruction_loss(prediction, out.target, out.mask)
    loss.backward()
    assert loss.item() == 0.0 and prediction.grad is not None
    no_overlap = AlterationConfig(time_proportion=0.6, allow_overlap=False, frequency_proportion=0.0,
                                  zero_probability=0.0, random_probability=1.0)
    out = alter(torch.randn(4, 40, 3), torch.tensor([40, 30, 20, 9]), no_overlap, g)  # fewer buckets than spans
    assert out.mask.any()


def test_ablation_names():
    assert AlterationConfig.ablation("T-F").noise_probability == 0.0
    cfg = AlterationConfig.ablation("T-F-M")
    assert (cfg.time_proportion, cfg.frequency_proportion, cfg.noise_probability) == (0.15, 0.2, 0.15)
    assert AlterationConfig.ablation("F-M").time_proportion == 0.0
    with pytest.raises(ConfigError, match="T, F and M"):
        AlterationConfig.ablation("T-X")
    with pytest.raises(ConfigError, match="span_min"):
        AlterationConfig(span_min=0)
