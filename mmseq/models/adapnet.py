"""AdapNet++ (Valada et al., "Self-Supervised Model Adaptation for Multimodal Semantic Segmentation", IJCV 2019):
a pre-activation ResNet-50 encoder with multiscale residual units, the efficient atrous spatial pyramid pooling
(eASPP) and a decoder with skip refinement and multi-resolution supervision. The layout follows the official
TensorFlow code (DeepSceneSeg/AdapNet-pp, ``models/AdapNet_pp.py`` and ``network_base.py``):

* stem: BatchNorm on the input, 7x7/2 conv (64) + BN + ReLU, 3x3/2 max pool;
* four stages of timm's :class:`~timm.models.resnetv2.PreActBottleneck` (3, 4, 6, 3 units; 256, 512, 1024, 2048
  channels; strides 1, 2, 2, 1: output stride 16). A multiscale unit replaces the unit's 3x3 convolution by two
  3x3 convolutions of half the channels each at dilations ``(r1, r2)``, concatenated (the same weights as one 3x3).
  Multiscale units: the last unit of stage 2, the last four of stage 3 and all of stage 4 (:data:`RATES`). The
  first unit of stages 1-3 reads an input already normalised (the stem's BN-ReLU, or the BN-ReLU that ends
  stages 1 and 2, whose output is also a skip); stage 4's third unit drops its residual branch with ``dropout``
  (the official code keeps 0.3 of it in training);
* :class:`EASPP` on the 1/16 features; skips from the end of stage 2 (1/8) and stage 1 (1/4), each
  1x1 -> 24 + BN;
* :class:`AdapNetDecoder`: 4x4/2 deconvolution + BN, concatenation with the 1/8 skip, two 3x3 convs (256); 4x4/2
  deconvolution + BN, the 1/4 skip, two 3x3 convs, 1x1 classifier + BN + ReLU, 8x8/4 deconvolution + BN: logits at
  the input resolution. In training two auxiliary 1x1 + BN heads on the deconvolved 1/4 and 1/8 maps, resized
  bilinearly to the input, give the multi-resolution supervision of :func:`segmentation_loss`
  (``main + 0.6 aux1 + 0.5 aux2``, void ignored).

Every model here takes ``forward(rgb=None, depth=None)`` (``[B, 3, H, W]`` and ``[B, depth_channels, H, W]``,
H and W multiples of 16) and reads the inputs named in ``inputs``: ``("rgb",)``, ``("depth",)``, or both
concatenated as one 4-channel image (early fusion). It returns :class:`SegmentationOutput` (logits
``[B, classes, H, W]`` and, in training, the auxiliary logits). :mod:`mmseq.models.ssma` fuses two
:class:`AdapNetExpert` streams.

Training needs batches of two or more: the image-pooling branch (and SSMA's skip attention) normalise 1x1 maps,
which BatchNorm cannot do from one value per channel (as in torchvision's DeepLabV3).

Deliberate differences from the official code: the first unit's projection shortcut reads the stem output as in
every pre-activation ResNet (the official code reads its first 1x1 conv's output; the same parameter count);
BatchNorm keeps torch's momentum 0.1 (the official decay is 0.99); the loss averages over non-void pixels (the
official mean over all pixels, void counting 0, differs by a factor per batch). ``rates="paper"`` uses the paper's
dilations (stage 3: r2 = 2, 4, 8, 16; stage 4: (2, 4), (2, 8), (2, 16)); ``rates="official"`` the released code's
(stage 3: (1, 2) throughout; stage 4: (2, 2)). Both have stage 2's last unit at (1, 2).

Variants: ``adapnet_pp`` (paper size, 30.2M parameters in the paper), ``adapnet_pp_early_fusion`` (RGB-D as 4
channels) and their reduced-width ``*_tiny`` siblings of the same structure for CPU runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, ConvNormAct, create_conv2d
from timm.models.resnetv2 import DownsampleConv, PreActBottleneck
from torch import Tensor

from mmseq.errors import ConfigError, InputError, unknown_choice
from mmseq.registry import register_model, register_variant

# (r1, r2) of each multiscale unit: the last unit of stage 2, the last four of stage 3, all three of stage 4.
RATES = {
    "paper": (((1, 2),), ((1, 2), (1, 4), (1, 8), (1, 16)), ((2, 4), (2, 8), (2, 16))),
    "official": (((1, 2),), ((1, 2),) * 4, ((2, 2),) * 3),
}
UNITS = (3, 4, 6, 3)  # ResNet-50
STRIDES = (1, 2, 2, 1)  # output stride 16
EASPP_RATES = (3, 6, 12)
AUX_WEIGHTS = (0.6, 0.5)  # aux1 (1/4 resolution), aux2 (1/8 resolution)
INPUT_CHANNELS = {"rgb": 3}  # depth: the model's depth_channels
STRIDE = 16  # inputs must be multiples of the output stride

conv_bn = partial(ConvNormAct, norm_layer=BatchNormAct2d)


@dataclass
class SegmentationOutput:
    """Logits ``[B, classes, H, W]`` at the input resolution; ``aux``: auxiliary logits of the same shape
    (training only; empty in eval mode), weighted by the model's ``aux_weights`` in :func:`segmentation_loss`."""

    logits: Tensor
    aux: tuple[Tensor, ...] = ()


