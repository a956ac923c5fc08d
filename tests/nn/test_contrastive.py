"""COCONUT's NSPT and MM losses against direct formulas; NSPT without its self-positive and with teacher = student
is SupCon."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmseq.nn.contrastive import multimodal_contrastive_loss, nspt_loss, supcon_loss
from mmseq.errors import InputError


def nspt_by_hand(s, t, y, anchors, tau, self_positive=True):
    s, t = F.normalize(s.detach(), dim=1), F.normalize(t.detach(), dim=1)
    losses = []
    for i in range(len(y)):
        if not anchors[i]:
            continue
        pos = [p for p in range(len(y)) if (self_positive or p != i) and y[p] == y[i]]
        neg = [n for n in range(len(y)) if y[n] != y[i]]
        if not pos:
            continue
        den = sum(math.exp(float(s[i] @ t[p]) / tau) for p in pos) + sum(math.exp(float(s[i] @ s[n]) / tau)
                                                                         for n in neg)
        losses.append(-sum(float(s[i] @ t[p]) / tau - math.log(den) for p in pos) / len(pos))
    return sum(losses) / len(losses) if losses else 0.0


def supcon_by_hand(z, y, tau):
    """Khosla et al. 2020, Eq. 2 (L_out): every sample an anchor, A(i) = all but i."""
    z = F.normalize(z, dim=1)
    out = []
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        if not pos:
            continue
        den = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(len(y)) if a != i)
        out.append(-sum(float(z[i] @ z[p]) / tau - math.log(den) for p in pos) / len(pos))
    return sum(out) / len(out)


def batch(seed=0, b=12, d=8):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 6][:b])
    anchors = torch.tensor([True, True, True, False, False, True, False, False, True, False, False, False][:b])
    return s, t, y, anchors


@pytest.mark.parametrize("self_positive", [True, False])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nspt_equals_its_formula(tau, self_positive):
    s, t, y, anchors = batch(1)
    assert float(nspt_loss(s, t, y, anchors, tau, self_positive)) == pytest.approx(
        nspt_by_hand(s, t, y, anchors, tau, self_positive), rel=1e-5)


def test_nspt_with_teacher_equal_to_student_is_supcon():
    s, _, y, _ = batch(2)
    everyone = torch.ones_like(y, dtype=torch.bool)
    assert float(nspt_loss(s, s, y, everyone, 0.2, self_positive=False)) == pytest.approx(
        supcon_by_hand(s, y, 0.2), rel=1e-5)
    assert float(supcon_loss(s, y, temperature=0.2)) == pytest.approx(supcon_by_hand(s, y, 0.2), rel=1e-5)


def test_nspt_with_one_sample_per_class_pulls_each_anchor_to_its_teacher_embedding():
    # a 1% memory: one rehearsal utterance per old class, the rest of the batch new classes
    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 4, 5, 5])
    anchors = torch.tensor([True, True, False, False, False, False, False, False])
    assert float(nspt_loss(s, t, y, anchors, self_positive=False)) == 0.0  # no second sample of classes 0, 1
    loss = nspt_loss(s, t, y, anchors)
    sn, tn = F.normalize(s, dim=1), F.normalize(t, dim=1)
    by_hand = 0.0
    for i in (0, 1):  # l_i = -log softmax over {t_i} + {s_n: n != i}
        logits = torch.cat([(sn[i] @ tn[i])[None], sn[i] @ sn[[n for n in range(8) if n != i]].T]) / 0.1
        by_hand += float(torch.logsumexp(logits, 0) - logits[0]) / 2
    assert float(loss) == pytest.approx(by_hand, rel=1e-5)
    # a student step along the loss's gradient moves the anchors toward their own teacher embeddings
    s.requires_grad_(True)
    nspt_loss(s, t, y, anchors).backward()
    before = F.cosine_similarity(s[:2], t[:2])
    after = F.cosine_similarity(s[:2] - 0.01 * s.grad[:2], t[:2])
    assert (after > before).all()


def test_nspt_gradients_reach_the_student_only():
    s, t, y, anchors = batch(3)
    s.requires_grad_(True)
    t.requires_grad_(True)
    nspt_loss(s, t, y, anchors).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_nspt_skips_anchors_without_positives_and_is_zero_without_anchors():
    s, t, y, _ = batch(4)
    lonely = torch.zeros_like(y, dtype=torch.bool)
    lonely[5] = True  # class 2 appears once: without the self-positive it has no positive
    s.requires_grad_(True)
    zero = nspt_loss(s, t, y, lonely, self_positive=False)
    assert float(zero.detach()) == 0.0
    zero.backward()  # still part of the graph
    mixed = lonely.clone()
    mixed[0] = True
    assert float(nspt_loss(s, t, y, mixed, self_positive=False).detach()) == pytest.approx(
        nspt_by_hand(s, t, y, mixed, 0.1, self_positive=False), rel=1e-5)
    none = nspt_loss(s, t, y, torch.zeros_like(lonely))
    assert float(none.detach()) == 0.0


def test_multimodal_loss_equals_symmetric_infonce_and_open_clip():
    g = torch.Generator().manual_seed(5)
    a, e = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    an, en = F.normalize(a, dim=1), F.normalize(e, dim=1)
    by_hand = 0.0
    for i in range(6):
        row = [float(an[i] @ en[j]) / 0.1 for j in range(6)]
        col = [float(en[i] @ an[j]) / 0.1 for j in range(6)]
        by_hand += (math.log(sum(map(math.exp, row))) - row[i] + math.log(sum(map(math.exp, col))) - col[i]) / 12
    ours = float(multimodal_contrastive_loss(a, e, 0.1))
    assert ours == pytest.approx(by_hand, rel=1e-5)
    from open_clip.loss import ClipLoss

    assert ours == pytest.approx(float(ClipLoss()(an, en, torch.tensor(10.0))), rel=1e-5)
    mask = torch.tensor([True, False, True, True, False, False])
    assert float(multimodal_contrastive_loss(a, e, 0.1, mask)) == pytest.approx(
        float(multimodal_contrastive_loss(a[mask], e[mask], 0.1)))
    assert float(multimodal_contrastive_loss(a[:1], e[:1])) == 0.0


def test_bad_inputs_are_named():
    s, t, y, anchors = batch(6)
    with pytest.raises(InputError, match="teacher embeddings must be \\[B, D\\] with B = 12"):
        nspt_loss(s, t[:5], y, anchors)
    with pytest.raises(InputError, match="labels and anchors"):
        nspt_loss(s, t, y[:3], anchors)
    with pytest.raises(InputError, match="temperature"):
        multimodal_contrastive_loss(s, t, temperature=0.0)
