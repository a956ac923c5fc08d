"""AdapNet++, SSMA and the fusion baselines: block and model shapes, parameter counts against the paper and the
blocks' formulas (and torchvision's ASPP), the multiscale convolution and SSMA block against direct formulas, the
multi-resolution loss, gradients to every parameter, and errors on bad inputs."""

import pytest
import torch
import torch.nn.functional as F

import mmseq
import mmseq.models.adapnet as adapnet
import mmseq.models.ssma as ssma
from mmseq.errors import ConfigError, InputError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ("adapnet_pp_tiny", "adapnet_pp_early_fusion_tiny", "adapnet_pp_late_fusion_tiny", "ssma_tiny")


def count(module):
    return sum(p.numel() for p in module.parameters())


def easpp_formula(c, o, b, branches=3):
    """Weights ``2 C o + branches (C b + 18 b^2 + b o) + (branches + 2) o^2`` and two BN parameters per channel."""
    weights = 2 * c * o + branches * (c * b + 18 * b * b + b * o) + (branches + 2) * o * o
    norms = 2 * (o + branches * (3 * b + o) + o + o)
    return weights + norms


def test_easpp_count_formula_and_against_deeplab_aspp():
    from torchvision.models.segmentation.deeplabv3 import ASPP

    easpp = adapnet.EASPP(2048, 256, 64)
    assert count(easpp) == easpp_formula(2048, 256, 64)
    assert count(adapnet.EASPP(96, 32, 8)) == easpp_formula(96, 32, 8)
    aspp = count(ASPP(2048, [12, 24, 36], 256))
    # The paper: about 2.04M against 15.5M for DeepLab v3's ASPP.
    assert abs(count(easpp) - 2.04e6) < 0.01e6 and abs(aspp - 15.5e6) < 0.1e6
    assert count(easpp) < aspp / 7


def test_paper_size_parameter_counts():
    """The paper: AdapNet++ 30.2M, SSMA 56.4M (construction only)."""
    model = mmseq.create_model("adapnet_pp")
    assert abs(count(model) - 30.2e6) / 30.2e6 < 0.01
    fused = mmseq.create_model("ssma")
    assert abs(count(fused) - 56.4e6) / 56.4e6 < 0.01
    # SSMA = two streams + fusion blocks + the decoder with skip attention.
    expert = count(fused.rgb_expert)
    assert count(fused.depth_expert) == expert - 2 * 7 * 7 * 64 - 2 * 2  # one input channel instead of three
    assert count(fused) == (2 * expert - 2 * 7 * 7 * 64 - 4 + count(fused.fuse_context) + count(fused.fuse_eighth)
                            + count(fused.fuse_quarter) + count(fused.decoder))
    # The main SSMA block (eta 16): 3x3 512->32 and 32->512 with biases, 1x1 512->256 + BN.
    assert count(fused.fuse_context) == (9 * 512 * 32 + 32) + (9 * 32 * 512 + 512) + 512 * 256 + 2 * 256
    assert count(fused.fuse_eighth) == (9 * 48 * 8 + 8) + (9 * 8 * 48 + 48) + (9 * 48 * 24 + 24)


def test_encoder_units_and_rates():
    for rates in ("paper", "official"):
        encoder = adapnet.AdapNetEncoder(3, 16, (64, 128, 256, 512), rates, 0.0)
        found = [m.rates for m in encoder.modules() if isinstance(m, adapnet.MultiscaleConv)]
        assert found == [r for stage in adapnet.RATES[rates] for r in stage]
        assert [len(s) for s in encoder.stages] == [3, 4, 6, 3]
        # The multiscale units: the last of stage 2, the last four of stage 3, all of stage 4.
        placed = [[isinstance(u.conv2, adapnet.MultiscaleConv) for u in s] for s in encoder.stages]
        assert placed == [[False] * 3, [False] * 3 + [True], [False] * 2 + [True] * 4, [True] * 3]
    with pytest.raises(ConfigError, match="rates 'papr'.*'paper'"):
        adapnet.AdapNetEncoder(3, 16, (64, 128, 256, 512), "papr", 0.0)


def test_multiscale_conv_is_two_dilated_halves():
    conv = adapnet.MultiscaleConv(8, 6, (2, 4))
    x = torch.randn(1, 8, 20, 20)
    expected = torch.cat([F.conv2d(x, conv.conv_r1.weight, padding=2, dilation=2),
                          F.conv2d(x, conv.conv_r2.weight, padding=4, dilation=4)], 1)
    torch.testing.assert_close(conv(x), expected)


def test_block_shapes():
    encoder = adapnet.AdapNetEncoder(4, 16, (64, 128, 256, 512), "paper", 0.0)
    f = encoder(torch.randn(2, 4, 64, 96))
    assert f.quarter.shape == (2, 64, 16, 24) and f.eighth.shape == (2, 128, 8, 12) and f.deep.shape == (2, 512, 4, 6)
    assert adapnet.EASPP(512, 32, 8)(f.deep).shape == (2, 32, 4, 6)
    block = ssma.SSMABlock(64, 32, 16)
    assert block(torch.randn(2, 32, 4, 6), torch.randn(2, 32, 4, 6)).shape == (2, 32, 4, 6)
    decoder = adapnet.AdapNetDecoder(32, 8, 16, 5, aux=True, skip_attention=True)
    out = decoder(adapnet.ExpertFeatures(torch.randn(2, 32, 4, 6), torch.randn(2, 8, 8, 12),
                                         torch.randn(2, 8, 16, 24)))
    assert out.logits.shape == (2, 5, 64, 96) and [a.shape for a in out.aux] == [(2, 5, 64, 96)] * 2