def segmentation_loss(output: SegmentationOutput, target: Tensor, ignore_index: int = 0,
                      aux_weights: Sequence[float] = AUX_WEIGHTS, class_weights: Tensor | None = None) -> Tensor:
    """Cross-entropy of the main logits plus ``aux_weights[i]`` times that of each auxiliary output.

    Args:
        output: a model's output; without auxiliary logits (eval mode) only the main term.
        target: class ids ``[B, H, W]``; pixels equal to ``ignore_index`` (void) are left out of every term.
        ignore_index: the void id (0 in AdapNet++'s label sets, 255 for Cityscapes train ids).
        aux_weights: one weight per auxiliary output (AdapNet++: 0.6 for the 1/4 head, 0.5 for the 1/8 head).
        class_weights: ``[classes]`` weight of each target class in every term (torch's weighted mean: the sum of
            weighted pixel losses over the sum of the weights of the non-void pixels); None: all 1.
    """
    if target.shape != output.logits.shape[:1] + output.logits.shape[2:]:
        raise InputError(f"segmentation target {list(target.shape)} does not match the logits "
                         f"{list(output.logits.shape)} (expected [B, H, W])")
    if output.aux and len(output.aux) != len(aux_weights):
        raise ConfigError(f"{len(output.aux)} auxiliary outputs but {len(aux_weights)} aux_weights")
    if class_weights is not None and class_weights.shape != output.logits.shape[1:2]:
        raise ConfigError(f"{len(class_weights)} class weights for {output.logits.shape[1]} classes")
    weight = None if class_weights is None else class_weights.to(output.logits.device, torch.float32)
    loss = F.cross_entropy(output.logits.float(), target, weight=weight, ignore_index=ignore_index)
    for factor, aux in zip(aux_weights, output.aux):
        loss = loss + factor * F.cross_entropy(aux.float(), target, weight=weight, ignore_index=ignore_index)
    return loss


def check_inputs(inputs: Sequence[str], depth_channels: int, rgb: Tensor | None, depth: Tensor | None,
                 multiple: int = STRIDE) -> list[Tensor]:
    """The tensors named in ``inputs``, checked: present, ``[B, C, H, W]`` floating with the expected channels,
    the same batch and size, H and W multiples of ``multiple``."""
    given = {"rgb": rgb, "depth": depth}
    channels = {**INPUT_CHANNELS, "depth": depth_channels}
    tensors = []
    for name in inputs:
        x = given[name]
        if x is None:
            raise InputError(f"the model reads {' + '.join(inputs)}, but no {name!r} input was given")
        if x.dim() != 4 or not x.is_floating_point():
            raise InputError(f"input {name!r} must be a floating [B, C, H, W] tensor, got {x.dtype} of shape "
                             f"{list(x.shape)}")
        if x.shape[1] != channels[name]:
            raise InputError(f"input {name!r} has {x.shape[1]} channels, the model expects {channels[name]}")
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise InputError(f"input {name!r} is {x.shape[-2]}x{x.shape[-1]}; height and width must be multiples "
                             f"of {multiple}")
        if tensors and (x.shape[0], *x.shape[2:]) != (tensors[0].shape[0], *tensors[0].shape[2:]):
            raise InputError(f"input {name!r} {list(x.shape)} does not match input {inputs[0]!r} "
                             f"{list(tensors[0].shape)} in batch size, height or width")
        tensors.append(x)
    return tensors


