"""The pre-net / trunk / post-net contract holds for other modalities: images and point clouds."""

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.prenets.points import farthest_point_sample


def _train_steps(model, make_batch, steps=60, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        x, y = make_batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = make_batch()
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_image_patch_prenet_with_classifier_learns_where_the_bright_quadrant_is():
    torch.manual_seed(0)
    model = mmseq.create_model("image_classifier_tiny", num_classes=4, image_size=16, patch_size=4)

    def batch():
        y = torch.randint(0, 4, (32,))
        x = torch.randn(32, 3, 16, 16) * 0.3
        for i, q in enumerate(y.tolist()):
            r, c = divmod(q, 2)
            x[i, :, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 1.0
        return x, y

    assert _train_steps(model, batch) > 0.9


def test_point_group_prenet_with_classifier_separates_shapes():
    torch.manual_seed(0)
    model = mmseq.create_model("point_classifier_tiny", num_classes=2, num_groups=8, group_size=8)

    def batch():
        y = torch.randint(0, 2, (16,))
        pts = torch.randn(16, 64, 3)
        sphere = pts / pts.norm(dim=-1, keepdim=True)
        cube = pts.clamp(-1, 1).sign() * torch.rand(16, 64, 3) ** 0.1
        x = torch.where(y[:, None, None] == 0, sphere, cube)
        return x, y

    assert _train_steps(model, batch, steps=40) > 0.9


@pytest.mark.parametrize("name", ["image_classifier_tiny", "point_classifier_tiny", "text_transformer_tiny"])
def test_forward_features_reports_every_layer_and_lengths(name):
    model = mmseq.create_model(name).eval()
    inputs = model.dummy_inputs(2)
    feats = model.forward_features(inputs["x"], inputs["lengths"])
    assert len(feats.hidden_states) == 3  # the encoder input and 2 layers
    assert feats.lengths.shape == (2,) and feats.hidden_states[-1].shape[1] == int(feats.lengths.max())
    prenet = model.prenet if hasattr(model, "prenet") else model.encoder_prenet
    assert feats.downsample_rate == prenet.downsample_rate


def test_farthest_point_sampling_spreads_out():
    pts = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [10, 0, 0], [0, 10, 0], [0.2, 0, 0]]])
    assert sorted(farthest_point_sample(pts, 3)[0].tolist()) == [0, 2, 3]


def test_pre_net_width_must_match_trunk():
    from mmseq.nn.backbone import EncoderModel
    from mmseq.nn.transformer import LayerSpec, TransformerEncoder
    from mmseq.prenets.image import ImagePatchPrenet

    with pytest.raises(ValueError, match="output_dim 16 != encoder width 32"):
        EncoderModel(ImagePatchPrenet(8, 4, 3, 16), TransformerEncoder(LayerSpec(32, 4, 64), 1))
