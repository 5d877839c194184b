"""Position-wise feed-forward networks (Vaswani et al. 2017 §3.3), gated variants (Shazeer
2020, "GLU Variants Improve Transformer"), and a sparse mixture of them (Shazeer et al. 2017;
Mixtral, Jiang et al. 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import ConfigError
from attnkit.nn.linear import Linear


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


SWIGLU_ALPHA, SWIGLU_LIMIT = 1.702, 7.0  # GPT-OSS's clamped SwiGLU


def _swiglu_clamped(gate: torch.Tensor) -> torch.Tensor:
    """GPT-OSS's gate: ``g · σ(1.702 g)`` with ``g`` clamped at 7 from above."""
    gate = gate.clamp(max=SWIGLU_LIMIT)
    return gate * torch.sigmoid(gate * SWIGLU_ALPHA)


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's sigmoid approximation of GELU: ``x · σ(1.702 x)`` (Hendrycks & Gimpel 2016 §2)."""
    return x * torch.sigmoid(1.702 * x)


def _relu2(x: torch.Tensor) -> torch.Tensor:
    """Squared ReLU (So et al. 2021, Primer): Nemotron's and Arcee's feed-forward."""
    return F.relu(x).square()


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": _gelu_tanh, "silu": F.silu, "relu2": _relu2,
               "quick_gelu": _quick_gelu}
GATED = {"geglu": F.gelu, "geglu_tanh": _gelu_tanh, "swiglu": F.silu, "reglu": F.relu,
         "swiglu_clamped": _swiglu_clamped}
FEEDFORWARD_ACTIVATIONS = tuple(ACTIVATIONS) + tuple(GATED)

# The activations as oneDNN post-ops (name, algorithm): for fp32 CPU inputs outside autograd
# the activation runs on each output tile of fc_in while it is in cache, instead of as a second
# pass over the (rows, d_ff) hidden states (about 30% of fc_in + GELU for BERT-sized layers).
_ONEDNN_POSTOPS = {"relu": ("relu", ""), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "silu": ("swish", "")}
_ONEDNN_POSTOPS.update(reglu=_ONEDNN_POSTOPS["relu"], geglu=_ONEDNN_POSTOPS["gelu"],
                       geglu_tanh=_ONEDNN_POSTOPS["gelu_tanh"], swiglu=_ONEDNN_POSTOPS["silu"])