def check_names(inputs: Sequence[str]) -> tuple[str, ...]:
    inputs = tuple(inputs)
    valid = ("rgb", "depth")
    for name in inputs:
        if name not in valid:
            raise ConfigError(unknown_choice("AdapNet++ input", name, valid))
    if not inputs or len(set(inputs)) != len(inputs):
        raise ConfigError(f"AdapNet++ inputs must be distinct names among {valid}, got {inputs}")
    return inputs


# --- encoder -----------------------------------------------------------------------------------------------------

class MultiscaleConv(nn.Module):
    """A 3x3 convolution split by output channels into two halves at dilations ``rates = (r1, r2)``."""

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, int]):
        super().__init__()
        half = out_channels // 2
        self.rates = tuple(rates)
        self.conv_r1 = create_conv2d(in_channels, half, 3, dilation=rates[0])
        self.conv_r2 = create_conv2d(in_channels, out_channels - half, 3, dilation=rates[1])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv_r1(x), self.conv_r2(x)], dim=1)


def residual_unit(in_channels: int, out_channels: int, stride: int = 1, rates: tuple[int, int] | None = None,
                  preactivated: bool = False, dropout: float | None = None) -> PreActBottleneck:
    """timm's pre-activation bottleneck; ``rates``: a multiscale unit; ``preactivated``: the input is already
    BN-ReLU'd (no ``norm1``); ``dropout``: dropout on the residual branch's output (keys ``conv3.0`` / ``conv3.1``)."""
    project = stride != 1 or in_channels != out_channels
    unit = PreActBottleneck(in_channels, out_channels, stride=stride, conv_layer=create_conv2d,
                            norm_layer=BatchNormAct2d, proj_layer=DownsampleConv if project else None)
    if rates is not None:
        unit.conv2 = MultiscaleConv(unit.conv2.in_channels, unit.conv2.out_channels, rates)
    if preactivated:
        unit.norm1 = nn.Identity()
    if dropout is not None:
        unit.conv3 = nn.Sequential(unit.conv3, nn.Dropout(dropout))
    return unit


@dataclass
class EncoderFeatures:
    """The encoder's three outputs: pre-activated stage-1 (1/4) and stage-2 (1/8) maps and stage 4 (1/16)."""

    quarter: Tensor
    eighth: Tensor
    deep: Tensor


class AdapNetEncoder(nn.Module):
    """Pre-activation ResNet-50 at output stride 16 with multiscale units (see the module notes).

    Args:
        in_channels: input channels.
        stem_width: the 7x7 stem's channels (64).
        widths: the four stages' output channels (256, 512, 1024, 2048).
        rates: ``"paper"`` or ``"official"`` dilations of the multiscale units (:data:`RATES`).
        dropout: residual-branch dropout in stage 4's third unit.
    """

    def __init__(self, in_channels: int, stem_width: int, widths: Sequence[int], rates: str, dropout: float):
        super().__init__()
        if rates not in RATES:
            raise ConfigError(unknown_choice("AdapNet++ rates", rates, RATES))
        if len(widths) != 4:
            raise ConfigError(f"AdapNet++ needs four stage widths, got {list(widths)}")
        self.widths = tuple(widths)
        self.stem = nn.Sequential(nn.BatchNorm2d(in_channels),
                                  conv_bn(in_channels, stem_width, 7, stride=2),
                                  nn.MaxPool2d(3, 2, padding=1))
        multiscale = (None, *RATES[rates])  # stage 1 has none
        self.stages = nn.ModuleList()
        previous = stem_width
        for index, (units, width, stride) in enumerate(zip(UNITS, widths, STRIDES)):
            stage_rates = multiscale[index] or ()
            plain = units - len(stage_rates)
            stage = []
            for i in range(units):
                stage.append(residual_unit(
                    previous if i == 0 else width, width, stride if i == 0 else 1,
                    rates=stage_rates[i - plain] if i >= plain else None,
                    preactivated=i == 0 and index < 3,
                    dropout=dropout if (index, i) == (3, 2) else None))
            previous = width
            self.stages.append(nn.Sequential(*stage))
        # The BN-ReLU after stages 1, 2 and 4 (its output feeds a skip / eASPP and the next stage).
        self.post_norms = nn.ModuleList([BatchNormAct2d(widths[0]), BatchNormAct2d(widths[1]),
                                         BatchNormAct2d(widths[3])])

    def forward(self, x: Tensor) -> EncoderFeatures:
        """``[B, in_channels, H, W]`` -> maps at 1/4, 1/8 and 1/16 of H and W."""
        quarter = self.post_norms[0](self.stages[0](self.stem(x)))
        eighth = self.post_norms[1](self.stages[1](quarter))
        deep = self.post_norms[2](self.stages[3](self.stages[2](eighth)))
        return EncoderFeatures(quarter, eighth, deep)