@pytest.mark.parametrize("name", TINY)
def test_model_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = mmseq.create_model(name, num_classes=5).train()
    inputs = model.dummy_inputs(2, size=(32, 48))
    out = model(**inputs)
    assert out.logits.shape == (2, 5, 32, 48)
    assert [a.shape for a in out.aux] == [(2, 5, 32, 48)] * 2
    target = torch.randint(0, 5, (2, 32, 48))
    adapnet.segmentation_loss(out, target, ignore_index=0, aux_weights=model.aux_weights).backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not without
    model.eval()
    with torch.no_grad():
        assert model(**inputs).aux == ()


def test_loss_is_main_plus_weighted_aux_without_void():
    g = torch.Generator().manual_seed(0)
    logits, aux1, aux2 = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    out = adapnet.SegmentationOutput(logits, (aux1, aux2))

    def nll(x):
        keep = target != 0
        picked = x.log_softmax(1).gather(1, target[:, None])[:, 0]
        return -picked[keep].mean()

    expected = nll(logits) + 0.6 * nll(aux1) + 0.5 * nll(aux2)
    torch.testing.assert_close(adapnet.segmentation_loss(out, target, ignore_index=0), expected)
    # Void pixels do not count, whatever was predicted there.
    changed = adapnet.SegmentationOutput(logits.masked_fill((target == 0)[:, None], 9.0), (aux1, aux2))
    torch.testing.assert_close(adapnet.segmentation_loss(changed, target, ignore_index=0), expected)
    with pytest.raises(InputError, match="target"):
        adapnet.segmentation_loss(out, target[:, :4], ignore_index=0)


def test_ssma_gates_lie_in_zero_one():
    torch.manual_seed(0)
    block = ssma.SSMABlock(16, 8, 4)
    x = 5 * torch.randn(2, 16, 6, 6)
    gates = block.gates(x)
    assert gates.shape == x.shape and bool((gates > 0).all()) and bool((gates < 1).all())


def test_ssma_block_with_constant_gates_is_a_linear_mix():
    """Zero gate weights and biases logit(w) / logit(1 - w): the block is ``w conv_a(a) + (1 - w) conv_b(b)``
    followed by its BN."""
    torch.manual_seed(0)
    block = ssma.SSMABlock(12, 5, 6).eval()
    w = 0.3
    with torch.no_grad():
        block.expand.weight.zero_()
        block.expand.bias[:6] = torch.logit(torch.tensor(w))
        block.expand.bias[6:] = torch.logit(torch.tensor(1 - w))
        block.fuse.bn.running_mean.normal_()
        block.fuse.bn.running_var.uniform_(0.5, 2.0)
    a, b = torch.randn(2, 6, 5, 5), torch.randn(2, 6, 5, 5)
    weight = block.fuse.conv.weight
    mixed = w * F.conv2d(a, weight[:, :6]) + (1 - w) * F.conv2d(b, weight[:, 6:])
    torch.testing.assert_close(block(a, b), block.fuse.bn(mixed))


def test_late_fusion_averages_the_two_models():
    torch.manual_seed(0)
    model = mmseq.create_model("adapnet_pp_late_fusion_tiny", num_classes=4).eval()
    inputs = model.dummy_inputs(1, size=(32, 32))
    with torch.no_grad():
        fused = model(**inputs).logits
        expected = (model.rgb_model(rgb=inputs["rgb"]).logits + model.depth_model(depth=inputs["depth"]).logits) / 2
    torch.testing.assert_close(fused, expected)


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = mmseq.create_model("ssma_tiny", num_classes=3).eval()
    inputs = model.dummy_inputs(1, size=(32, 32))
    mmseq.save_pretrained(model, tmp_path / "m")
    loaded = mmseq.load(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)


def test_deeplab_baseline():
    torch.manual_seed(0)
    from torchvision.models.segmentation import deeplabv3_resnet50

    model = mmseq.create_model("deeplabv3_resnet50", num_classes=5, inputs=("depth",)).train()
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=True)
    assert count(model) == count(reference) - 7 * 7 * 64 * 2  # one input channel instead of three
    out = model(depth=torch.randn(2, 1, 40, 56))
    assert out.logits.shape == (2, 5, 40, 56) and [a.shape for a in out.aux] == [(2, 5, 40, 56)]
    assert model.aux_weights == (0.5,)


def test_bad_inputs_are_named():
    model = mmseq.create_model("adapnet_pp_tiny").eval()
    fused = mmseq.create_model("ssma_tiny").eval()
    rgb, depth = torch.randn(1, 3, 32, 32), torch.randn(1, 1, 32, 32)
    with pytest.raises(InputError, match="input 'rgb' has 4 channels, the model expects 3"):
        model(rgb=torch.randn(1, 4, 32, 32))
    with pytest.raises(InputError, match="input 'depth' has 3 channels, the model expects 1"):
        fused(rgb=rgb, depth=torch.randn(1, 3, 32, 32))
    with pytest.raises(InputError, match="input 'depth' .* does not match input 'rgb'"):
        fused(rgb=rgb, depth=torch.randn(1, 1, 48, 32))
    with pytest.raises(InputError, match="no 'depth' input"):
        fused(rgb=rgb)
    with pytest.raises(InputError, match="input 'rgb' is 40x32; .* multiples of 16"):
        model(rgb=torch.randn(1, 3, 40, 32))
    with pytest.raises(InputError, match="input 'rgb' must be a floating"):
        model(rgb=torch.zeros(3, 32, 32))
    with pytest.raises(ConfigError, match="input 'hha'"):
        mmseq.create_model("adapnet_pp_tiny", inputs=("hha",))
    assert model(rgb=rgb, depth=depth).logits.shape == (1, 12, 32, 32)  # an input it does not read is left alone
