"""Point-M2AE / I2P-MAE: 2-D-guided masking (exact visible count, preference for salient centres over many draws),
mask propagation down the scales against a brute-force rule, padding that does not leak into visible tokens, the
teacher's saliency against timm's own attention weights, losses against their formulas (the 2-D term's weight
included), ablation switches."""

import pytest
import torch

import mmseq
from mmseq.errors import ConfigError
from mmseq.models.i2p_mae import attention_bias, guided_mask, pack_visible, propagate_masks

pytestmark = pytest.mark.usefixtures("one_thread")


def test_guided_mask_keeps_exactly_the_visible_ratio_and_prefers_salient_centres():
    g, draws = 64, 400
    saliency = torch.zeros(draws, g)
    salient = torch.arange(0, g, 8)  # 8 salient centres
    saliency[:, salient] = 2.0
    mask = guided_mask(saliency, 0.8, torch.Generator().manual_seed(0))
    assert ((~mask).sum(1) == g - int(0.8 * g)).all()  # 13 visible in every row
    visible = (~mask).float().mean(0)
    others = torch.ones(g, dtype=torch.bool)
    others[salient] = False
    # with weights e^2 against 1, the salient centres are drawn first far more often than uniform masking would
    assert visible[salient].mean() > 0.6 > 0.15 > visible[others].mean(), visible
    # no saliency preference -> uniform: every centre visible about 13/64 of the time
    flat = ~guided_mask(torch.zeros(draws, g), 0.8, torch.Generator().manual_seed(1))
    assert (flat.float().mean(0) - 13 / 64).abs().max() < 0.08


def test_masks_propagate_down_to_exactly_the_children_of_visible_groups():
    torch.manual_seed(0)
    model = mmseq.create_model("point_m2ae_tiny")
    points = torch.randn(3, 512, 3)
    h = model.hierarchy(points)
    masks = model.draw_mask(h, None, torch.Generator().manual_seed(0))
    assert [tuple(m.shape) for m in masks] == [(3, 64), (3, 32), (3, 16)]
    assert ((~masks[-1]).sum(1) == 16 - int(0.8 * 16)).all()
    for i in (2, 1):
        for b in range(3):
            children = {int(c) for parent in range(h.centres[i].shape[1]) if not masks[i][b, parent]
                        for c in h.index[i][b, parent]}
            assert {j for j in range(masks[i - 1].shape[1]) if not masks[i - 1][b, j]} == children
    assert propagate_masks(masks[-1], h.index, model.num_groups)[0].equal(masks[0])


def test_pack_visible_and_attention_bias():
    visible = torch.tensor([[True, False, True, False], [False, False, False, True]])
    index, valid = pack_visible(visible)
    assert index[0].tolist()[:2] == [0, 2] and index[1, 0] == 3
    assert valid.tolist() == [[True, True], [True, False]]
    centres = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]], [[0.0, 0, 0], [0.1, 0, 0]]])
    bias = attention_bias(centres, torch.ones(2, 2, dtype=torch.bool), radius=0.5)
    assert (bias[0, 0] < -1e4).tolist() == [[False, True], [True, False]]
    assert (bias[1, 0] == 0).all()


def test_padding_does_not_change_a_clouds_visible_tokens():
    torch.manual_seed(0)
    model = mmseq.create_model("point_m2ae_tiny").eval()
    points = torch.randn(2, 512, 3)
    h = model.hierarchy(points)
    masks = model.draw_mask(h, None, torch.Generator().manual_seed(3))
    both = model.h_encoder(h, masks, model.local_radius)
    for b in range(2):
        one = model.hierarchy(points[b : b + 1])
        alone = model.h_encoder(one, [m[b : b + 1] for m in masks], model.local_radius)
        for (x2, _, valid2), (x1, _, _) in zip(both, alone):
            n = int(valid2[b].sum())
            torch.testing.assert_close(x2[b, :n], x1[0, :n], rtol=1e-4, atol=1e-5)