class EASPP(nn.Module):
    """Efficient ASPP: a 1x1 branch, three cascaded atrous branches (1x1 -> ``branch_channels``, two 3x3 at rate r,
    1x1 -> ``channels``, each conv + BN + ReLU), image pooling (1x1 + BN + ReLU, broadcast back); concatenation ->
    1x1 ``channels`` + BN (no ReLU).

    Weights (BN aside): ``2 C o + 3 (C b + 18 b^2 + b o) + 5 o^2`` for ``C`` inputs, ``o = channels``,
    ``b = branch_channels`` (2.04M at 2048 / 256 / 64).
    """

    def __init__(self, in_channels: int, channels: int = 256, branch_channels: int = 64,
                 rates: Sequence[int] = EASPP_RATES):
        super().__init__()
        self.conv1x1 = conv_bn(in_channels, channels, 1)
        self.branches = nn.ModuleList(nn.Sequential(
            conv_bn(in_channels, branch_channels, 1),
            conv_bn(branch_channels, branch_channels, 3, dilation=rate),
            conv_bn(branch_channels, branch_channels, 3, dilation=rate),
            conv_bn(branch_channels, channels, 1)) for rate in rates)
        self.pool = conv_bn(in_channels, channels, 1)
        self.project = conv_bn(channels * (len(rates) + 2), channels, 1, apply_act=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_channels, h, w]`` -> ``[B, channels, h, w]``."""
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([self.conv1x1(x), *(b(x) for b in self.branches), pooled], dim=1))


@dataclass
class ExpertFeatures:
    """What an AdapNet++ stream hands the decoder (or SSMA fusion): ``context`` (eASPP, 1/16) and the projected
    ``skip_eighth`` (1/8) and ``skip_quarter`` (1/4)."""

    context: Tensor
    skip_eighth: Tensor
    skip_quarter: Tensor


class AdapNetExpert(nn.Module):
    """One modality's stream: encoder, eASPP and the two skip projections (1x1 -> ``skip_channels`` + BN)."""

    def __init__(self, in_channels: int, stem_width: int, widths: Sequence[int], rates: str, dropout: float,
                 easpp_channels: int, easpp_branch_channels: int, skip_channels: int):
        super().__init__()
        self.encoder = AdapNetEncoder(in_channels, stem_width, widths, rates, dropout)
        self.easpp = EASPP(widths[3], easpp_channels, easpp_branch_channels)
        self.skip_eighth = conv_bn(widths[1], skip_channels, 1, apply_act=False)
        self.skip_quarter = conv_bn(widths[0], skip_channels, 1, apply_act=False)
        self.output_dim, self.skip_channels = easpp_channels, skip_channels

    def forward(self, x: Tensor) -> ExpertFeatures:
        features = self.encoder(x)
        return ExpertFeatures(self.easpp(features.deep), self.skip_eighth(features.eighth),
                              self.skip_quarter(features.quarter))


# --- decoder -----------------------------------------------------------------------------------------------------

