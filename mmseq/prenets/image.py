"""Image pre-net: non-overlapping patches embedded by a strided convolution, plus learned positions."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from mmseq.errors import InputError


class ImagePatchPrenet(nn.Module):
    """``[B, C, H, W]`` images -> ``[B, (H/p)(W/p), D]`` patch tokens (ViT-style, no class token).

    Args:
        image_size: expected square input size (positions are learned for its patch grid).
        patch_size: patch side p; ``downsample_rate`` is p*p pixels per token.
        in_channels: C.
        dim: output width D.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.in_channels = image_size, in_channels
        self.output_dim, self.downsample_rate = dim, patch_size * patch_size
        self.modality = "image"
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        num_patches = (image_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches, dim) * 0.02)

    def forward(self, images: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``images [B, C, H, W]``; ``lengths`` is ignored (every image has all its patches)."""
        if images.dim() != 4 or images.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise InputError(f"images must be [B, {self.in_channels}, {self.image_size}, {self.image_size}], "
                             f"got {list(images.shape)}")
        x = self.proj(images).flatten(2).transpose(1, 2) + self.pos_embed
        return x, torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)

    def dummy_inputs(self, batch_size: int = 2) -> tuple[Tensor, None]:
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch_size, self.in_channels, self.image_size, self.image_size, generator=g), None
