"""The Gumbel vector quantiser: straight-through gradients, temperature annealing, perplexities and the diversity
loss against direct formulas."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmseq.nn.quantizer import GumbelVectorQuantizer


def _quantizer(seed: int = 0) -> GumbelVectorQuantizer:
    torch.manual_seed(seed)
    return GumbelVectorQuantizer(dim=6, num_vars=5, groups=2, vq_dim=8)


def test_training_output_is_hard_codewords_and_the_gradient_is_the_soft_gumbel_softmax_one():
    q = _quantizer().train()
    x = torch.randn(2, 3, 6, requires_grad=True)
    torch.manual_seed(11)
    out = q(x)
    (out.x * torch.arange(out.x.numel()).view_as(out.x).float()).sum().backward()
    grad_x, grad_vars = x.grad.clone(), q.vars.grad.clone()
    # direct: the same Gumbel draws (gumbel_softmax draws -log(Exp(1)) of the logits' shape)
    x2 = x.detach().clone().requires_grad_(True)
    vars2 = q.vars.detach().clone().requires_grad_(True)
    logits = F.linear(x2, q.weight_proj.weight, q.weight_proj.bias).view(6, 2, 5)
    torch.manual_seed(11)
    gumbels = -torch.empty_like(logits).exponential_().log()
    soft = torch.softmax((logits + gumbels) / 2.0, dim=-1)
    hard = F.one_hot(soft.argmax(-1), 5).float()
    st = hard - soft.detach() + soft
    words = vars2.view(2, 5, 4)
    ref = torch.stack([st[:, g] @ words[g] for g in range(2)], dim=1).reshape(2, 3, 8)
    (ref * torch.arange(ref.numel()).view_as(ref).float()).sum().backward()
    assert torch.allclose(out.x, ref.detach(), atol=1e-6)
    # forward values are codewords themselves (hard picks), not mixtures
    for g in range(2):
        chosen = out.indices.view(6, 2)[:, g]
        assert torch.allclose(out.x.view(6, 2, 4)[:, g], q.vars.detach().view(2, 5, 4)[g][chosen])
    assert torch.allclose(grad_x, x2.grad, atol=1e-5) and grad_x.abs().sum() > 0
    assert torch.allclose(grad_vars, vars2.grad, atol=1e-5)


def test_evaluation_picks_the_argmax_without_noise():
    q = _quantizer().eval()
    x = torch.randn(2, 4, 6)
    a, b = q(x), q(x)
    assert torch.equal(a.x, b.x)
    picks = q.weight_proj(x).view(2, 4, 2, 5).argmax(-1)
    assert torch.equal(a.indices, picks)
    assert int(q.num_updates) == 0


def test_temperature_anneals_by_decay_per_training_update_down_to_the_minimum():
    q = GumbelVectorQuantizer(dim=4, num_vars=3, groups=1, temperature=(2.0, 0.5, 0.9))
    x = torch.randn(1, 2, 4)
    temps = []
    for _ in range(5):
        temps.append(q(x).temperature)
    assert temps == [max(2.0 * 0.9**n, 0.5) for n in range(5)]
    with torch.no_grad():
        q(x)  # no update without gradients (validation in train mode)
    q.eval()(x)
    assert int(q.num_updates) == 5
    q.set_num_updates(100)
    assert q.temperature == 0.5
    official = GumbelVectorQuantizer(dim=4)
    official.set_num_updates(100_000)
    assert math.isclose(official.temperature, 2.0 * 0.999995**100_000)
    assert "num_updates" in official.state_dict()  # resumed with the weights


def test_perplexities_and_diversity_loss_against_direct_formulas():
    q = _quantizer().eval()
    x = torch.randn(3, 4, 6)
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[2, 1:] = False
    out = q(x, valid)
    logits = q.weight_proj(x).view(3, 4, 2, 5).detach()
    rows = [logits[b, t] for b in range(3) for t in range(4) if valid[b, t]]
    expected_prob, expected_code = 0.0, 0.0
    for g in range(2):
        probs = sum(torch.softmax(r[g], -1) for r in rows) / len(rows)
        expected_prob += math.exp(-sum(float(p) * math.log(float(p) + 1e-7) for p in probs))
        counts = torch.zeros(5)
        for r in rows:
            counts[int(r[g].argmax())] += 1
        freq = counts / len(rows)
        expected_code += math.exp(-sum(float(p) * math.log(float(p) + 1e-7) for p in freq))
    assert math.isclose(out.prob_perplexity.item(), expected_prob, rel_tol=1e-5)
    assert math.isclose(out.code_perplexity.item(), expected_code, rel_tol=1e-5)
    assert out.num_vars == 10
    assert math.isclose(out.diversity_loss().item(), (10 - expected_prob) / 10, rel_tol=1e-5)
    # uniform use of every codeword gives the full perplexity and no diversity loss
    with torch.no_grad():
        q.weight_proj.weight.zero_()
    flat = q(x)
    assert math.isclose(flat.prob_perplexity.item(), 10.0, rel_tol=1e-5) and abs(flat.diversity_loss().item()) < 1e-5
    # the diversity loss has a gradient that spreads the codeword use
    q2 = _quantizer().train()
    loss = q2(torch.randn(2, 5, 6)).diversity_loss()
    loss.backward()
    assert q2.weight_proj.weight.grad.abs().sum() > 0
