"""Point-MAE (Pang et al., 2022): masked autoencoding of point-cloud groups, and its fine-tuning classifier.

A cloud is cut into ``num_groups`` groups of ``group_size`` points (FPS centres + kNN, points moved to their
centre); a mini-PointNet embeds every group into one token; a random ``mask_ratio`` of the groups is hidden; a
pre-LN ViT encodes the visible tokens, a lighter decoder of the same blocks sees them with one learned mask token
per hidden group, and a 1x1 convolution predicts each hidden group's points, scored by Chamfer L2.

Blocks are timm's ``Block`` (qkv without bias, MLP ratio 4, GELU, drop path), the layout of the official
``Block``, and the centre position embedding is added to the input of *every* block, as the official
``TransformerEncoder`` does. The blocks, masking, pooling and classification head defined here are shared with the
hierarchical models of :mod:`mmseq.models.i2p_mae`. Official checkpoints load through
:mod:`mmseq.interop.point_mae`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block
from torch import Tensor

from mmseq.errors import ConfigError, InputError
from mmseq.registry import register_variant
from mmseq.nn.points import PointGroups, PointTokenEmbedding, chamfer_distance_l2, group_points

MASK_FILL = -100000.0
"""What the official attention adds to the scores of a blocked key (a float, so a fully blocked padded row stays
finite)."""
POOLINGS = ("max", "mean", "sum", "concat")


# --- shared blocks ------------------------------------------------------------------------------------------------

def position_mlp(hidden: int, dim: int) -> nn.Sequential:
    """Centre coordinates ``[..., 3]`` -> position embeddings ``[..., dim]`` (Linear, GELU, Linear)."""
    return nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, dim))


def drop_path_rates(rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over all blocks, split per stage."""
    rates = torch.linspace(0, rate, sum(depths)).tolist()
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[s : s + d] for s, d in zip(starts, depths)]


