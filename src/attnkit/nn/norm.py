"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import ConfigError

NORMS = ("layernorm", "rmsnorm", "rmsnorm_offset", "rmsnorm_unweighted", "layernorm_offset", "layernorm_unweighted")


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · (offset + weight), computed in float32 (T5's LayerNorm is this
    with ``offset=0``). Gemma stores its weights as an offset from 1 (``offset=1``, weights
    initialised to 0); the product is rounded to x's dtype once, as Gemma's is. ``weight=False``:
    no weight at all (Llama 4's query/key "L2Norm")."""

    def __init__(self, dim: int, eps: float = 1e-6, offset: float = 0.0, weight: bool = True):
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset)) if weight else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is None:
            return y.to(x.dtype)
        w = self.weight.float()
        return (y * (w + self.offset if self.offset else w)).to(x.dtype)


class OffsetLayerNorm(nn.LayerNorm):
    """LayerNorm whose weights are stored as an offset from 1 (initialised to 0): Nemotron's
    ``LayerNorm1P``, ``layer_norm(x) · (1 + weight) + bias``."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(dim, eps=eps, bias=bias)
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight + 1.0, self.bias, self.eps)


def build_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """``"layernorm"``, ``"rmsnorm"``, ``"rmsnorm_offset"`` (Gemma's: weights stored as an offset
    from 1), ``"rmsnorm_unweighted"`` (no weight), ``"layernorm_offset"`` (Nemotron's) or
    ``"layernorm_unweighted"`` (OLMo's: neither weight nor bias) over the last dimension."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "layernorm_unweighted":
        return nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
    if kind == "layernorm_offset":
        return OffsetLayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm_unweighted":
        return RMSNorm(dim, eps=eps, weight=False)
    if kind in ("rmsnorm", "rmsnorm_offset"):
        return RMSNorm(dim, eps=eps, offset=1.0 if kind == "rmsnorm_offset" else 0.0)
    raise ConfigError(f"norm must be one of {NORMS}, got {kind!r}")
