"""Pooling a sequence of hidden states into one vector per sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None, normalize: bool = False) -> torch.Tensor:
    """Average of ``hidden`` ``(B, T, C)`` over the real tokens of ``mask`` ``(B, T)`` (True/1 = real),
    optionally L2-normalised (Reimers & Gurevych 2019, Sentence-BERT §3). Returns ``(B, C)``.

    A row with no real token gives zeros, never NaN.
    """
    if mask is None:
        pooled = hidden.mean(dim=1)
    else:
        w = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        pooled = (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)  # counts are whole: 1e-9 is 0 in fp16
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled
