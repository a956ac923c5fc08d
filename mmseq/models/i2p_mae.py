"""Point-M2AE (Zhang et al., 2022) and I2P-MAE (Zhang et al., CVPR 2023): hierarchical masked autoencoding of
point clouds, the second guided by a frozen 2-D model looking at depth projections of the cloud.

Scales. A cloud is grouped three times: FPS + kNN on the points (512 groups of 16), then on those centres (256 of 8),
then on those (64 of 8). Scale 0 embeds each group's points with a mini-PointNet; every later scale embeds ("merges")
the *tokens* of its K children with another mini-PointNet. Each scale runs its own transformer stack (dims
96/192/384, 5 blocks each, 6 heads) with a centre position embedding added before every block.

Masking. A mask is drawn at the coarsest scale and propagated down: a finer group stays visible when it is a child of
a visible coarser group, so a visible coarse token only ever merges visible children. Rows of a batch then keep
different numbers of visible tokens at the finer scales; they are packed (visible first) and padded keys blocked.
``masking="random"`` hides ``int(mask_ratio * G)`` coarse groups uniformly (Point-M2AE); ``masking="guided"`` is
I2P-MAE's 2-D-guided masking: the teacher's CLS-to-patch attention on each of the three projected views is read back
at the coarse centres, averaged over views, turned into a distribution with a softmax, and G indices are drawn from
it without replacement; the first ``G - int(mask_ratio * G)`` drawn stay visible, so salient groups are kept.

Decoder. At the coarsest scale the visible tokens and one learned mask token per hidden group go through a decoder
stack; the result is carried to the next finer scale by 3-NN inverse-distance propagation, fused with that scale's
encoder tokens (zeros where hidden), refined by a residual conv block and a decoder stack. The hidden groups of that
finer scale predict their children's coordinates (Chamfer L2, ``loss_3d``); with ``target_2d`` the visible ones also
predict the teacher's features of the three views at their children's positions (MSE, ``loss_2d``);
``loss = loss_3d + weight_2d * loss_2d``, where ``weight_2d = 1`` is the official unweighted sum.

Local attention. ``local_radius`` (one per scale, 0 = off) blocks attention between tokens farther apart than the
radius; the official configs use (0.32, 0.64, 1.28) for fine-tuning and turn it off for pre-training.

Module and parameter names are the official ones (``h_encoder.token_embed.{i}``, ``h_encoder.encoder_blocks.{i}``,
``h_decoder``, ``token_prop``, ``cls_head_finetune``, ...), so :mod:`mmseq.interop.i2p_mae` maps official files with
a handful of renames. Differences from the official code: the coarse-to-fine mask propagation does not also mark
group 0 of the first cloud visible (the official ``~mask * idx`` scatter does), and the local-attention mask blocks
pairs outside the radius *or* padded (the official pre-training product blocks only pairs that are both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from mmseq.errors import ConfigError, InputError
from mmseq.registry import register_variant
from mmseq.models.point_mae import (MASK_FILL, PointBlocks, PointMAEOutput, check_points, classification_head,
                                    drop_path_rates, dummy_points, init_weights, pool_tokens, random_mask)
from mmseq.nn.points import PointTokenEmbedding, chamfer_distance_l2, gather_points, group_points, \
    interpolate_features
from mmseq.nn.projection import back_project, project_depth, view_points

MASKINGS = ("random", "guided")


# --- the embedded 2-D teacher --------------------------------------------------------------------------------------

class DepthViewTeacher(nn.Module):
    """A small ViT (timm's ``VisionTransformer``, class token) on projected depth views: the frozen 2-D model of
    I2P-MAE when no CLIP weights are at hand. Trained as a classifier on the views (recipe ``i2p_mae/teacher``).

    Args:
        image_size / patch_size: the square view and its patches (``image_size // patch_size`` per side).
        dim / depth / num_heads: the ViT.
        num_classes: classes of the teacher's own training.
        splat: the projection's splat size.
    """

    reads, writes = "points", "classes"

    def __init__(self, image_size: int = 224, patch_size: int = 16, dim: int = 384, depth: int = 6,
                 num_heads: int = 6, num_classes: int = 40, splat: int = 5):
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.splat = image_size, patch_size, splat
        self.feature_dim, self.grid = dim, image_size // patch_size
        self.vit = VisionTransformer(img_size=image_size, patch_size=patch_size, in_chans=3, embed_dim=dim,
                                     depth=depth, num_heads=num_heads, num_classes=num_classes, global_pool="token")

    def project(self, points: Tensor):
        """``points [B, N, 3]`` -> the three views' images ``[3B, 3, S, S]`` (view-major) and their geometry."""
        return project_depth(view_points(points), self.image_size, self.splat)

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, 3, S, S]`` -> logits ``[B, C]``."""
        return self.vit(images)

    def features_and_saliency(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Last-layer patch features ``[B, D, g, g]`` and the last block's CLS-to-patch attention, averaged over
        heads, ``[B, 1, g, g]``."""
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        for block in vit.blocks[:-1]:
            x = block(x)
        last = vit.blocks[-1]
        b, n, d = x.shape
        attn = last.attn
        qkv = attn.qkv(last.norm1(x)).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        weights = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(-1).mean(1)[:, 0]  # [B, n]
        tokens = vit.norm(last(x))[:, vit.num_prefix_tokens:]
        g = self.grid
        return (tokens.transpose(1, 2).reshape(b, d, g, g),
                weights[:, vit.num_prefix_tokens:].reshape(b, 1, g, g))

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        return {"images": torch.randn(batch_size, 3, self.image_size, self.image_size,
                                      generator=torch.Generator().manual_seed(0))}


# --- hierarchy: grouping, masks, encoder ---------------------------------------------------------------------------

class Hierarchy(NamedTuple):
    """Per scale (finest first): ``neighbourhoods [B, G_i, K_i, 3]`` relative to ``centres [B, G_i, 3]``,
    ``index [B, G_i, K_i]`` of the children in the scale below (in the points for scale 0)."""

    neighbourhoods: list[Tensor]
    centres: list[Tensor]
    index: list[Tensor]


def build_hierarchy(points: Tensor, num_groups: Sequence[int], group_sizes: Sequence[int]) -> Hierarchy:
    neighbourhoods, centres, index = [], [], []
    source = points
    for g, k in zip(num_groups, group_sizes):
        groups = group_points(source, g, k)
        neighbourhoods.append(groups.neighbourhoods)
        centres.append(groups.centres)
        index.append(groups.index)
        source = groups.centres
    return Hierarchy(neighbourhoods, centres, index)


def propagate_masks(coarse: Tensor, index: Sequence[Tensor], sizes: Sequence[int]) -> list[Tensor]:
    """Hidden-group masks of every scale (finest first) from the coarsest one: a group of scale i-1 is visible iff
    it is among the children ``index[i]`` of a visible group of scale i. ``sizes``: groups per scale."""
    masks = [coarse]
    for i in range(len(sizes) - 1, 0, -1):
        b = coarse.shape[0]
        children = index[i].reshape(b, -1)  # [B, G_i * K_i]
        visible_parent = (~masks[-1]).unsqueeze(-1).expand_as(index[i]).reshape(b, -1)
        visible = torch.zeros(b, sizes[i - 1], dtype=torch.long, device=coarse.device)
        visible.scatter_add_(1, children, visible_parent.long())
        masks.append(visible == 0)
    return masks[::-1]


def guided_mask(saliency: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """I2P-MAE's 2-D-guided mask: ``saliency [B, G]`` -> bool ``[B, G]``, True at the ``int(ratio * G)`` hidden
    groups; the ``G - int(ratio * G)`` visible ones are the first draws of a multinomial without replacement from
    ``softmax(saliency)``."""
    b, g = saliency.shape
    order = torch.multinomial(F.softmax(saliency.float(), dim=1), g, replacement=False, generator=generator)
    mask = torch.ones(b, g, dtype=torch.bool, device=saliency.device)
    return mask.scatter_(1, order[:, : g - int(ratio * g)], False)


def pack_visible(visible: Tensor) -> tuple[Tensor, Tensor]:
    """``visible [B, G]`` -> ``index [B, L]`` (each row's visible groups first, in order; L the largest count) and
    ``valid [B, L]`` (False at padding)."""
    order = torch.sort((~visible).to(torch.int8), dim=1, stable=True).indices
    count = visible.sum(1)
    width = int(count.max())
    valid = torch.arange(width, device=visible.device).unsqueeze(0) < count.unsqueeze(1)
    return order[:, :width], valid


def attention_bias(centres: Tensor, valid: Tensor, radius: float) -> Tensor | None:
    """Additive ``[B, 1, L, L]`` bias blocking padded keys and (``radius > 0``) keys at ``>= radius``."""
    blocked = ~valid.unsqueeze(1).expand(-1, valid.shape[1], -1)
    if radius > 0:
        blocked = blocked | (torch.cdist(centres, centres) >= radius)
    if not blocked.any():
        return None
    return (blocked.to(centres.dtype) * MASK_FILL).unsqueeze(1)


class HierarchicalEncoder(nn.Module):
    """Token embedding / merging, position embeddings and transformer stacks of every scale (official
    ``H_Encoder``); ``norms``: a layer norm on each scale's output (pre-training and SVM) or none (fine-tuning)."""

    def __init__(self, dims: Sequence[int], depths: Sequence[int], num_heads: int, drop_path_rate: float,
                 norms: bool = True):
        super().__init__()
        self.token_embed = nn.ModuleList(PointTokenEmbedding(3 if i == 0 else dims[i - 1], d)
                                         for i, d in enumerate(dims))
        self.encoder_pos_embeds = nn.ModuleList(
            nn.Sequential(nn.Linear(3, d), nn.GELU(), nn.Linear(d, d)) for d in dims)
        self.encoder_blocks = nn.ModuleList(PointBlocks(d, rates, num_heads)
                                            for d, rates in zip(dims, drop_path_rates(drop_path_rate, depths)))
        self.encoder_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims) if norms else None
        init_weights(self)

    def forward(self, hierarchy: Hierarchy, masks: Sequence[Tensor] | None,
                local_radius: Sequence[float]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per scale: ``(tokens [B, L_i, D_i], index [B, L_i], valid [B, L_i])``: the encoded visible tokens packed
        as :func:`pack_visible` orders them (all groups, in order, when ``masks`` is None)."""
        outputs = []
        full = None
        for i, embed in enumerate(self.token_embed):
            if i == 0:
                tokens = embed(hierarchy.neighbourhoods[0])
            else:
                tokens = embed(gather_points(full, hierarchy.index[i]))  # the children's tokens [B, G, K, D]
            centres = hierarchy.centres[i]
            b, g, d = tokens.shape
            if masks is None:
                index = torch.arange(g, device=tokens.device).expand(b, g)
                valid = torch.ones(b, g, dtype=torch.bool, device=tokens.device)
            else:
                index, valid = pack_visible(~masks[i])
            x = gather_points(tokens, index)
            packed_centres = gather_points(centres, index)
            bias = attention_bias(packed_centres, valid, local_radius[i])
            x = self.encoder_blocks[i](x, self.encoder_pos_embeds[i](packed_centres), bias)
            if i + 1 < len(self.token_embed):
                # visible groups carry their encoded token to the next scale's merging, the others their embedding
                keep = torch.where(valid.unsqueeze(-1), x, gather_points(tokens, index))
                full = tokens.scatter(1, index.unsqueeze(-1).expand(-1, -1, d), keep)
            if self.encoder_norms is not None:
                x = self.encoder_norms[i](x)
            outputs.append((x, index, valid))
        return outputs


# --- decoder parts ------------------------------------------------------------------------------------------------

class ConvBNAct(nn.Module):
    """1x1 conv, BN, GELU over ``[B, C, N]`` (official ``ConvBNReLU1D``, whose activation is a GELU)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1), nn.BatchNorm1d(out_channels), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResidualConv(nn.Module):
    """GELU(conv-BN-GELU-conv-BN(x) + x) over ``[B, C, N]`` (official ``ConvBNReLURes1D``, groups 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net1 = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.BatchNorm1d(channels), nn.GELU())
        self.net2 = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.BatchNorm1d(channels))
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.net2(self.net1(x)) + x)


class PosExtraction(nn.Module):
    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.operation = nn.Sequential(*(ResidualConv(channels) for _ in range(blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.operation(x)


class TokenPropagation(nn.Module):
    """Coarse tokens carried to finer centres (3-NN inverse distance), concatenated after the finer scale's own
    tokens, fused to ``out_dim`` and refined (official ``PointNetFeaturePropagation``)."""

    def __init__(self, in_dim: int, out_dim: int, blocks: int):
        super().__init__()
        self.fuse = ConvBNAct(in_dim, out_dim)
        self.extraction = PosExtraction(out_dim, blocks)

    def forward(self, fine_centres: Tensor, coarse_centres: Tensor, fine_tokens: Tensor,
                coarse_tokens: Tensor) -> Tensor:
        carried = interpolate_features(fine_centres, coarse_centres, coarse_tokens)
        x = torch.cat([fine_tokens, carried], dim=-1).transpose(1, 2)
        return self.extraction(self.fuse(x)).transpose(1, 2)


def _position(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))


def _check_scales(num_groups: Sequence[int], group_sizes: Sequence[int], dims: Sequence[int],
                  depths: Sequence[int], local_radius: Sequence[float], num_heads: int) -> None:
    counts = {len(num_groups), len(group_sizes), len(dims), len(depths), len(local_radius)}
    if len(counts) != 1:
        raise ConfigError("num_groups, group_sizes, encoder_dims, encoder_depths and local_radius need one entry per "
                          f"scale, got lengths {len(num_groups)}, {len(group_sizes)}, {len(dims)}, {len(depths)}, "
                          f"{len(local_radius)}")
    if any(d % num_heads for d in dims):
        raise ConfigError(f"every encoder dim {tuple(dims)} must be divisible by num_heads={num_heads}")
    if any(a <= b for a, b in zip(num_groups, num_groups[1:])):
        raise ConfigError(f"num_groups must shrink from scale to scale, got {tuple(num_groups)}")


# --- Point-M2AE / I2P-MAE pre-training -----------------------------------------------------------------------------

class PointM2AE(nn.Module):
    """Hierarchical point MAE: ``points [B, N, 3]`` -> :class:`~mmseq.models.point_mae.PointMAEOutput`.

    Args:
        num_points: points per cloud of :meth:`dummy_inputs`.
        num_groups / group_sizes: groups and neighbours per scale, finest first.
        encoder_dims / encoder_depths / num_heads: the encoder stacks.
        decoder_dims / decoder_depths / decoder_up_blocks: the decoder, coarsest first (one entry per decoded
            scale; ``decoder_dims[0]`` must equal the coarsest encoder dim); ``decoder_up_blocks``: residual conv
            blocks of each propagation.
        mask_ratio: hidden share of the coarsest groups.
        masking: ``"random"`` (Point-M2AE) or ``"guided"`` (2-D-guided, needs a teacher).
        target_2d: also reconstruct the teacher's 3-view features at the visible tokens (needs a teacher).
        weight_2d: the 2-D term's weight in ``loss`` (1.0: the official ``loss_3d + loss_2d``). The two terms have
            different scales (the MSE of layer-normed teacher features starts near 1, the Chamfer L2 of unit-sphere
            groups near 0.1), so a smaller weight keeps the 2-D term from outweighing the point reconstruction.
        rec_points: points each hidden token predicts (official Point-M2AE: ``group_sizes[0]``; I2P-MAE: the
            children of the reconstructed scale, ``group_sizes[1]``).
        local_radius: per-scale attention radius (0 = global).
        drop_path_rate: stochastic depth.
        teacher: the frozen 2-D model (a :class:`DepthViewTeacher` built from ``teacher_args``) or None.
    """

    reads, writes = "points", "points"

    def __init__(self, num_points: int, num_groups: Sequence[int], group_sizes: Sequence[int],
                 encoder_dims: Sequence[int], encoder_depths: Sequence[int], num_heads: int,
                 decoder_dims: Sequence[int], decoder_depths: Sequence[int], decoder_up_blocks: Sequence[int],
                 mask_ratio: float, masking: str, target_2d: bool, rec_points: int, local_radius: Sequence[float],
                 drop_path_rate: float, teacher: DepthViewTeacher | None, weight_2d: float = 1.0):
        super().__init__()
        _check_scales(num_groups, group_sizes, encoder_dims, encoder_depths, local_radius, num_heads)
        if not weight_2d >= 0.0:
            raise ConfigError(f"weight_2d must be a number >= 0, got {weight_2d!r}")
        if masking not in MASKINGS:
            raise ConfigError(f"masking must be one of {MASKINGS}, got {masking!r}")
        if (masking == "guided" or target_2d) and teacher is None:
            raise ConfigError("2-D-guided masking and 2-D targets need a teacher (teacher_args)")
        if decoder_dims[0] != encoder_dims[-1] or len(decoder_dims) > len(encoder_dims) or \
                len(decoder_depths) != len(decoder_dims) or len(decoder_up_blocks) != len(decoder_dims) - 1:
            raise ConfigError(f"decoder_dims {tuple(decoder_dims)} must start at the coarsest encoder dim "
                              f"{encoder_dims[-1]}, with one depth per decoder scale and one up-block count per "
                              "propagation")
        coarse = num_groups[-1]
        if not 0.0 < mask_ratio < 1.0 or not 0 < int(mask_ratio * coarse) < coarse:
            raise ConfigError(f"mask_ratio must hide at least one of {coarse} coarse groups and keep one, "
                              f"got {mask_ratio}")
        self.num_points, self.num_groups, self.group_sizes = num_points, tuple(num_groups), tuple(group_sizes)
        self.mask_ratio, self.masking, self.target_2d, self.weight_2d = mask_ratio, masking, target_2d, weight_2d
        self.local_radius = tuple(local_radius)
        self.h_encoder = HierarchicalEncoder(encoder_dims, encoder_depths, num_heads, drop_path_rate)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dims[0]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.h_decoder = nn.ModuleList(PointBlocks(d, rates, num_heads)
                                       for d, rates in zip(decoder_dims, drop_path_rates(drop_path_rate,
                                                                                         decoder_depths)))
        init_weights(self.h_decoder, decoder=True)
        self.decoder_pos_embeds = nn.ModuleList(_position(d) for d in decoder_dims)
        self.token_prop = nn.ModuleList(TokenPropagation(decoder_dims[i] + decoder_dims[i - 1], decoder_dims[i],
                                                         decoder_up_blocks[i - 1])
                                        for i in range(1, len(decoder_dims)))
        self.decoder_norm = nn.LayerNorm(decoder_dims[-1])
        self.rec_head_3d = nn.Conv1d(decoder_dims[-1], 3 * rec_points, 1)
        self.rec_scale = len(encoder_dims) - len(decoder_dims)  # the scale whose hidden groups are reconstructed
        self.teacher = teacher
        # the finer scales' output norms below the reconstructed scale feed nothing (kept for the official layout)
        self.mmseq_unused_parameters = {f"h_encoder.encoder_norms.{i}.*": "no decoder scale reads it"
                                        for i in range(self.rec_scale)}
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        if target_2d:
            children = group_sizes[self.rec_scale]
            self.rec_head_2d = nn.Conv1d(decoder_dims[-1], 3 * teacher.feature_dim * children, 1)

    def train(self, mode: bool = True) -> PointM2AE:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen, BN / dropout included
        return self

    def hierarchy(self, points: Tensor) -> Hierarchy:
        check_points(points, max(self.num_groups[0], max(self.group_sizes)))
        return build_hierarchy(points, self.num_groups, self.group_sizes)

    @torch.no_grad()
    def teacher_views(self, points: Tensor):
        """The teacher on the three views of ``points``: features ``[3B, D, g, g]``, saliency ``[3B, 1, g, g]``
        and the views' geometry."""
        images, geometry = self.teacher.project(points)
        features, saliency = self.teacher.features_and_saliency(images)
        return features.float(), saliency.float(), geometry

    @staticmethod
    def read_views(points: Tensor, maps: Tensor, geometry) -> Tensor:
        """``maps [3B, C, g, g]`` read at ``points [B, M, 3]`` in each view -> ``[B, M, 3, C]``."""
        b = points.shape[0]
        values = back_project(view_points(points), maps, geometry)  # [3B, M, C]
        return values.reshape(3, b, *values.shape[1:]).permute(1, 2, 0, 3)

    def saliency(self, hierarchy: Hierarchy, saliency_maps: Tensor, geometry) -> Tensor:
        """Saliency of the coarsest centres ``[B, G]``, averaged over the three views."""
        return self.read_views(hierarchy.centres[-1], saliency_maps, geometry)[..., 0].mean(-1)

    def draw_mask(self, hierarchy: Hierarchy, saliency: Tensor | None,
                  generator: torch.Generator | None = None) -> list[Tensor]:
        coarse = hierarchy.centres[-1]
        if self.masking == "guided":
            top = guided_mask(saliency, self.mask_ratio, generator)
        else:
            top = random_mask(coarse.shape[0], coarse.shape[1], self.mask_ratio, coarse.device, generator)
        return propagate_masks(top, hierarchy.index, self.num_groups)

    def forward(self, points: Tensor, generator: torch.Generator | None = None) -> PointMAEOutput:
        h = self.hierarchy(points)
        views = self.teacher_views(points) if (self.masking == "guided" or self.target_2d) else None
        saliency = self.saliency(h, views[1], views[2]) if self.masking == "guided" else None
        masks = self.draw_mask(h, saliency, generator)
        encoded = self.h_encoder(h, masks, self.local_radius)
        b = points.shape[0]

        # decoder, coarsest scale first
        scales = list(range(len(self.num_groups) - 1, self.rec_scale - 1, -1))
        previous_centres = None
        for j, s in enumerate(scales):
            tokens, index, valid = encoded[s]
            centres = h.centres[s]
            if j == 0:  # every row keeps the same number of coarse groups: no padding here
                hidden = masks[s]
                n_hidden = int(hidden[0].sum())
                hidden_centres = centres[hidden].reshape(b, n_hidden, 3)
                order_centres = torch.cat([gather_points(centres, index), hidden_centres], dim=1)
                x = torch.cat([tokens, self.mask_token.expand(b, n_hidden, -1)], dim=1)
                pos = self.decoder_pos_embeds[0](order_centres)
                previous_centres = order_centres
            else:
                own = tokens.new_zeros(b, centres.shape[1], tokens.shape[-1])
                own = own.scatter(1, index.unsqueeze(-1).expand_as(tokens), tokens * valid.unsqueeze(-1))
                x = self.token_prop[j - 1](centres, previous_centres, own, x)
                pos = self.decoder_pos_embeds[j](centres)
                previous_centres = centres
            x = self.h_decoder[j](x, pos)
        x = self.decoder_norm(x)  # [B, G_rec, D] in group order

        hidden = masks[self.rec_scale]
        rows = x[hidden]  # [L, D]
        prediction = self.rec_head_3d(rows.unsqueeze(-1)).reshape(rows.shape[0], -1, 3)
        target = h.neighbourhoods[self.rec_scale][hidden]
        loss_3d = chamfer_distance_l2(prediction, target)
        loss, loss_2d = loss_3d, None
        if self.target_2d:
            features, _, geometry = views
            children = h.neighbourhoods[self.rec_scale] + h.centres[self.rec_scale].unsqueeze(2)
            bg, g, k, _ = children.shape
            wanted = self.read_views(children.reshape(b, g * k, 3), features, geometry)  # [B, G*K, 3, C]
            wanted = wanted.reshape(b, g, k, -1)[~hidden]  # [L', K, 3C], views concatenated per child
            seen = x[~hidden]
            predicted = self.rec_head_2d(seen.unsqueeze(-1)).reshape(seen.shape[0], k, -1)
            loss_2d = F.mse_loss(predicted, wanted)
            loss = loss_3d + self.weight_2d * loss_2d
        return PointMAEOutput(loss, prediction, target, tuple(masks), loss_3d=loss_3d, loss_2d=loss_2d)

    @torch.no_grad()
    def features(self, points: Tensor, pooling: str = "sum") -> Tensor:
        """Pooled coarsest tokens of the whole cloud (no masking) for linear-SVM probing: ``[B, D]`` (``sum`` =
        mean + max, Point-M2AE's; ``max`` is I2P-MAE's; ``concat``: ``[B, 2D]``)."""
        tokens = self.h_encoder(self.hierarchy(points), None, self.local_radius)[-1][0]
        return pool_tokens(tokens, pooling)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        return dummy_points(batch_size, self.num_points)


class PointM2AEClassifier(nn.Module):
    """Fine-tuning classifier of Point-M2AE / I2P-MAE (official ``Point_M2AE_ModelNet40`` / ``_ScanObjectNN``): the
    hierarchical encoder on the whole cloud with local attention, a layer norm, mean + max pooling and the
    classification head. ``points [B, N, 3]`` -> logits ``[B, C]``."""

    reads, writes = "points", "classes"

    def __init__(self, num_points: int, num_groups: Sequence[int], group_sizes: Sequence[int],
                 encoder_dims: Sequence[int], encoder_depths: Sequence[int], num_heads: int, num_classes: int,
                 local_radius: Sequence[float], drop_path_rate: float):
        super().__init__()
        _check_scales(num_groups, group_sizes, encoder_dims, encoder_depths, local_radius, num_heads)
        self.num_points, self.num_groups, self.group_sizes = num_points, tuple(num_groups), tuple(group_sizes)
        self.local_radius = tuple(local_radius)
        self.h_encoder = HierarchicalEncoder(encoder_dims, encoder_depths, num_heads, drop_path_rate, norms=False)
        self.norm = nn.LayerNorm(encoder_dims[-1])
        self.cls_head_finetune = classification_head(encoder_dims[-1], num_classes)

    def forward(self, points: Tensor) -> Tensor:
        check_points(points, max(self.num_groups[0], max(self.group_sizes)))
        h = build_hierarchy(points, self.num_groups, self.group_sizes)
        tokens = self.norm(self.h_encoder(h, None, self.local_radius)[-1][0])
        return self.cls_head_finetune(pool_tokens(tokens, "sum"))

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        return dummy_points(batch_size, self.num_points)


# --- builders and variants ----------------------------------------------------------------------------------------

def depth_view_teacher(image_size: int = 224, patch_size: int = 16, dim: int = 384, depth: int = 6,
                       num_heads: int = 6, num_classes: int = 40, splat: int = 5) -> DepthViewTeacher:
    return DepthViewTeacher(image_size, patch_size, dim, depth, num_heads, num_classes, splat)


def point_m2ae_model(num_points: int = 2048, num_groups: Sequence[int] = (512, 256, 64),
                     group_sizes: Sequence[int] = (16, 8, 8), encoder_dims: Sequence[int] = (96, 192, 384),
                     encoder_depths: Sequence[int] = (5, 5, 5), num_heads: int = 6,
                     decoder_dims: Sequence[int] = (384, 192), decoder_depths: Sequence[int] = (1, 1),
                     decoder_up_blocks: Sequence[int] = (1,), mask_ratio: float = 0.8, masking: str = "random",
                     target_2d: bool = False, rec_points: int = 16,
                     local_radius: Sequence[float] = (0.0, 0.0, 0.0), drop_path_rate: float = 0.1,
                     teacher_args: dict | None = None, weight_2d: float = 1.0) -> PointM2AE:
    """``teacher_args``: :func:`depth_view_teacher` arguments of the frozen 2-D model (None: no teacher); its
    weights come from a trained teacher checkpoint (``init_from`` with ``prefix_map: {"": "teacher."}``)."""
    if teacher_args is not None and not isinstance(teacher_args, dict):
        raise InputError(f"teacher_args must be a mapping of depth_view_teacher arguments, got {teacher_args!r}")
    teacher = depth_view_teacher(**teacher_args) if teacher_args is not None else None
    return PointM2AE(num_points, num_groups, group_sizes, encoder_dims, encoder_depths, num_heads, decoder_dims,
                     decoder_depths, decoder_up_blocks, mask_ratio, masking, target_2d, rec_points, local_radius,
                     drop_path_rate, teacher, weight_2d)


def point_m2ae_classifier(num_points: int = 2048, num_groups: Sequence[int] = (512, 256, 64),
                          group_sizes: Sequence[int] = (16, 8, 8), encoder_dims: Sequence[int] = (96, 192, 384),
                          encoder_depths: Sequence[int] = (5, 5, 5), num_heads: int = 6, num_classes: int = 40,
                          local_radius: Sequence[float] = (0.32, 0.64, 1.28),
                          drop_path_rate: float = 0.1) -> PointM2AEClassifier:
    return PointM2AEClassifier(num_points, num_groups, group_sizes, encoder_dims, encoder_depths, num_heads,
                               num_classes, local_radius, drop_path_rate)


TEACHER_TINY = dict(image_size=64, patch_size=8, dim=64, depth=2, num_heads=4, num_classes=12, splat=3)
"""The embedded teacher of the ``*_tiny`` variants: 64x64 views, 8x8 patches, the 12 synthetic classes."""
TINY = dict(num_points=512, num_groups=(64, 32, 16), group_sizes=(16, 8, 8), encoder_dims=(32, 64, 128),
            encoder_depths=(1, 1, 1), num_heads=4, drop_path_rate=0.0)
"""The reduced size of the ``*_tiny`` hierarchical variants (same three-scale structure) for CPU recipes."""
TINY_DECODER = dict(decoder_dims=(128, 64), decoder_depths=(1, 1))
I2P_PAPER = dict(masking="guided", target_2d=True, rec_points=8, teacher_args=dict())

register_variant(depth_view_teacher, "depth_view_teacher", "The embedded 2-D teacher: a ViT (384 wide, 6 blocks) "
                 "on 224x224 projected depth views.")
register_variant(depth_view_teacher, "depth_view_teacher_tiny", "The embedded 2-D teacher reduced for CPU runs.",
                 **TEACHER_TINY)
register_variant(point_m2ae_model, "point_m2ae", "Point-M2AE pre-training at the paper's size (2048 points, groups "
                 "512/256/64 of 16/8/8, dims 96/192/384, depths 5/5/5, decoder 384/192, 80% random masking).")
register_variant(point_m2ae_model, "point_m2ae_tiny", "Point-M2AE pre-training reduced for CPU runs.",
                 rec_points=16, **TINY, **TINY_DECODER)
register_variant(point_m2ae_model, "i2p_mae", "I2P-MAE pre-training at the paper's size: Point-M2AE with 2-D-guided "
                 "masking and 2-D feature targets from the embedded teacher (the paper's CLIP ViT-B/16 is not "
                 "embedded), 8 points per hidden 256-scale group.", **I2P_PAPER)
register_variant(point_m2ae_model, "i2p_mae_tiny", "I2P-MAE pre-training reduced for CPU runs (tiny teacher).",
                 masking="guided", target_2d=True, rec_points=8, teacher_args=TEACHER_TINY, **TINY, **TINY_DECODER)
register_variant(point_m2ae_classifier, "point_m2ae_cls", "Point-M2AE / I2P-MAE fine-tuning classifier "
                 "(ModelNet40: 40 classes; ScanObjectNN: num_classes=15).")
register_variant(point_m2ae_classifier, "point_m2ae_cls_tiny", "The hierarchical classifier at ``point_m2ae_tiny``'s "
                 "size.", num_classes=10, local_radius=(0.32, 0.64, 1.28), **TINY)
