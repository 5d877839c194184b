"""Audio frames into a shorter sequence of model vectors (Radford et al. 2022, "Robust Speech
Recognition via Large-Scale Weak Supervision", §2.2 and Figure 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvSubsampling(nn.Module):
    """Whisper's stem: two width-3 convolutions over time, each followed by exact GELU; the
    second has stride 2, halving the frame rate (100 log-mel frames/s -> 50 vectors/s).

    Shapes: ``(B, n_mels, F)`` -> ``(B, ceil(F / 2), C)``.
    """

    def __init__(self, n_mels: int, d_model: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(features))  # (B, C, F)
        x = F.gelu(self.conv2(x))  # (B, C, F / 2)
        return x.transpose(1, 2)  # (B, F / 2, C)
