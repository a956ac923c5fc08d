import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from mmseq.errors import InputError
from mmseq.vocoders.discriminators import (PERIOD_CHANNELS, SCALE_CHANNELS, HifiGanDiscriminator,
                                           MultiScaleDiscriminator, PeriodDiscriminator, ScaleDiscriminator)

WIDTH = 1 / 32  # channel counts / 32: the paper's layer structure, small enough for a test


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run fastest on one thread (and far slower on two of a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def strided(length: int, stride: int) -> int:
    """Output length of an odd-kernel convolution with 'same' padding (k - 1) / 2 and this stride."""
    return (length - 1) // stride + 1


def period_time_length(samples: int, period: int) -> int:
    h = -(-samples // period)  # ceil: reflect-padded to a multiple of the period
    for _ in range(4):  # four stride-3 convolutions, then stride 1 (and the output convolution)
        h = strided(h, 3)
    return h


def scale_length(samples: int) -> int:
    length = samples
    for s in (1, 2, 2, 4, 4, 1, 1):
        length = strided(length, s)
    return length


@pytest.mark.parametrize("samples", [4096, 2001, 1237])
def test_every_sub_discriminator_has_the_papers_output_shapes(samples):
    torch.manual_seed(0)
    d = HifiGanDiscriminator(width=WIDTH)
    outputs = d(torch.randn(2, samples))
    assert len(outputs) == 5 + 3
    channels_p = [round(c * WIDTH) for c in PERIOD_CHANNELS]
    for out, p in zip(outputs[:5], (2, 3, 5, 7, 11)):
        h = period_time_length(samples, p)
        assert out.logits.shape == (2, h * p)
        assert len(out.features) == 6 and out.features[-1].shape == (2, 1, h, p)
        assert [f.shape[1] for f in out.features[:-1]] == channels_p
        assert out.features[0].shape[2:] == (strided(-(-samples // p), 3), p)
    channels_s = [round(c * WIDTH) for c in SCALE_CHANNELS]
    length = samples
    for i, out in enumerate(outputs[5:]):
        if i:
            length = length // 2 + 1  # AvgPool1d(4, 2, padding=2)
        assert out.logits.shape == (2, scale_length(length))
        assert len(out.features) == 8 and [f.shape[1] for f in out.features[:-1]] == channels_s
        assert out.features[-1].shape == (2, 1, scale_length(length))
    assert torch.isfinite(torch.cat([o.logits for o in outputs], 1)).all()


def test_period_folding_reflect_pads_and_puts_each_phase_in_a_column():
    d = PeriodDiscriminator(5, channels=(2, 2, 2, 2, 2))
    seen = {}
    d.convs[0].register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    wav = torch.randn(2, 23)
    d(wav)
    padded = np.pad(wav.numpy(), ((0, 0), (0, 2)), mode="reflect")  # 23 -> 25, the next multiple of 5
    expected = torch.from_numpy(padded).view(2, 1, 5, 5)
    torch.testing.assert_close(seen["x"], expected)
    assert torch.equal(seen["x"][0, 0, :4, 3], wav[0, 3::5])  # column j holds samples j, j + p, ... (then padding)
    assert d.fold(torch.randn(1, 1, 25)).shape == (1, 1, 5, 5)  # already a multiple: no padding


def test_norms_are_parametrizations_spectral_on_the_first_scale_only():
    d = HifiGanDiscriminator(width=WIDTH)
    convs = [m for m in d.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    assert len(convs) == 5 * 6 + 3 * 8
    assert all(parametrize.is_parametrized(c, "weight") for c in convs)

    def kinds(module):
        return {type(c.parametrizations.weight[0]).__name__ for c in module.modules()
                if isinstance(c, (torch.nn.Conv1d, torch.nn.Conv2d))}

    assert kinds(d.msd.discriminators[0]) == {"_SpectralNorm"}
    assert kinds(d.msd.discriminators[1]) == kinds(d.msd.discriminators[2]) == {"_WeightNorm"}
    assert kinds(d.mpd) == {"_WeightNorm"}
    # Spectral norm's power-iteration vectors live in the state dict (exact resume), weight norm's g and v too.
    keys = d.state_dict().keys()
    assert any(k.startswith("msd.discriminators.0.convs.0.parametrizations.weight.0._u") for k in keys)
    assert "mpd.discriminators.0.convs.0.parametrizations.weight.original0" in keys


def test_full_size_groups_and_parameter_count():
    scale = ScaleDiscriminator()
    assert [c.groups for c in scale.convs] == [1, 4, 16, 16, 16, 16, 1]
    # Shrunk channels keep the group structure where it divides (4 channels cannot take 16 groups).
    tiny = ScaleDiscriminator([4, 4, 8, 16, 32, 32, 32])
    assert [c.groups for c in tiny.convs] == [1, 4, 4, 8, 16, 16, 1]
    msd = MultiScaleDiscriminator()
    count = sum(p.numel() for p in msd.parameters())
    assert 29e6 < count < 30e6, count  # HiFi-GAN V1's MSD: about 29.6M parameters


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="waveforms"):
        HifiGanDiscriminator(width=WIDTH)(torch.randn(2, 2, 100))
