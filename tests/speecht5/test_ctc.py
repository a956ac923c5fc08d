import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.generation import generate
from mmseq.generation.ctc import CTCPrefixScorer

BLANK, EOS = 3, 2


def collapse(path):
    out, prev = [], None
    for p in path:
        if p != prev and p != BLANK:
            out.append(p)
        prev = p
    return out


def brute_force_prefix(log_probs, prefix):
    """log sum over all alignments whose collapsed labels start with ``prefix``."""
    t, v = log_probs.shape
    total = []
    for path in itertools.product(range(v), repeat=t):
        if collapse(path)[: len(prefix)] == prefix:
            total.append(sum(log_probs[i, p].item() for i, p in enumerate(path)))
    return torch.logsumexp(torch.tensor(total), 0).item() if total else -math.inf


def test_prefix_scores_equal_brute_force_and_ctc_loss():
    torch.manual_seed(0)
    log_probs = torch.randn(2, 5, 4).log_softmax(-1)
    lengths = torch.tensor([5, 4])
    scorer = CTCPrefixScorer(log_probs, lengths, blank=BLANK, eos=EOS)
    # Walk prefix [0] then [0, 1] (and [0, 0] to exercise repeats) for both rows.
    for prefix in ([0], [1]):
        cand = torch.tensor([[prefix[0], EOS]] * 2)
        scorer_copy = CTCPrefixScorer(log_probs, lengths, blank=BLANK, eos=EOS)
        gain, state = scorer_copy.score(cand)
        for row in range(2):
            lp = log_probs[row, : lengths[row]]
            assert gain[row, 0].item() == pytest.approx(brute_force_prefix(lp, prefix), abs=1e-4)
    gain, state = scorer.score(torch.tensor([[0], [0]]))
    scorer.advance(state, torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 0]))
    gain2, _ = scorer.score(torch.tensor([[1, 0, EOS], [1, 0, EOS]]))
    for row in range(2):
        lp = log_probs[row, : lengths[row]]
        base = brute_force_prefix(lp, [0])
        assert gain2[row, 0].item() == pytest.approx(brute_force_prefix(lp, [0, 1]) - base, abs=1e-4)
        assert gain2[row, 1].item() == pytest.approx(brute_force_prefix(lp, [0, 0]) - base, abs=1e-4)
        # eos: the probability that the transcript is exactly [0], as CTC loss computes it.
        exact = -F.ctc_loss(lp[:, None], torch.tensor([[0]]), torch.tensor([len(lp)]), torch.tensor([1]),
                            blank=BLANK, reduction="sum").item()
        assert gain2[row, 2].item() == pytest.approx(exact - base, abs=1e-4)


def test_joint_ctc_beam_search_is_batch_invariant():
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_asr_tiny", ctc=True).eval()
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(3, 3000, generator=g) * 0.3
    lengths = torch.tensor([3000, 2500, 2100])
    wav[torch.arange(3000)[None, :] >= lengths[:, None]] = 0
    batched = generate(model, wav, lengths, num_beams=3, ctc_weight=0.3, max_new_tokens=8)
    for i in range(3):
        alone = generate(model, wav[i : i + 1, : lengths[i]], num_beams=3, ctc_weight=0.3, max_new_tokens=8)
        row = batched[i][batched[i].ne(1)].tolist()
        assert row == alone[0][alone[0].ne(1)].tolist()


def test_ctc_weight_needs_a_ctc_head():
    model = mmseq.create_model("speecht5_asr_tiny").eval()
    with pytest.raises(mmseq.errors.InputError, match="CTC head"):
        generate(model, torch.randn(1, 3000), num_beams=2, ctc_weight=0.5)
