"""The stacked-frames pre-net: output lengths, padding invariance, training-mode use of every parameter, errors."""

import pytest
import torch

from mmseq.errors import InputError
from mmseq.prenets.spectrogram import StackedFramesPrenet


def test_stacks_frames_and_ignores_padding():
    torch.manual_seed(0)
    prenet = StackedFramesPrenet(6, 16, stack=3, pos_conv_kernel=4, pos_conv_groups=2, mask_time_prob=0.0).eval()
    frames = torch.randn(2, 20, 6)
    lengths = torch.tensor([20, 11])
    out, out_lengths = prenet(frames, lengths)
    assert out.shape == (2, 6, 16) and out_lengths.tolist() == [6, 3]  # 20 // 3, 11 // 3
    alone, _ = prenet(frames[1:, :11], lengths[1:])
    torch.testing.assert_close(out[1, :3], alone[0, :3])
    # step t reads frames [3t, 3t + 3) only: changing frame 5 changes step 1 before positions, nothing earlier
    changed = frames.clone()
    changed[0, 5] += 1.0
    prenet_plain = StackedFramesPrenet(6, 16, stack=3, pos_conv_kernel=0, mask_time_prob=0.0).eval()
    a, _ = prenet_plain(frames, lengths)
    b, _ = prenet_plain(changed, lengths)
    assert torch.equal(a[0, 0], b[0, 0]) and not torch.equal(a[0, 1], b[0, 1]) and torch.equal(a[0, 2:], b[0, 2:])


def test_every_parameter_trains_and_bad_frames_are_named():
    prenet = StackedFramesPrenet(5, 8, stack=2, pos_conv_kernel=4, pos_conv_groups=2, mask_time_prob=0.5,
                                 mask_time_length=2).train()
    torch.manual_seed(1)
    out, _ = prenet(*prenet.dummy_inputs(3))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prenet.parameters())
    with pytest.raises(InputError, match=r"frames \[B, T, 5\]"):
        prenet(torch.randn(2, 10, 4))
    with pytest.raises(InputError, match="at least 2 frames"):
        prenet(torch.randn(2, 10, 5), torch.tensor([10, 1]))
