"""Pooling a sequence of hidden states into one vector per sequence."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit.errors import InputError


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


POOLING = ("mean", "cls", "max", "mean_sqrt_len", "lasttoken")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """``(B, C)`` from the last hidden states ``(B, T, C)`` over the real tokens of ``mask``
    ``(B, T)``, as sentence-transformers' ``Pooling``: their ``mean``, ``mean_sqrt_len`` (the sum
    over √length), ``max`` (per dimension), the first token's state (``cls``), or the last real
    token's (``lasttoken``)."""
    real = mask.bool()
    if pooling == "mean":
        return mean_pool(hidden, mask)
    if pooling == "mean_sqrt_len":
        count = real.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)
        return (hidden * real.unsqueeze(-1)).sum(dim=1) / count.sqrt()
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "max":
        return hidden.masked_fill(~real.unsqueeze(-1), -1e9).max(dim=1).values
    if pooling == "lasttoken":
        last = real.shape[1] - 1 - real.flip(1).int().argmax(dim=1)  # the last real position of each row
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise InputError(f"pooling must be one of {POOLING}, got {pooling!r}")
