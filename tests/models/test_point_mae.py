"""Point-MAE: shapes, exact masking ratio, the loss against the Chamfer formula, a tiny overfit, pooling."""

import pytest
import torch

import mmseq
from mmseq.errors import ConfigError, InputError
from mmseq.models.point_mae import pool_tokens, random_mask


def _tiny(**overrides):
    torch.manual_seed(0)
    return mmseq.create_model("point_mae_tiny", **overrides)


def test_mask_hides_exactly_the_ratio_and_varies_per_row():
    mask = random_mask(64, 64, 0.6, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert (mask.sum(1) == int(0.6 * 64)).all()
    assert len({tuple(row.tolist()) for row in mask}) == 64
    # every group is hidden about 60% of the time
    assert (mask.float().mean(0) - 0.6).abs().max() < 0.25


def test_forward_shapes_and_chamfer_loss():
    model = _tiny().eval()
    points = model.dummy_inputs(3)["points"]
    out = model(points, generator=torch.Generator().manual_seed(1))
    hidden = int(model.mask_ratio * model.num_groups)
    assert out.mask.shape == (3, model.num_groups) and (out.mask.sum(1) == hidden).all()
    assert out.reconstruction.shape == out.target.shape == (3 * hidden, model.group_size, 3)
    d = torch.cdist(out.reconstruction, out.target).square()
    expected = d.amin(2).mean() + d.amin(1).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_targets_are_the_hidden_groups_points():
    model = _tiny().eval()
    points = model.dummy_inputs(2)["points"]
    out = model(points, generator=torch.Generator().manual_seed(2))
    groups = model.group(points)
    torch.testing.assert_close(out.target, groups.neighbourhoods[out.mask].reshape(out.target.shape))


def test_loss_decreases_on_a_tiny_overfit():
    model = _tiny().train()
    points = model.dummy_inputs(2)["points"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(15):
        loss = model(points, generator=torch.Generator().manual_seed(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_features_pooling_and_classifier():
    model = _tiny().eval()
    points = model.dummy_inputs(2)["points"]
    assert model.features(points).shape == (2, 64)
    assert model.features(points, pooling="concat").shape == (2, 128)
    tokens = torch.randn(2, 5, 4)
    torch.testing.assert_close(pool_tokens(tokens, "sum"), tokens.mean(1) + tokens.max(1).values)
    with pytest.raises(ConfigError, match="pooling"):
        pool_tokens(tokens, "median")
    classifier = mmseq.create_model("point_mae_cls_tiny").eval()
    assert classifier(points).shape == (2, 10)


def test_bad_input_and_config_are_named():
    model = _tiny()
    with pytest.raises(InputError, match="points"):
        model(torch.randn(2, 8, 3))
    with pytest.raises(ConfigError, match="mask_ratio"):
        mmseq.create_model("point_mae_tiny", mask_ratio=1.0)
