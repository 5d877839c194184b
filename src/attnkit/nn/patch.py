"""Images as sequences of patches (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words")."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbedding(nn.Module):
    """Dosovitskiy et al. 2021 eq. 1: cut an image into ``patch_size × patch_size`` patches and
    project each flattened patch linearly to ``d_model``. A convolution with kernel and stride
    ``patch_size`` is that projection, applied to every patch at once.

    Shapes: ``(B, channels, H, W)`` -> ``(B, P, C)`` with ``P = (H / patch_size) · (W / patch_size)``
    patches in row-major order.
    """

    def __init__(self, channels: int, d_model: int, patch_size: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixel_values)  # (B, C, H / patch_size, W / patch_size)
        return x.flatten(2).transpose(1, 2)  # (B, P, C)
