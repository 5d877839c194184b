"""Position-wise feed-forward networks (Vaswani et al. 2017 §3.3) and gated variants
(Shazeer 2020, "GLU Variants Improve Transformer")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import ConfigError


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": _gelu_tanh, "silu": F.silu}
GATED = {"geglu": F.gelu, "geglu_tanh": _gelu_tanh, "swiglu": F.silu, "reglu": F.relu}
FEEDFORWARD_ACTIVATIONS = tuple(ACTIVATIONS) + tuple(GATED)


class FeedForward(nn.Module):
    """FFN(x) = fc_out(act(fc_in(x))), or fc_out(act(fc_gate(x)) * fc_in(x)) for gated variants.

    ``activation`` is one of ``relu``, ``gelu`` (exact), ``gelu_tanh``, ``silu``, or the gated
    ``geglu``, ``geglu_tanh``, ``swiglu``, ``reglu``.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in FEEDFORWARD_ACTIVATIONS:
            raise ConfigError(f"activation must be one of {FEEDFORWARD_ACTIVATIONS}, got {activation!r}")
        self.gated = activation in GATED
        self.act = GATED[activation] if self.gated else ACTIVATIONS[activation]
        self.fc_in = nn.Linear(d_model, d_ff, bias=bias)
        self.fc_gate = nn.Linear(d_model, d_ff, bias=bias) if self.gated else None
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc_gate(x)) * self.fc_in(x) if self.gated else self.act(self.fc_in(x))
        return self.fc_out(self.dropout(h))