def deconv_bn(in_channels: int, out_channels: int, scale: int) -> nn.Sequential:
    """A ``2 scale`` x ``2 scale`` transposed convolution with stride ``scale`` (exactly ``scale`` x the size) + BN."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2 * scale, scale, scale // 2, bias=False),
                         nn.BatchNorm2d(out_channels))


class SkipAttention(nn.Module):
    """SSMA's decoder attention: channel weights for a fused skip from the decoder's global pooled features
    (GAP -> 1x1 -> BN -> ReLU), multiplied onto the skip."""

    def __init__(self, decoder_channels: int, skip_channels: int):
        super().__init__()
        self.weights = conv_bn(decoder_channels, skip_channels, 1)

    def forward(self, decoder: Tensor, skip: Tensor) -> Tensor:
        return skip * self.weights(decoder.mean(dim=(2, 3), keepdim=True))


class AdapNetDecoder(nn.Module):
    """Two x2 stages with skip refinement, the classifier and a x4 deconvolution (see the module notes).

    Args:
        in_channels: the context's channels (eASPP or SSMA output).
        skip_channels: channels of each skip.
        channels: the decoder's width (256).
        num_classes: output classes (void included).
        aux: build the two auxiliary heads (their logits are returned in training).
        skip_attention: weight each skip by :class:`SkipAttention` (the SSMA decoder).
    """

    def __init__(self, in_channels: int, skip_channels: int, channels: int, num_classes: int, aux: bool = True,
                 skip_attention: bool = False):
        super().__init__()
        self.up_eighth = deconv_bn(in_channels, channels, 2)
        self.refine_eighth = nn.Sequential(conv_bn(channels + skip_channels, channels, 3),
                                           conv_bn(channels, channels, 3))
        self.up_quarter = deconv_bn(channels, channels, 2)
        self.refine_quarter = nn.Sequential(conv_bn(channels + skip_channels, channels, 3),
                                            conv_bn(channels, channels, 3))
        self.classifier = conv_bn(channels, num_classes, 1)
        self.up_full = deconv_bn(num_classes, num_classes, 4)
        self.attention = nn.ModuleList([SkipAttention(channels, skip_channels),
                                        SkipAttention(channels, skip_channels)]) if skip_attention else None
        # aux1 on the deconvolved 1/4 map, aux2 on the 1/8 one.
        self.aux_heads = nn.ModuleList([conv_bn(channels, num_classes, 1, apply_act=False),
                                        conv_bn(channels, num_classes, 1, apply_act=False)]) if aux else None

    def forward(self, features: ExpertFeatures) -> SegmentationOutput:
        """Context at 1/16, skips at 1/8 and 1/4 -> logits at 16 x the context's size."""
        eighth = self.up_eighth(features.context)
        skip = features.skip_eighth if self.attention is None else self.attention[0](eighth, features.skip_eighth)
        x = self.refine_eighth(torch.cat([eighth, skip], dim=1))
        quarter = self.up_quarter(x)
        skip = features.skip_quarter if self.attention is None else self.attention[1](quarter,
                                                                                      features.skip_quarter)
        x = self.refine_quarter(torch.cat([quarter, skip], dim=1))
        logits = self.up_full(self.classifier(x))
        if not (self.training and self.aux_heads is not None):
            return SegmentationOutput(logits)
        size = logits.shape[2:]
        aux = tuple(F.interpolate(head(x), size=size, mode="bilinear", align_corners=False)
                    for head, x in zip(self.aux_heads, (quarter, eighth)))
        return SegmentationOutput(logits, aux)


# --- models ------------------------------------------------------------------------------------------------------

class SegmentationModel(nn.Module):
    """Shared by the segmentation models: what they read and write, and dummy inputs."""

    inputs: tuple[str, ...]
    depth_channels: int
    writes = "segmentation"

    @property
    def reads(self) -> str:
        return "+".join(self.inputs)

    def dummy_inputs(self, batch_size: int = 2, size: tuple[int, int] = (64, 64)) -> dict[str, Tensor]:
        """Random ``[B, C, 64, 64]`` images for every input the model reads."""
        g = torch.Generator().manual_seed(0)
        channels = {**INPUT_CHANNELS, "depth": self.depth_channels}
        return {name: torch.randn(batch_size, channels[name], *size, generator=g) for name in self.inputs}


class AdapNetPP(SegmentationModel):
    """AdapNet++ on one image: ``inputs`` concatenated along channels (RGB, depth, or both: early fusion)."""

    aux_weights = AUX_WEIGHTS

    def __init__(self, inputs: Sequence[str], depth_channels: int, num_classes: int, stem_width: int,
                 widths: Sequence[int], rates: str, dropout: float, easpp_channels: int, easpp_branch_channels: int,
                 skip_channels: int, decoder_channels: int, aux: bool):
        super().__init__()
        self.inputs, self.depth_channels = check_names(inputs), depth_channels
        in_channels = sum({**INPUT_CHANNELS, "depth": depth_channels}[name] for name in self.inputs)
        self.expert = AdapNetExpert(in_channels, stem_width, widths, rates, dropout, easpp_channels,
                                    easpp_branch_channels, skip_channels)
        self.decoder = AdapNetDecoder(easpp_channels, skip_channels, decoder_channels, num_classes, aux)

    def forward(self, rgb: Tensor | None = None, depth: Tensor | None = None) -> SegmentationOutput:
        """``rgb [B, 3, H, W]`` and/or ``depth [B, depth_channels, H, W]`` (those in ``inputs``; H, W multiples
        of 16) -> logits ``[B, classes, H, W]`` (+ two auxiliary ones in training)."""
        x = torch.cat(check_inputs(self.inputs, self.depth_channels, rgb, depth), dim=1)
        return self.decoder(self.expert(x))