def test_teacher_saliency_is_timms_cls_attention_and_features_its_tokens():
    torch.manual_seed(0)
    teacher = mmseq.create_model("depth_view_teacher_tiny").eval()
    images = teacher.dummy_inputs(3)["images"]
    features, saliency = teacher.features_and_saliency(images)
    last = teacher.vit.blocks[-1].attn
    last.fused_attn = False
    seen = {}
    handle = last.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("attn", o))
    tokens = teacher.vit.forward_features(images)
    handle.remove()
    grid = teacher.grid
    torch.testing.assert_close(saliency.reshape(3, -1), seen["attn"].mean(1)[:, 0, 1:], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(features, tokens[:, 1:].transpose(1, 2).reshape(3, -1, grid, grid), rtol=1e-4,
                               atol=1e-5)


def test_i2p_losses_match_their_formulas_and_the_teacher_stays_frozen():
    torch.manual_seed(0)
    model = mmseq.create_model("i2p_mae_tiny").train()
    points = model.dummy_inputs(2)["points"]
    out = model(points, generator=torch.Generator().manual_seed(0))
    hidden = out.mask[model.rec_scale]
    h = model.hierarchy(points)
    torch.testing.assert_close(out.target, h.neighbourhoods[model.rec_scale][hidden])
    assert out.reconstruction.shape == (int(hidden.sum()), 8, 3)
    d = torch.cdist(out.reconstruction, out.target).square()
    torch.testing.assert_close(out.loss_3d, d.amin(2).mean() + d.amin(1).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, out.loss_3d + out.loss_2d)
    assert not model.teacher.training and not any(p.requires_grad for p in model.teacher.parameters())
    out.loss.backward()
    assert model.rec_head_2d.weight.grad.abs().sum() > 0


def test_weight_2d_scales_only_the_2d_term():
    torch.manual_seed(0)
    model = mmseq.create_model("i2p_mae_tiny").eval()
    points = model.dummy_inputs(2)["points"]
    full = model(points, generator=torch.Generator().manual_seed(0))
    model.weight_2d = 0.05
    weighted = model(points, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(weighted.loss_2d, full.loss_2d)
    torch.testing.assert_close(weighted.loss, full.loss_3d + 0.05 * full.loss_2d)
    assert weighted.loss < full.loss
    assert mmseq.create_model("i2p_mae_tiny", weight_2d=0.05).weight_2d == 0.05
    with pytest.raises(ConfigError, match="weight_2d"):
        mmseq.create_model("i2p_mae_tiny", weight_2d=-1.0)


def test_guided_masking_keeps_the_teachers_salient_centres():
    torch.manual_seed(0)
    model = mmseq.create_model("i2p_mae_tiny")
    points = model.dummy_inputs(1)["points"]
    h = model.hierarchy(points)
    # a saliency map bright in one image corner: the coarse centres projected there are kept far more often
    _, _, geometry = model.teacher_views(points)
    maps = torch.zeros(3, 1, 8, 8)
    maps[:, :, :4, :4] = 8.0
    saliency = model.saliency(h, maps, geometry)
    bright = saliency[0] > saliency[0].median()
    kept = torch.stack([~model.draw_mask(h, saliency, torch.Generator().manual_seed(s))[-1][0] for s in range(200)])
    assert kept.float().mean(0)[bright].mean() > 2 * kept.float().mean(0)[~bright].mean()


def test_ablation_switches_and_overfit():
    torch.manual_seed(0)
    plain = mmseq.create_model("point_m2ae_tiny")
    assert plain.teacher is None and plain.masking == "random"
    guided_only = mmseq.create_model("i2p_mae_tiny", target_2d=False)
    assert guided_only(guided_only.dummy_inputs(2)["points"]).loss_2d is None
    with pytest.raises(ConfigError, match="teacher"):
        mmseq.create_model("point_m2ae_tiny", masking="guided")
    with pytest.raises(ConfigError, match="masking"):
        mmseq.create_model("point_m2ae_tiny", masking="salient")
    points = plain.dummy_inputs(2)["points"]
    optimizer = torch.optim.AdamW(plain.parameters(), lr=2e-3)
    losses = []
    for step in range(12):
        loss = plain(points, generator=torch.Generator().manual_seed(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
    classifier = mmseq.create_model("point_m2ae_cls_tiny").eval()
    assert classifier(points).shape == (2, 10)
    assert plain.features(points).shape == (2, 128)