class FeedForward(nn.Module):
    """FFN(x) = fc_out(act(fc_in(x))), or fc_out(act(fc_gate(x)) * fc_in(x)) for gated variants.

    ``activation`` is one of ``relu``, ``relu2`` (squared), ``gelu`` (exact), ``gelu_tanh``,
    ``quick_gelu`` (CLIP's ``x · σ(1.702 x)``), ``silu``, or the gated
    ``geglu``, ``geglu_tanh``, ``swiglu``, ``reglu`` and ``swiglu_clamped`` (GPT-OSS's:
    ``fc_out(g · σ(1.702 g) · (u + 1))`` with the gate ``g`` clamped at 7 from above and the input
    ``u`` to ±7).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in FEEDFORWARD_ACTIVATIONS:
            raise ConfigError(f"activation must be one of {FEEDFORWARD_ACTIVATIONS}, got {activation!r}")
        self.gated = activation in GATED
        self.act = GATED[activation] if self.gated else ACTIVATIONS[activation]
        self.postop = _ONEDNN_POSTOPS.get(activation)
        self.clamped = activation == "swiglu_clamped"
        self.fc_in = Linear(d_model, d_ff, bias=bias)
        self.fc_gate = Linear(d_model, d_ff, bias=bias) if self.gated else None
        self.fc_out = Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _linear_act(self, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        """``act(linear(x))``, fused into one oneDNN call where :func:`~attnkit.nn.linear.linear` can."""
        if self.postop is None:  # no oneDNN post-op for this activation (squared ReLU, quick GELU)
            return self.act(layer(x))
        y = layer.fused(x, self.postop)
        return self.act(layer(x)) if y is None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clamped:
            h = self.act(self.fc_gate(x)) * (self.fc_in(x).clamp(-SWIGLU_LIMIT, SWIGLU_LIMIT) + 1)
        elif self.gated and not torch.is_grad_enabled():  # inference: no second (rows, d_ff) tensor
            h = self._linear_act(x, self.fc_gate).mul_(self.fc_in(x))
        elif self.gated:
            h = self._linear_act(x, self.fc_gate) * self.fc_in(x)
        else:
            h = self._linear_act(x, self.fc_in)
        return self.fc_out(self.dropout(h) if self.training else h)


class MoEFeedForward(nn.Module):
    """A sparse mixture of experts (Shazeer et al. 2017; Mixtral, Jiang et al. 2024 §2.1): a
    router scores ``n_experts`` :class:`FeedForward` s for each token, the ``top_k`` best run on
    it, and their outputs are summed, weighted by the router's softmax (in fp32), renormalised
    over the chosen ones unless ``normalize=False`` (Qwen-MoE's ``norm_topk_prob``). Each expert
    runs once per call, on the rows routed to it. ``shared_d_ff`` adds an expert of that size that
    every token runs, its output scaled by a sigmoid gate (Qwen2-MoE's ``shared_expert``), or
    added as it is with ``shared_gated=False`` (DeepSeek's ``shared_experts``).

    DeepSeek-V3's router (DeepSeek-AI 2024, §2.1.2): ``scoring="sigmoid"`` scores each expert
    with a sigmoid; a per-expert ``score_bias`` (a buffer, ``e_score_correction_bias``; by default
    with sigmoid scores only, ERNIE 4.5 has one on softmax scores) shifts the scores for the choice
    only; with ``groups`` the experts are split into that many groups, each scored by its two best
    experts (``group_score="top2"``; DeepSeek-V2's ``"max"``: by its best), and the choice is
    limited to the ``groups_per_token`` best groups; the chosen scores (renormalised, or not) are
    multiplied by ``scale``.

    ``router_bias``: a bias on the router's logits (GPT-OSS).

    Llama 4's router: ``scoring="sigmoid"`` with ``score_bias=False`` (no bias buffer),
    ``normalize=False``, and ``input_weights=True``: each chosen expert runs on the token times its
    weight, instead of its output being weighted.

    ``jitter`` (Mixtral's ``router_jitter_noise``): in training, the block's input is multiplied
    by noise drawn uniformly from ``[1 - jitter, 1 + jitter]``, for the router and the experts.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int = 2, activation: str = "swiglu",
                 bias: bool = False, dropout: float = 0.0, normalize: bool = True, shared_d_ff: int | None = None,
                 scoring: str = "softmax", groups: int | None = None, groups_per_token: int | None = None,
                 scale: float = 1.0, shared_gated: bool = True, jitter: float = 0.0, score_bias: bool | None = None,
                 input_weights: bool = False, router_bias: bool = False, group_score: str = "top2"):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ConfigError(f"top_k must be between 1 and n_experts ({n_experts}), got {top_k}")
        if scoring not in ("softmax", "sigmoid"):
            raise ConfigError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
        if groups is not None and not (n_experts % groups == 0 and n_experts // groups >= 2
                                       and groups_per_token is not None and 1 <= groups_per_token <= groups):
            raise ConfigError(f"groups ({groups}) must split the {n_experts} experts into groups of at least 2, and "
                              f"groups_per_token ({groups_per_token}) must be from 1 to groups")
        self.top_k, self.normalize, self.scoring, self.scale, self.jitter = top_k, normalize, scoring, scale, jitter
        if group_score not in ("top2", "max"):
            raise ConfigError(f"group_score must be 'top2' or 'max', got {group_score!r}")
        self.groups, self.groups_per_token, self.input_weights = groups, groups_per_token, input_weights
        self.group_score = group_score
        self.router = Linear(d_model, n_experts, bias=router_bias)
        score_bias = scoring == "sigmoid" if score_bias is None else score_bias
        self.register_buffer("score_bias", torch.zeros(n_experts) if score_bias else None)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff, activation, bias, dropout) for _ in range(n_experts))
        self.shared_expert = self.shared_gate = None
        if shared_d_ff is not None:
            self.shared_expert = FeedForward(d_model, shared_d_ff, activation, bias, dropout)
            self.shared_gate = Linear(d_model, 1, bias=False) if shared_gated else None

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights, chosen)``, ``(N, top_k)`` each: the experts each token runs on, and the
        weights of their outputs (fp32), from the router's ``(N, E)`` logits."""
        scores = logits.float().softmax(dim=-1) if self.scoring == "softmax" else logits.float().sigmoid()
        choice = scores if self.score_bias is None else scores + self.score_bias.float()
        if self.groups is not None:  # only the best groups' experts compete
            N, E = choice.shape
            grouped = choice.view(N, self.groups, E // self.groups)
            best = grouped.amax(-1) if self.group_score == "max" else grouped.topk(2, dim=-1).values.sum(-1)  # (N, G)
            kept = torch.zeros_like(best, dtype=torch.bool).scatter_(
                1, best.topk(self.groups_per_token, dim=-1).indices, True)
            choice = choice.masked_fill(~kept.repeat_interleave(E // self.groups, dim=1), float("-inf"))
        chosen = choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, chosen)
        if self.normalize:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + (1e-20 if self.scoring == "sigmoid" else 0.0))
        return weights * self.scale if self.scale != 1.0 else weights, chosen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.shape[-1])
        if self.training and self.jitter:  # Mixtral's router jitter: the block's input times U(1 - j, 1 + j)
            h = h * torch.empty_like(h).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        self.router_logits = self.router(h)  # (N, E), kept for router_balance_loss
        weights, chosen = self.route(self.router_logits)
        out = torch.zeros_like(h)
        for e in chosen.unique().tolist():  # the experts some token chose; one host sync per call
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            w = weights[rows, slot, None]
            y = self.experts[e](h[rows] * w.to(h.dtype)) if self.input_weights else self.experts[e](h[rows]) * w
            out.index_add_(0, rows, y.to(out.dtype))
        if self.shared_gate is not None:
            out = out + torch.sigmoid(self.shared_gate(h)) * self.shared_expert(h)
        elif self.shared_expert is not None:
            out = out + self.shared_expert(h)
        return out.view_as(x)


def router_balance_loss(router_logits: list[torch.Tensor], top_k: int,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """The load-balancing loss of mixtures of experts (Fedus et al. 2022, Switch Transformer eq. 4;
    Mixtral's auxiliary loss, as ``transformers``' ``load_balancing_loss_func``): ``E · Σ_e f_e · P_e``
    over every layer's ``(N, E)`` router logits, where ``f_e`` counts the ``top_k`` choices per
    token that picked expert ``e`` and ``P_e`` is its mean router probability, both averaged over
    tokens; ``mask`` (``(N,)``, or any shape with N entries; True = real token) leaves padding out.
    Smallest (``top_k``) when every expert gets the same share."""
    n_experts = router_logits[0].shape[-1]
    device = router_logits[0].device
    weight = None if mask is None else mask.reshape(-1).to(device=device, dtype=torch.float32)
    counts = torch.zeros(n_experts, device=device)
    probs = torch.zeros(n_experts, device=device)
    rows = 0.0
    for logits in router_logits:
        p = logits.float().softmax(dim=-1)
        chosen = p.topk(top_k, dim=-1).indices.reshape(-1)
        picks = torch.ones_like(chosen, dtype=torch.float32) if weight is None else weight.repeat_interleave(top_k)
        counts = counts + torch.zeros_like(counts).scatter_add_(0, chosen, picks)
        probs = probs + (p if weight is None else p * weight[:, None]).sum(dim=0)
        rows = rows + (p.shape[0] if weight is None else weight.sum())
    return n_experts * ((counts / rows) * (probs / rows)).sum()