# The reduced width of the ``*_tiny`` variants (same units, rates and heads); the builders' defaults are the paper's.
TINY_WIDTH = dict(stem_width=16, widths=(64, 128, 256, 512), easpp_channels=64, easpp_branch_channels=16,
                  skip_channels=8, decoder_channels=64)


def adapnet_pp_model(inputs: Sequence[str] = ("rgb",), depth_channels: int = 1, num_classes: int = 12,
                     stem_width: int = 64, widths: Sequence[int] = (256, 512, 1024, 2048), rates: str = "paper",
                     dropout: float = 0.7, easpp_channels: int = 256, easpp_branch_channels: int = 64,
                     skip_channels: int = 24, decoder_channels: int = 256, aux: bool = True) -> AdapNetPP:
    return AdapNetPP(inputs, depth_channels, num_classes, stem_width, tuple(widths), rates, dropout, easpp_channels,
                     easpp_branch_channels, skip_channels, decoder_channels, aux)


register_variant(adapnet_pp_model, "adapnet_pp", "AdapNet++ at the paper's size on one modality "
                 "(``inputs=(\"depth\",)`` for depth alone); 12 classes are Cityscapes' void + 11.")
register_variant(adapnet_pp_model, "adapnet_pp_tiny",
                 "AdapNet++ at a quarter of the width (same units, rates and heads) for CPU runs.", **TINY_WIDTH)
register_variant(adapnet_pp_model, "adapnet_pp_early_fusion",
                 "Early-fusion baseline: one AdapNet++ on RGB and depth concatenated (4 channels).",
                 inputs=("rgb", "depth"))
register_variant(adapnet_pp_model, "adapnet_pp_early_fusion_tiny",
                 "The early-fusion baseline at ``adapnet_pp_tiny``'s width.", inputs=("rgb", "depth"), **TINY_WIDTH)


# --- reference baseline ------------------------------------------------------------------------------------------

class DeepLabV3Baseline(SegmentationModel):
    """torchvision's ``deeplabv3_resnet50`` (ResNet-50 at output stride 8, ASPP at rates 12 / 24 / 36, randomly
    initialised: ``weights=None, weights_backbone=None``) behind the same inputs and outputs; with ``aux`` its FCN
    head on layer 3 gives one auxiliary output (weight 0.5). ``inputs`` other than RGB replace the first conv."""

    def __init__(self, inputs: Sequence[str], depth_channels: int, num_classes: int, aux: bool, aux_weight: float):
        super().__init__()
        from torchvision.models.segmentation import deeplabv3_resnet50

        self.inputs, self.depth_channels = check_names(inputs), depth_channels
        self.aux_weights = (aux_weight,) if aux else ()
        self.net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
        in_channels = sum({**INPUT_CHANNELS, "depth": depth_channels}[name] for name in self.inputs)
        if in_channels != 3:
            self.net.backbone.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)

    def forward(self, rgb: Tensor | None = None, depth: Tensor | None = None) -> SegmentationOutput:
        """Inputs as :class:`AdapNetPP` (any size) -> logits ``[B, classes, H, W]`` (+ the FCN head's in training)."""
        x = torch.cat(check_inputs(self.inputs, self.depth_channels, rgb, depth, multiple=1), dim=1)
        out = self.net(x)
        return SegmentationOutput(out["out"], (out["aux"],) if self.training and "aux" in out else ())


@register_model
def deeplabv3_resnet50(inputs: Sequence[str] = ("rgb",), depth_channels: int = 1, num_classes: int = 12,
                       aux: bool = True, aux_weight: float = 0.5) -> DeepLabV3Baseline:
    """torchvision's DeepLabV3-ResNet50, the single-modality reference (no pretrained weights)."""
    return DeepLabV3Baseline(inputs, depth_channels, num_classes, aux, aux_weight)
