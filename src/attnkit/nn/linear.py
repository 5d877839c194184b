"""A linear layer with a faster bf16 kernel choice for decoding on CPU.

During decoding a linear layer sees one row per sequence, so it is bound by streaming its
weights. For bf16 on CPU, ``F.linear(x, W)`` (a gemm with ``x`` as the left operand) streams
the weights 1.5-2.5x slower than ``W @ xᵀ`` (a gemv-shaped gemm with ``W`` on the left) for up
to a few dozen rows. :class:`Linear` takes that route only for bf16 CPU inputs of at most
``MATVEC_ROWS`` rows outside autograd.

For fp32 CPU inputs of at least ``ONEDNN_ROWS`` rows outside autograd (encoders, prefill),
:func:`onednn_linear` calls oneDNN's linear, which adds the bias (and optionally an activation,
see ``FeedForward``) to each output tile while it is in cache; ``F.linear`` first writes the
broadcast bias into the output and then runs the gemm over it. It agrees with ``F.linear`` to
fp32 rounding. Everything else (training, short fp32 inputs) is ``F.linear``, bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MATVEC_ROWS = 32
ONEDNN_ROWS = 128
_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear(x: torch.Tensor, linear: nn.Linear, postop: tuple[str, str] = ("none", "")) -> torch.Tensor | None:
    """``postop(linear(x))`` in one oneDNN call for fp32 CPU inputs of at least ``ONEDNN_ROWS``
    rows when no gradient is needed, else None. ``postop`` is oneDNN's (name, algorithm), e.g.
    ``("gelu", "none")`` for exact GELU. ``(..., in) -> (..., out)``."""
    w = linear.weight
    if not (
        x.dtype == w.dtype == torch.float32 and x.device.type == "cpu" and _HAS_ONEDNN
        and x.numel() >= ONEDNN_ROWS * x.shape[-1]
        and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
    ):
        return None
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), w, linear.bias, postop[0], [], postop[1])
    return y.view(*x.shape[:-1], y.shape[-1])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) whose forward computes ``(W @ xᵀ)ᵀ + b`` for
    bf16 CPU inputs of at most ``MATVEC_ROWS`` rows when no gradient is recorded.
    ``(..., in) -> (..., out)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = onednn_linear(x, self)
        if y is not None:
            return y
        if x.dtype != torch.bfloat16 or x.device.type != "cpu" or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        rows = x.numel() // self.in_features
        if rows > MATVEC_ROWS:
            return F.linear(x, self.weight, self.bias)
        if rows == 1:  # a gemv kernel, faster still
            x1 = x.reshape(self.in_features)
            y = torch.mv(self.weight, x1) if self.bias is None else torch.addmv(self.bias, self.weight, x1)
            return y.view(*x.shape[:-1], self.out_features)
        xt = x.reshape(rows, self.in_features).T
        y = self.weight @ xt if self.bias is None else torch.addmm(self.bias[:, None], self.weight, xt)
        return y.T.contiguous().view(*x.shape[:-1], self.out_features)
