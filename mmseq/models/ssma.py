"""SSMA fusion (Valada et al., IJCV 2019): two modality-specific AdapNet++ streams (:class:`~mmseq.models.adapnet.
AdapNetExpert`, RGB and depth) fused by self-supervised model adaptation blocks, and the late-fusion baseline.

:class:`SSMABlock` concatenates the two streams' maps, computes per-location, per-channel gates in (0, 1) with a
3x3 bottleneck (channels / ``reduction``) -> ReLU -> 3x3 -> sigmoid, multiplies the concatenation by them and
fuses it with a convolution. As in the official code (DeepSceneSeg/SSMA, ``models/SSMA.py``) the block after the
eASPP uses reduction 16 and a 1x1 conv + BN to the eASPP width; the two skip blocks (1/8 and 1/4) use reduction 6
and a 3x3 conv with bias to the skip width; the decoder weights each fused skip by channel attention computed from
its own global pooled features (:class:`~mmseq.models.adapnet.SkipAttention`: GAP -> 1x1 -> BN -> ReLU, as
released). The gate convolutions have biases. The official SSMA code trains without the auxiliary heads
(``has_aux_loss=False``); here they are on by default, as in AdapNet++, and ``aux=False`` builds none.

Variants: ``ssma`` (paper size, 56.4M parameters in the paper), ``adapnet_pp_late_fusion`` (two AdapNet++ with
averaged logits) and their ``*_tiny`` siblings at ``adapnet_pp_tiny``'s width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.models.adapnet import (AUX_WEIGHTS, TINY_WIDTH, AdapNetDecoder, AdapNetExpert, AdapNetPP, ExpertFeatures,
                                  SegmentationModel, SegmentationOutput, check_inputs, conv_bn)
from mmseq.registry import register_variant

CONTEXT_REDUCTION = 16  # eta of the block after the eASPP
SKIP_REDUCTION = 6  # eta of the two skip blocks


class SSMABlock(nn.Module):
    """Gated fusion of two maps ``[B, C_a, h, w]`` and ``[B, C_b, h, w]`` into ``[B, out_channels, h, w]``.

    Args:
        channels: ``C_a + C_b``, the concatenation's channels.
        out_channels: the fused map's channels.
        reduction: the bottleneck keeps ``max(1, channels // reduction)`` channels.
        fuse_kernel: kernel of the fusing convolution (1 after the eASPP, 3 at the skips).
        fuse_norm: BN after the fusing convolution (else the convolution has a bias).
    """

    def __init__(self, channels: int, out_channels: int, reduction: int, fuse_kernel: int = 1,
                 fuse_norm: bool = True):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.bottleneck = nn.Conv2d(channels, hidden, 3, padding=1)
        self.expand = nn.Conv2d(hidden, channels, 3, padding=1)
        if fuse_norm:
            self.fuse = conv_bn(channels, out_channels, fuse_kernel, apply_act=False)
        else:
            self.fuse = nn.Conv2d(channels, out_channels, fuse_kernel, padding=fuse_kernel // 2)

    def gates(self, x: Tensor) -> Tensor:
        """Gates in (0, 1) ``[B, channels, h, w]`` for the concatenation ``x``."""
        return torch.sigmoid(self.expand(torch.relu(self.bottleneck(x))))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        x = torch.cat([a, b], dim=1)
        return self.fuse(x * self.gates(x))


class SSMAModel(SegmentationModel):
    """RGB and depth AdapNet++ streams, SSMA fusion after the eASPP and at both skips, the attention decoder."""

    inputs = ("rgb", "depth")
    aux_weights = AUX_WEIGHTS

    def __init__(self, depth_channels: int, num_classes: int, stem_width: int, widths: Sequence[int], rates: str,
                 dropout: float, easpp_channels: int, easpp_branch_channels: int, skip_channels: int,
                 decoder_channels: int, aux: bool):
        super().__init__()
        self.depth_channels = depth_channels
        stream = (stem_width, tuple(widths), rates, dropout, easpp_channels, easpp_branch_channels, skip_channels)
        self.rgb_expert = AdapNetExpert(3, *stream)
        self.depth_expert = AdapNetExpert(depth_channels, *stream)
        self.fuse_context = SSMABlock(2 * easpp_channels, easpp_channels, CONTEXT_REDUCTION)
        self.fuse_eighth = SSMABlock(2 * skip_channels, skip_channels, SKIP_REDUCTION, fuse_kernel=3,
                                     fuse_norm=False)
        self.fuse_quarter = SSMABlock(2 * skip_channels, skip_channels, SKIP_REDUCTION, fuse_kernel=3,
                                      fuse_norm=False)
        self.decoder = AdapNetDecoder(easpp_channels, skip_channels, decoder_channels, num_classes, aux,
                                      skip_attention=True)

    def fuse(self, rgb: ExpertFeatures, depth: ExpertFeatures) -> ExpertFeatures:
        return ExpertFeatures(self.fuse_context(rgb.context, depth.context),
                              self.fuse_eighth(rgb.skip_eighth, depth.skip_eighth),
                              self.fuse_quarter(rgb.skip_quarter, depth.skip_quarter))

    def forward(self, rgb: Tensor | None = None, depth: Tensor | None = None) -> SegmentationOutput:
        """``rgb [B, 3, H, W]`` and ``depth [B, depth_channels, H, W]`` (H, W multiples of 16) -> logits
        ``[B, classes, H, W]`` (+ two auxiliary ones in training)."""
        rgb, depth = check_inputs(self.inputs, self.depth_channels, rgb, depth)
        return self.decoder(self.fuse(self.rgb_expert(rgb), self.depth_expert(depth)))


class LateFusion(SegmentationModel):
    """Late-fusion baseline: an RGB and a depth AdapNet++, logits (and auxiliary logits) averaged."""

    inputs = ("rgb", "depth")
    aux_weights = AUX_WEIGHTS

    def __init__(self, rgb_model: AdapNetPP, depth_model: AdapNetPP):
        super().__init__()
        self.depth_channels = depth_model.depth_channels
        self.rgb_model, self.depth_model = rgb_model, depth_model

    def forward(self, rgb: Tensor | None = None, depth: Tensor | None = None) -> SegmentationOutput:
        check_inputs(self.inputs, self.depth_channels, rgb, depth)
        a, b = self.rgb_model(rgb=rgb), self.depth_model(depth=depth)
        return SegmentationOutput((a.logits + b.logits) / 2, tuple((x + y) / 2 for x, y in zip(a.aux, b.aux)))


def ssma_model(depth_channels: int = 1, num_classes: int = 12, stem_width: int = 64,
               widths: Sequence[int] = (256, 512, 1024, 2048), rates: str = "paper", dropout: float = 0.7,
               easpp_channels: int = 256, easpp_branch_channels: int = 64, skip_channels: int = 24,
               decoder_channels: int = 256, aux: bool = True) -> SSMAModel:
    return SSMAModel(depth_channels, num_classes, stem_width, widths, rates, dropout, easpp_channels,
                     easpp_branch_channels, skip_channels, decoder_channels, aux)


def late_fusion_model(depth_channels: int = 1, num_classes: int = 12, stem_width: int = 64,
                      widths: Sequence[int] = (256, 512, 1024, 2048), rates: str = "paper", dropout: float = 0.7,
                      easpp_channels: int = 256, easpp_branch_channels: int = 64, skip_channels: int = 24,
                      decoder_channels: int = 256, aux: bool = True) -> LateFusion:
    sizes = (depth_channels, num_classes, stem_width, tuple(widths), rates, dropout, easpp_channels,
             easpp_branch_channels, skip_channels, decoder_channels, aux)
    return LateFusion(AdapNetPP(("rgb",), *sizes), AdapNetPP(("depth",), *sizes))


register_variant(ssma_model, "ssma", "AdapNet++ with SSMA fusion of RGB and depth at the paper's size.")
register_variant(ssma_model, "ssma_tiny", "SSMA at ``adapnet_pp_tiny``'s width for CPU runs.", **TINY_WIDTH)
register_variant(late_fusion_model, "adapnet_pp_late_fusion", "Late-fusion baseline at the paper's size.")
register_variant(late_fusion_model, "adapnet_pp_late_fusion_tiny",
                 "Late-fusion baseline at ``adapnet_pp_tiny``'s width.", **TINY_WIDTH)