class PointBlocks(nn.Module):
    """Pre-LN transformer blocks with the position embedding added before every block.

    Args:
        dim: width.
        drop_path: one stochastic-depth rate per block (their count is the depth).
        num_heads: attention heads.
    """

    def __init__(self, dim: int, drop_path: Sequence[float], num_heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio=4.0, qkv_bias=False, drop_path=rate,
                                          norm_layer=nn.LayerNorm) for rate in drop_path)

    def forward(self, x: Tensor, pos: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x, pos [B, T, dim]``; ``attn_mask`` float ``[B, 1, T, T]`` added to the scores."""
        for block in self.blocks:
            x = block(x + pos, attn_mask=attn_mask)
        return x


def init_weights(module: nn.Module, decoder: bool = False) -> None:
    """The official initialisation: truncated normal (std 0.02) for linear and 1x1 conv weights (Xavier uniform
    for the decoders' linear layers), zero biases, unit layer norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight) if decoder else nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv1d) and not decoder:
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def random_mask(batch: int, groups: int, ratio: float, device: torch.device,
                generator: torch.Generator | None = None) -> Tensor:
    """Bool ``[batch, groups]``, True at ``int(ratio * groups)`` hidden groups drawn uniformly per row."""
    order = torch.rand(batch, groups, device=device, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch, groups, dtype=torch.bool, device=device)
    return mask.scatter_(1, order[:, : int(ratio * groups)], True)


def pool_tokens(tokens: Tensor, pooling: str) -> Tensor:
    """``tokens [B, T, D]`` -> ``[B, D]`` (``max``, ``mean``, ``sum`` = mean + max) or ``[B, 2D]`` (``concat`` =
    [mean, max])."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    top, mean = tokens.amax(dim=1), tokens.mean(dim=1)
    if pooling == "concat":
        return torch.cat([mean, top], dim=-1)
    return {"max": top, "mean": mean, "sum": mean + top}[pooling]


def classification_head(in_dim: int, num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """The official ``cls_head_finetune``: two Linear-BN-ReLU-Dropout layers of 256, then the class layer."""
    return nn.Sequential(nn.Linear(in_dim, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(256, num_classes))


def check_points(points: Tensor, min_points: int) -> None:
    if not isinstance(points, Tensor) or points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] < min_points:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise InputError(f"points must be a tensor [B, N >= {min_points}, 3], got {shape}")


def dummy_points(batch_size: int, num_points: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"points": torch.randn(batch_size, num_points, 3, generator=g)}


def select_rows(values: Tensor, keep: Tensor) -> Tensor:
    """``values [B, G, ...]`` at ``keep [B, G]`` (the same count in every row) -> ``[B, kept, ...]``."""
    return values[keep].reshape(values.shape[0], -1, *values.shape[2:])


# --- Point-MAE ----------------------------------------------------------------------------------------------------

@dataclass
class PointMAEOutput:
    """``loss`` (Chamfer L2 of the hidden groups; for I2P-MAE plus ``loss_2d``); ``reconstruction`` and ``target``
    ``[L, K, 3]``: predicted and true points of the L hidden groups of the batch (relative to their centres);
    ``mask [B, G]``: True at hidden groups (per scale, finest first, in the hierarchical models)."""

    loss: Tensor
    reconstruction: Tensor
    target: Tensor
    mask: Tensor | tuple[Tensor, ...]
    loss_3d: Tensor | None = None
    loss_2d: Tensor | None = None


class PointMAEEncoder(nn.Module):
    """Token embedding, centre position embedding, ViT blocks and final norm of Point-MAE."""

    def __init__(self, dim: int, depth: int, num_heads: int, drop_path_rate: float):
        super().__init__()
        self.token_embed = PointTokenEmbedding(3, dim)
        self.pos_embed = position_mlp(128, dim)
        self.blocks = PointBlocks(dim, drop_path_rates(drop_path_rate, [depth])[0], num_heads)
        self.norm = nn.LayerNorm(dim)

    def encode(self, tokens: Tensor, pos: Tensor) -> Tensor:
        return self.norm(self.blocks(tokens, pos))


class PointMAE(nn.Module):
    """Point-MAE pre-training: ``points [B, N, 3]`` -> :class:`PointMAEOutput`.

    Args:
        num_points: points per cloud of :meth:`dummy_inputs` (any N >= group_size is accepted).
        num_groups / group_size: G centres and K neighbours per group.
        dim / depth / num_heads: the encoder (token width = transformer width, as the official configs).
        decoder_depth / decoder_num_heads: the decoder.
        mask_ratio: hidden share of the groups (``int(mask_ratio * G)`` hidden).
        drop_path_rate: stochastic depth, rising to this rate over each stack.
    """

    reads, writes = "points", "points"

    def __init__(self, num_points: int, num_groups: int, group_size: int, dim: int, depth: int, num_heads: int,
                 decoder_depth: int, decoder_num_heads: int, mask_ratio: float, drop_path_rate: float):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0 or int(mask_ratio * num_groups) == 0:
            raise ConfigError(f"mask_ratio must hide at least one of {num_groups} groups and keep one, "
                              f"got {mask_ratio}")
        self.num_points, self.num_groups, self.group_size = num_points, num_groups, group_size
        self.mask_ratio = mask_ratio
        self.encoder = PointMAEEncoder(dim, depth, num_heads, drop_path_rate)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = position_mlp(128, dim)
        self.decoder = PointBlocks(dim, drop_path_rates(drop_path_rate, [decoder_depth])[0], decoder_num_heads)
        self.decoder_norm = nn.LayerNorm(dim)
        self.rec_head = nn.Conv1d(dim, 3 * group_size, 1)
        init_weights(self.encoder)
        init_weights(self.decoder, decoder=True)
        init_weights(self.decoder_norm, decoder=True)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def group(self, points: Tensor) -> PointGroups:
        check_points(points, max(self.group_size, self.num_groups))
        return group_points(points, self.num_groups, self.group_size)

    def forward(self, points: Tensor, generator: torch.Generator | None = None) -> PointMAEOutput:
        groups = self.group(points)
        b = points.shape[0]
        mask = random_mask(b, self.num_groups, self.mask_ratio, points.device, generator)
        tokens = self.encoder.token_embed(groups.neighbourhoods)
        visible_centres, hidden_centres = select_rows(groups.centres, ~mask), select_rows(groups.centres, mask)
        x = self.encoder.encode(select_rows(tokens, ~mask), self.encoder.pos_embed(visible_centres))
        hidden = hidden_centres.shape[1]
        x = torch.cat([x, self.mask_token.expand(b, hidden, -1)], dim=1)
        pos = self.decoder_pos_embed(torch.cat([visible_centres, hidden_centres], dim=1))
        x = self.decoder_norm(self.decoder(x, pos)[:, -hidden:])  # the mask tokens only
        prediction = self.rec_head(x.transpose(1, 2)).transpose(1, 2).reshape(b * hidden, -1, 3)
        target = select_rows(groups.neighbourhoods, mask).reshape(b * hidden, -1, 3)
        loss = chamfer_distance_l2(prediction, target)
        return PointMAEOutput(loss, prediction, target, mask, loss_3d=loss)

    @torch.no_grad()
    def features(self, points: Tensor, pooling: str = "sum") -> Tensor:
        """Pooled tokens of the whole (unmasked) cloud for linear-SVM probing: ``[B, D]`` (``[B, 2D]`` with
        ``concat``)."""
        groups = self.group(points)
        tokens = self.encoder.token_embed(groups.neighbourhoods)
        return pool_tokens(self.encoder.encode(tokens, self.encoder.pos_embed(groups.centres)), pooling)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        return dummy_points(batch_size, self.num_points)


class PointMAEClassifier(nn.Module):
    """Point-MAE fine-tuning (the official ``PointTransformer``): a class token with its own position, the
    encoder, and the head on [class token, max over group tokens]. ``points [B, N, 3]`` -> logits ``[B, C]``."""

    reads, writes = "points", "classes"

    def __init__(self, num_points: int, num_groups: int, group_size: int, dim: int, depth: int, num_heads: int,
                 num_classes: int, drop_path_rate: float):
        super().__init__()
        self.num_points, self.num_groups, self.group_size = num_points, num_groups, group_size
        self.encoder = PointMAEEncoder(dim, depth, num_heads, drop_path_rate)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.head = classification_head(2 * dim, num_classes)
        init_weights(self.encoder)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)

    def forward(self, points: Tensor) -> Tensor:
        check_points(points, max(self.group_size, self.num_groups))
        groups = group_points(points, self.num_groups, self.group_size)
        b = points.shape[0]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), self.encoder.token_embed(groups.neighbourhoods)], 1)
        pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.encoder.pos_embed(groups.centres)], dim=1)
        x = self.encoder.encode(tokens, pos)
        return self.head(torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1))

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        return dummy_points(batch_size, self.num_points)


def point_mae_model(num_points: int = 1024, num_groups: int = 64, group_size: int = 32, dim: int = 384,
                    depth: int = 12, num_heads: int = 6, decoder_depth: int = 4, decoder_num_heads: int = 6,
                    mask_ratio: float = 0.6, drop_path_rate: float = 0.1) -> PointMAE:
    return PointMAE(num_points, num_groups, group_size, dim, depth, num_heads, decoder_depth, decoder_num_heads,
                    mask_ratio, drop_path_rate)


def point_mae_classifier(num_points: int = 1024, num_groups: int = 64, group_size: int = 32, dim: int = 384,
                         depth: int = 12, num_heads: int = 6, num_classes: int = 40,
                         drop_path_rate: float = 0.1) -> PointMAEClassifier:
    return PointMAEClassifier(num_points, num_groups, group_size, dim, depth, num_heads, num_classes,
                              drop_path_rate)


TINY = dict(num_points=256, num_groups=16, group_size=16, dim=64, depth=2, num_heads=4, drop_path_rate=0.0)
"""The reduced size of the ``*_tiny`` variants (same structure) for CPU recipes and tests."""

register_variant(point_mae_model, "point_mae", "Point-MAE pre-training at the paper's size (1024 points, 64 x 32 "
                 "groups, 12 x 384 encoder, 4-layer decoder, 60% random masking).")
register_variant(point_mae_model, "point_mae_tiny", "Point-MAE pre-training reduced for CPU runs.",
                 decoder_depth=1, decoder_num_heads=4, **TINY)
register_variant(point_mae_classifier, "point_mae_cls", "Point-MAE fine-tuning classifier (ModelNet40: 40 "
                 "classes; ScanObjectNN: num_classes=15).")
register_variant(point_mae_classifier, "point_mae_cls_tiny", "The Point-MAE classifier at ``point_mae_tiny``'s "
                 "size.", num_classes=10, **TINY)
