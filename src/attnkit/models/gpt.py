"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019).

The defaults are the GPT-2 architecture: learned absolute positions, pre-norm layers,
GELU (tanh approximation), and an output projection tied to the token embedding. Rotary and
ALiBi positions, RMSNorm, gated feed-forwards, grouped-query attention, sliding windows (on
every layer or some) and Gemma's soft-capping, sandwich norms and scaled embeddings are config
fields.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.models.base import Model, check_token_ids
from attnkit.models.config import Config
from attnkit.models.outputs import LazyLogitsOutput, ModelOutput
from attnkit.nn import (
    FEEDFORWARD_ACTIVATIONS,
    Decoder,
    DecoderCache,
    LayerConfig,
    Linear,
    RotaryEmbedding,
    alibi_bias,
    as_padding_mask,
    check_rope_scaling,
    expand_padding_mask,
    linear_cross_entropy,
    positions_from_padding,
    router_balance_loss,
)


@dataclass(frozen=True)
class GPTConfig(Config):
    """Sizes and variants of a GPT. Defaults are GPT-2 small (124M parameters)."""

    model_type = "gpt2"
    # With sliding_layers=None: every n-th layer attends globally and the others within the
    # window (Gemma 2: 2, Gemma 3: 6); None = every layer within the window (Mistral).
    sliding_pattern: ClassVar[int | None] = None
    # Fields beyond what GPT-2 and Llama checkpoints share, each None/False when unused: a
    # checkpoint family must not write a config that sets one it cannot represent (variants()).
    variant_fields: ClassVar[tuple[str, ...]] = (
        "qkv_bias", "qk_norm", "sliding_window", "sliding_layers", "rope_local_base", "embed_scale", "attn_scale_dim",
        "attn_softcap", "logit_softcap", "sandwich_norm", "rotary_dim", "parallel_residual", "input_norm",
        "qk_norm_per_head", "n_experts", "normalize_expert_weights", "shared_expert_d_ff", "moe_layers", "dense_d_ff",
        "shared_expert_gated", "router_scoring", "expert_groups", "expert_groups_per_token", "expert_group_score",
        "routed_scaling_factor",
        "kv_lora_rank", "q_lora_rank", "v_head_dim", "rope_interleave", "embedding_multiplier", "residual_multiplier",
        "logits_scaling", "shared_norm", "lm_head_bias", "nope_layers", "attn_out_bias", "router_jitter_noise",
        "attention_chunk_size", "qk_l2_norm", "attn_temperature_floor", "router_score_bias", "expert_input_weights",
        "norm_bias", "position_offset", "embedding_norm", "attn_sinks", "router_bias", "clip_qkv",
        "qk_norm_after_rope")

    vocab_size: int = 50257
    n_positions: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int | None = None
    head_dim: int | None = None  # per attention head; None = d_model // n_heads (Qwen3, Gemma, Mistral-Nemo differ)
    d_ff: int | None = None
    activation: str = "gelu_tanh"
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_offset", "layernorm_offset", "layernorm_unweighted"] = "layernorm"
    norm_eps: float = 1e-5
    positional: Literal["learned", "rotary", "alibi"] = "learned"
    position_offset: int = 0  # learned positions: position p reads row p + offset of n_positions + offset (OPT: 2)
    rope_base: float = 10000.0
    rope_scaling: dict | None = None  # Hugging Face's rope_parameters beyond rope_theta: linear, llama3, longrope, yarn
    rotary_dim: int | None = None  # rotate the first rotary_dim dimensions of each head; None = all (Phi-4-mini)
    bias: bool = True
    qkv_bias: bool | None = None  # biases on the query/key/value projections alone (Qwen2); None = ``bias``
    attn_out_bias: bool | None = None  # a bias on the attention's output projection; None = ``bias`` (GPT-J: none)
    norm_bias: bool | None = None  # biases on the LayerNorms; None = ``bias`` (StableLM: there, and nowhere else)
    qk_norm: bool = False  # a ``norm`` over each head's queries and keys before the rotary embedding (Qwen3)
    qk_norm_after_rope: bool = False  # with qk_norm: after the rotary embedding instead (HunYuan)
    sliding_window: int | None = None  # each position attends itself and the window - 1 before it (Mistral)
    sliding_layers: tuple[int, ...] | None = None  # the layers with the window; None: see window_layers
    rope_local_base: float | None = None  # the RoPE base of the sliding layers; None = rope_base (Gemma 3)
    nope_layers: tuple[int, ...] | None = None  # layers without rotary positions (SmolLM3's NoPE layers)
    attention_chunk_size: int | None = None  # the rotary layers attend within chunks of this many positions (Llama 4)
    qk_l2_norm: bool = False  # a weightless RMS norm of each query/key head, on the rotary layers only (Llama 4)
    attn_temperature_floor: int | None = None  # nope_layers' query at slot p times 1 + scale·log(1 + ⌊(p+1)/floor⌋)
    attn_temperature_scale: float = 0.1  # the scale of that temperature (Llama 4's attn_scale)
    embed_scale: bool = False  # token embeddings times sqrt(d_model) (Gemma)
    embedding_norm: bool = False  # a ``norm`` of the token embeddings (BLOOM's word_embeddings_layernorm)
    embedding_multiplier: float = 1.0  # token embeddings times this (Granite)
    residual_multiplier: float = 1.0  # each sublayer's output times this before the residual add (Granite)
    logits_scaling: float = 1.0  # the LM head's logits divided by this (Granite)
    lm_head_bias: bool = False  # a bias on the LM head (Phi)
    attn_scale_dim: float | None = None  # scores scaled by its -1/2 power, not head_dim's
    attn_softcap: float | None = None  # attention scores soft-capped to c·tanh(s/c) (Gemma 2)
    attn_sinks: bool = False  # a learned sink logit per head: a share of each softmax with no value (GPT-OSS)
    clip_qkv: float | None = None  # queries, keys and values clamped to ±clip_qkv after their projections (OLMo)
    logit_softcap: float | None = None  # output logits soft-capped likewise (Gemma 2)
    sandwich_norm: bool = False  # a norm on each sublayer's output too (Gemma 2/3)
    parallel_residual: bool = False  # x + attn(norm(x)) + ffn(norm'(x)) in each layer (GPT-NeoX / Pythia)
    shared_norm: bool = False  # with parallel_residual: one norm for both, x + attn(norm(x)) + ffn(norm(x)) (Phi)
    input_norm: bool = True  # False (with sandwich_norm): x + norm(f(x)), the sublayers' outputs normed alone (OLMo 2)
    qk_norm_per_head: bool = True  # False: qk_norm over all heads' queries (keys) together (OLMo 2)
    n_experts: int | None = None  # a sparse mixture of feed-forward experts in each layer (Mixtral)
    experts_per_token: int = 2  # the experts each token runs on (with n_experts)
    normalize_expert_weights: bool = True  # False: the chosen experts' softmax weights as they are (Qwen-MoE)
    shared_expert_d_ff: int | None = None  # with n_experts: an expert of this size every token runs, gated (Qwen2-MoE)
    router_aux_loss_coef: float = 0.0  # with n_experts: the loss adds this times router_balance_loss (Mixtral: 0.02)
    moe_layers: tuple[int, ...] | None = None  # with n_experts: the layers with experts; None = all
    dense_d_ff: int | None = None  # with moe_layers: the other layers' feed-forward size; None = d_ff
    shared_expert_gated: bool = True  # False: the shared expert's output is added ungated (DeepSeek)
    router_scoring: Literal["softmax", "sigmoid"] = "softmax"  # sigmoid: a score bias for the choice too (DeepSeek-V3)
    expert_groups: int | None = None  # with n_experts: the choice limited to the best groups (DeepSeek-V3's n_group)
    expert_groups_per_token: int | None = None  # with expert_groups: how many (DeepSeek-V3's topk_group)
    expert_group_score: str | None = None  # with expert_groups: None (its two best experts') or "max" (DeepSeek-V2)
    routed_scaling_factor: float = 1.0  # with n_experts: the routed experts' weights times this (DeepSeek-V3: 2.5)
    router_jitter_noise: float = 0.0  # with n_experts, in training: their input times U(1 - j, 1 + j) (Mixtral)
    router_score_bias: bool | None = None  # a learned bias on the scores for the choice; None: with sigmoid scores
    # (DeepSeek-V3), not softmax ones; False: none (Llama 4); True with softmax scores: ERNIE 4.5's
    expert_input_weights: bool = False  # with n_experts: the router's weights scale each expert's input (Llama 4)
    router_bias: bool = False  # with n_experts: a bias on the router's logits (GPT-OSS)
    kv_lora_rank: int | None = None  # multi-head latent attention, keys/values from latents this wide (DeepSeek)
    q_lora_rank: int | None = None  # with kv_lora_rank: queries through a latent this wide; None = directly
    v_head_dim: int | None = None  # with kv_lora_rank: each head's value size; None = head_dim
    rope_interleave: bool = False  # rotary dimensions as interleaved pairs (GPT-J, Cohere, DeepSeek)
    dropout: float = 0.0
    attn_dropout: float = 0.0  # on the attention weights (GPT-2's attn_pdrop)
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None

    def validate(self) -> None:
        self.require_positive("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "norm_eps")
        self.require(self.position_offset == 0 or (self.position_offset > 0 and self.positional == "learned"),
                     "position_offset", "must be 0, or positive with learned positions")
        if self.head_dim is None:
            self.require(self.d_model % self.n_heads == 0, "d_model", f"must be divisible by n_heads ({self.n_heads})")
        else:
            self.require(self.head_dim > 0, "head_dim", "must be None (d_model // n_heads) or positive")
        if self.n_kv_heads is not None:
            self.require(
                self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads == 0, "n_kv_heads",
                f"must be positive and divide n_heads ({self.n_heads})",
            )
        self.require(self.d_ff is None or self.d_ff > 0, "d_ff", "must be None (4 * d_model) or positive")
        self.require(self.sliding_window is None or self.sliding_window > 0, "sliding_window",
                     "must be None (full attention) or positive")
        if self.sliding_layers is not None:
            self.require(self.sliding_window is not None, "sliding_layers", "needs a sliding_window")
            self.require(all(0 <= i < self.n_layers for i in self.sliding_layers), "sliding_layers",
                         f"must be layer indices in [0, {self.n_layers})")
        if self.nope_layers is not None:
            self.require(self.positional == "rotary" and all(0 <= i < self.n_layers for i in self.nope_layers),
                         "nope_layers", f"must be layer indices in [0, {self.n_layers}), with rotary positions")
        self.require(self.attention_chunk_size is None or (self.attention_chunk_size > 0 and self.sliding_window is None
                                                           and self.positional == "rotary"), "attention_chunk_size",
                     "must be None or positive, with rotary positions and no sliding_window")
        self.require(not self.qk_l2_norm or (self.positional == "rotary" and not self.qk_norm), "qk_l2_norm",
                     "needs rotary positions and no qk_norm")
        self.require(not self.qk_norm_after_rope or (self.qk_norm and self.qk_norm_per_head), "qk_norm_after_rope",
                     "needs qk_norm, per head")
        self.require(self.attn_temperature_floor is None or (self.attn_temperature_floor > 0 and self.nope_layers),
                     "attn_temperature_floor", "must be None, or positive with nope_layers (the layers it tunes)")
        self.require(self.router_score_bias is None or self.n_experts is not None, "router_score_bias",
                     "must be None without n_experts")
        self.require(not self.expert_input_weights or self.n_experts is not None, "expert_input_weights",
                     "needs n_experts")
        self.require(not self.router_bias or self.n_experts is not None, "router_bias", "needs n_experts")
        self.require(not self.attn_sinks or (self.kv_lora_rank is None and self.attn_softcap is None), "attn_sinks",
                     "does not go with latent attention or attn_softcap")
        self.require(self.rope_local_base is None or (self.positional == "rotary" and self.rope_local_base > 0),
                     "rope_local_base", "must be None, or positive with rotary positions")
        self.require(self.residual_multiplier == 1.0 or not self.parallel_residual, "residual_multiplier",
                     "must be 1 with parallel_residual")
        self.require(not self.shared_norm or self.parallel_residual, "shared_norm", "needs parallel_residual")
        self.require(self.input_norm or (self.sandwich_norm and not self.parallel_residual), "input_norm",
                     "False needs sandwich_norm (the sublayers' outputs normed) and no parallel_residual")
        self.require(self.n_experts is None or self.n_experts > 0, "n_experts", "must be None (dense) or positive")
        self.require(self.shared_expert_d_ff is None or (self.n_experts is not None and self.shared_expert_d_ff > 0),
                     "shared_expert_d_ff", "must be None, or positive with n_experts")
        self.require(self.router_aux_loss_coef == 0 or (self.n_experts is not None and self.router_aux_loss_coef > 0),
                     "router_aux_loss_coef", "must be 0, or positive with n_experts")
        self.require(self.n_experts is None or 1 <= self.experts_per_token <= self.n_experts, "experts_per_token",
                     f"must be from 1 to n_experts ({self.n_experts})")
        if self.moe_layers is not None:
            self.require(self.n_experts is not None and all(0 <= i < self.n_layers for i in self.moe_layers),
                         "moe_layers", f"must be layer indices in [0, {self.n_layers}), with n_experts")
        self.require(self.dense_d_ff is None or (self.moe_layers is not None and self.dense_d_ff > 0), "dense_d_ff",
                     "must be None, or positive with moe_layers")
        sparse = self.n_experts is not None
        self.require(self.router_scoring == "softmax" or sparse, "router_scoring", "sigmoid needs n_experts")
        self.require(self.router_aux_loss_coef == 0 or self.router_scoring == "softmax", "router_aux_loss_coef",
                     "the load-balancing loss is for softmax routers: must be 0 with router_scoring='sigmoid'")
        if self.expert_groups is not None:
            groups, per = self.expert_groups, self.expert_groups_per_token
            self.require(sparse and groups > 0 and self.n_experts % groups == 0 and self.n_experts // groups >= 2,
                         "expert_groups", f"must split n_experts ({self.n_experts}) into groups of at least 2")
            self.require(per is not None and 1 <= per <= groups, "expert_groups_per_token",
                         f"must be from 1 to expert_groups ({groups})")
            self.require(self.expert_group_score in (None, "max"), "expert_group_score", "must be None or 'max'")
        else:
            self.require(self.expert_groups_per_token is None, "expert_groups_per_token", "needs expert_groups")
            self.require(self.expert_group_score is None, "expert_group_score", "needs expert_groups")
        self.require(self.routed_scaling_factor == 1.0 or (sparse and self.routed_scaling_factor > 0),
                     "routed_scaling_factor", "must be 1, or positive with n_experts")
        self.require(self.router_jitter_noise == 0.0 or (sparse and 0 < self.router_jitter_noise < 1),
                     "router_jitter_noise", "must be 0, or in (0, 1) with n_experts")
        self.require(self.shared_expert_gated or self.shared_expert_d_ff is not None, "shared_expert_gated",
                     "False needs a shared expert (shared_expert_d_ff)")
        if self.kv_lora_rank is not None:
            self.require(self.kv_lora_rank > 0 and self.positional == "rotary" and self.rotary_dim is not None
                         and self.rotary_dim < self.dim_per_head, "kv_lora_rank",
                         "must be positive, with rotary positions on a rotary_dim below head_dim (the rest of each "
                         "query/key head has none)")
        else:
            self.require(self.q_lora_rank is None and self.v_head_dim is None, "kv_lora_rank",
                         "q_lora_rank and v_head_dim need kv_lora_rank (multi-head latent attention)")
        self.require(not self.rope_interleave or self.positional == "rotary", "rope_interleave",
                     "needs rotary positions")
        for name in ("q_lora_rank", "v_head_dim"):
            self.require(getattr(self, name) is None or getattr(self, name) > 0, name, "must be None or positive")
        self.require(self.clip_qkv is None or self.kv_lora_rank is None, "clip_qkv",
                     "does not go with latent attention")
        for name in ("attn_scale_dim", "attn_softcap", "logit_softcap", "embedding_multiplier", "residual_multiplier",
                     "logits_scaling", "clip_qkv"):
            value = getattr(self, name)
            self.require(value is None or value > 0, name, "must be None or positive")
        self.require(self.activation in FEEDFORWARD_ACTIVATIONS, "activation", f"must be one of {FEEDFORWARD_ACTIVATIONS}")
        self.require_fraction("dropout", "attn_dropout")
        if self.positional == "rotary":
            self.require(self.dim_per_head % 2 == 0, "positional", "rotary needs an even head dim")
        if self.rotary_dim is not None:
            self.require(self.positional == "rotary" and self.rotary_dim % 2 == 0 and 0 < self.rotary_dim
                         <= self.dim_per_head, "rotary_dim",
                         f"must be None or even, positive and at most the head size ({self.dim_per_head}), with rotary "
                         f"positions")
        problem = check_rope_scaling(self.rope_scaling, self.rotary_dim or self.dim_per_head)
        self.require(problem is None, "rope_scaling", str(problem))
        self.require(self.rope_scaling is None or self.positional == "rotary", "rope_scaling", "needs rotary positions")
        self.require_token_ids("bos_token_id", "eos_token_id", "pad_token_id")

    def variants(self) -> set[str]:
        """The ``variant_fields`` this config sets away from ``GPTConfig``'s own defaults (whatever
        its family's defaults are); ``qkv_bias``, ``attn_out_bias`` and ``norm_bias`` count where they
        differ from ``bias``."""
        base = GPTConfig.__dataclass_fields__
        tied = ("qkv_bias", "attn_out_bias", "norm_bias")  # variants where they differ from ``bias``
        used = {f for f in self.variant_fields if f not in tied and getattr(self, f) != base[f].default}
        return used | {f for f in tied if getattr(self, f) not in (None, self.bias)}

    @property
    def window_layers(self) -> tuple[int, ...]:
        """The layers that attend within ``sliding_window``: ``sliding_layers``, else those of the
        family's ``sliding_pattern``, else all; none without a window."""
        if self.sliding_window is None:
            return ()
        if self.sliding_layers is not None:
            return self.sliding_layers
        n, every = self.n_layers, self.sliding_pattern
        return tuple(i for i in range(n) if (i + 1) % every) if every else tuple(range(n))

    @property
    def score_bias(self) -> bool:
        """Whether the router has a score bias: ``router_score_bias``, or by default with sigmoid scores."""
        return self.router_scoring == "sigmoid" if self.router_score_bias is None else self.router_score_bias

    @property
    def local_layers(self) -> tuple[int, ...]:
        """The layers whose attention is local: :attr:`window_layers`, or with
        ``attention_chunk_size`` every layer with rotary positions (Llama 4's chunked layers)."""
        if self.attention_chunk_size is None:
            return self.window_layers
        return tuple(i for i in range(self.n_layers) if i not in (self.nope_layers or ()))

    @property
    def dim_per_head(self) -> int:
        """``head_dim``, or ``d_model // n_heads`` when that is None."""
        return self.head_dim or self.d_model // self.n_heads

    def layer_configs(self) -> dict[int, LayerConfig]:
        """The layers whose config is not :meth:`layer_config`: a mixture of experts' dense layers
        (those not in ``moe_layers``: a plain feed-forward of ``dense_d_ff``), and with
        ``qk_l2_norm`` or ``attn_temperature_floor`` the ``nope_layers`` (no query/key norm; the
        temperature)."""
        base = self.layer_config()
        dense = replace(base, n_experts=None, shared_expert_d_ff=None,
                        d_ff=self.dense_d_ff or self.d_ff or 4 * self.d_model)
        nope = set(self.nope_layers or ()) if self.qk_l2_norm or self.attn_temperature_floor else set()
        temperature = None if self.attn_temperature_floor is None else (float(self.attn_temperature_floor),
                                                                         self.attn_temperature_scale)
        out = {}
        for i in range(self.n_layers):
            cfg = dense if self.moe_layers is not None and i not in self.moe_layers else base
            if i in nope:
                cfg = replace(cfg, qk_norm=False, qk_norm_kind=None, attn_temperature=temperature)
            if cfg is not base:
                out[i] = cfg
        return out

    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            d_model=self.d_model, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, head_dim=self.head_dim,
            qk_norm=self.qk_norm or self.qk_l2_norm, d_ff=self.d_ff or 4 * self.d_model, activation=self.activation,
            norm=self.norm,
            norm_eps=self.norm_eps, pre_norm=True, bias=self.bias, qkv_bias=self.qkv_bias, dropout=self.dropout,
            qk_norm_kind="rmsnorm_unweighted" if self.qk_l2_norm else None,
            attn_out_bias=self.attn_out_bias, norm_bias=self.norm_bias,
            attn_dropout=self.attn_dropout,
            ffn_dropout=0.0,  # GPT-2 drops out the sublayer outputs only, not the feed-forward's hidden units
            attn_scale=None if self.attn_scale_dim is None else self.attn_scale_dim ** -0.5,
            attn_softcap=self.attn_softcap, sandwich_norm=self.sandwich_norm, parallel_residual=self.parallel_residual,
            input_norm=self.input_norm, qk_norm_per_head=self.qk_norm_per_head, n_experts=self.n_experts,
            shared_norm=self.shared_norm,
            experts_per_token=self.experts_per_token, normalize_expert_weights=self.normalize_expert_weights,
            residual_multiplier=self.residual_multiplier,
            shared_expert_d_ff=self.shared_expert_d_ff, shared_expert_gated=self.shared_expert_gated,
            router_scoring=self.router_scoring, expert_groups=self.expert_groups,
            expert_groups_per_token=self.expert_groups_per_token, expert_group_score=self.expert_group_score or "top2",
            routed_scaling_factor=self.routed_scaling_factor,
            router_jitter_noise=self.router_jitter_noise, router_score_bias=self.score_bias,
            expert_input_weights=self.expert_input_weights, router_bias=self.router_bias, attn_sinks=self.attn_sinks,
            clip_qkv=self.clip_qkv, qk_norm_after_rope=self.qk_norm_after_rope,
            kv_lora_rank=self.kv_lora_rank, q_lora_rank=self.q_lora_rank, rope_head_dim=self.rotary_dim,
            v_head_dim=self.v_head_dim or self.dim_per_head, rope_interleave=self.rope_interleave,
        )


class GPT(Model):
    """Decoder-only language model: token (+ position) embedding, a causal decoder stack, and
    a language-model head.

    ``forward(input_ids (B, T), attention_mask (B, S)=None, labels (B, T)=None)`` returns a
    :class:`ModelOutput` with ``logits`` ``(B, T, V)`` and, given labels, ``loss``.
    """

    config_class = GPTConfig

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.wpe = nn.Embedding(c.n_positions + c.position_offset, c.d_model) if c.positional == "learned" else None
        rotary_dim = c.rotary_dim or c.dim_per_head
        self.rotary = RotaryEmbedding(rotary_dim, c.rope_base, c.rope_scaling) if c.positional == "rotary" else None
        self.local_rotary = None  # Gemma 3's sliding layers: their own base, no scaling
        if c.rope_local_base is not None:
            self.local_rotary = RotaryEmbedding(rotary_dim, c.rope_local_base)
        self.embed_norm = c.layer_config().norm_layer() if c.embedding_norm else None
        self.drop = nn.Dropout(c.dropout)
        self.decoder = Decoder(c.layer_config(), c.n_layers, cross=False, final_norm=True,
                               local_layers=c.local_layers, layer_cfgs=c.layer_configs(),
                               nope_layers=c.nope_layers or ())
        self.lm_head = Linear(c.d_model, c.vocab_size, bias=c.lm_head_bias)
        self.apply(self._init_weights)
        # GPT-2 §2.3: scale the residual projections by 1/sqrt(number of residual layers).
        for layer in self.decoder.layers:
            outputs = [m for name, m in layer.named_modules() if name.endswith(("attn.out_proj", "fc_out"))]
            for proj in outputs:  # the attention's and every feed-forward expert's output
                nn.init.normal_(proj.weight, std=c.initializer_range / math.sqrt(2 * c.n_layers))
        if c.tie_word_embeddings:
            self.lm_head.weight = self.wte.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self, batch_size: int, max_len: int) -> DecoderCache:
        """An empty KV cache for ``max_len`` positions (the batch size is taken on first use). The
        layers with a sliding window or chunks (:attr:`GPTConfig.local_layers`) get rolling caches,
        which hold only the positions their queries can still see (see :class:`~attnkit.nn.KVCache`)."""
        c = self.config
        if max_len > c.n_positions and self.wpe is not None:
            raise InputError(f"cannot decode {max_len} positions: the model's context is {c.n_positions}")
        spans = [n for n in (c.sliding_window, c.attention_chunk_size) if n is not None]
        return self.decoder.new_cache(max_len, keep={i: min(spans) - 1 for i in c.local_layers} if spans else None)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        output_attentions: bool = False,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """Args:
            input_ids: ``(B, T)`` token ids.
            attention_mask: ``(B, S)`` bool or 0/1, True/1 = real token, with ``S`` = cached + ``T``
                positions; left padding is supported (positions start at each row's first token).
            labels: ``(B, T)`` targets for next-token loss; -100 is ignored. Shifted inside. The loss
                is :func:`~attnkit.nn.linear_cross_entropy` (no ``(B, T, V)`` logits); ``out.logits`` is
                then computed when first read.
            cache: a :class:`DecoderCache` from :meth:`new_cache` for incremental decoding.
            logits_to_keep: compute logits for the last ``n`` positions only (0 = all).
        """
        check_token_ids(input_ids, "input_ids", self.config.vocab_size)
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        S = past + T
        c = self.config
        if S > c.n_positions and self.wpe is not None:
            raise InputError(f"sequence of {S} tokens is longer than the model's context of {c.n_positions} (n_positions)")

        mask = None
        if attention_mask is not None:
            attention_mask = as_padding_mask(attention_mask, B, S)
            all_positions = positions_from_padding(attention_mask)  # (B, S)
            if not bool(attention_mask.all()):
                mask = expand_padding_mask(attention_mask)  # (B, 1, 1, S)
        else:
            all_positions = torch.arange(S, device=input_ids.device).expand(B, S)
        positions = all_positions[:, past:]
        local_mask, window = mask, None  # the mask and window of the layers in c.local_layers
        if c.sliding_window is not None and S > c.sliding_window:  # shorter: the window changes nothing
            window = (c.sliding_window - 1, 0)  # itself and the window - 1 keys before it, no (T, S) mask
        if c.attention_chunk_size is not None and S > c.attention_chunk_size:  # Llama 4: a query's own chunk
            chunk = all_positions // c.attention_chunk_size  # of positions, counted from each row's first token
            same = (chunk[:, past:, None] == chunk[:, None, :])[:, None]  # (B, 1, T, S)
            local_mask = same if mask is None else mask & same

        x = self.wte(input_ids)
        if c.embed_scale:  # sqrt(d_model) in x's dtype, as Gemma rounds it
            x = x * x.new_tensor(c.d_model ** 0.5)
        if c.embedding_multiplier != 1.0:
            x = x * c.embedding_multiplier
        if self.wpe is not None:
            x = x + self.wpe(positions + c.position_offset if c.position_offset else positions)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.drop(x)
        rotary = self.rotary(positions) if self.rotary is not None else None
        bias = alibi_bias(c.n_heads, T, S, device=x.device).to(x.dtype) if c.positional == "alibi" else None
        local = None
        if self.decoder.local_layers:
            local = (local_mask, self.local_rotary(positions) if self.local_rotary is not None else rotary, window)

        out = self.decoder(x, mask=mask, bias=bias, is_causal=True, cache=cache, rotary=rotary, local=local,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = out.hidden
        # The LM head's input: logits / s = lm_head(h / s), for the logits and the loss alike.
        head = h / c.logits_scaling if c.logits_scaling != 1.0 else h
        if labels is None:
            logits = self._logits(head[:, -logits_to_keep:] if logits_to_keep else head)
            return ModelOutput(logits=logits, last_hidden_state=h, attentions=out.attentions,
                               hidden_states=out.hidden_states)

        if labels.shape != input_ids.shape:
            raise InputError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
        if logits_to_keep:
            raise InputError("labels need the logits of every position; do not pass logits_to_keep")
        # Shift the labels, not the hidden states; the last position gets the ignore index. The
        # loss never materialises the (B, T, V) logits; ``out.logits`` computes them on first use.
        targets = F.pad(labels[:, 1:], (0, 1), value=-100)
        loss = linear_cross_entropy(head.flatten(0, 1), self.lm_head.weight, targets.flatten(), ignore_index=-100,
                                    softcap=c.logit_softcap, bias=self.lm_head.bias)
        if c.router_aux_loss_coef:  # the experts' load balance (Mixtral's auxiliary loss)
            routers = [layer.ffn.router_logits for layer in self.decoder.layers if hasattr(layer.ffn, "router")]
            real = None if attention_mask is None else attention_mask[:, past:]
            loss = loss + c.router_aux_loss_coef * router_balance_loss(routers, c.experts_per_token, real)
        return LazyLogitsOutput(lambda: self._logits(head), weights=lambda: tuple(self.lm_head.parameters()),
                                loss=loss, last_hidden_state=h, attentions=out.attentions,
                                hidden_states=out.hidden_states)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """The LM head, soft-capped when ``logit_softcap`` is set."""
        logits = self.lm_head(h)
        cap = self.config.logit_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def count_targets(self, batch: dict) -> int:
        """The labels that are targets: each position predicts the next one, so the first is none."""
        labels = batch.get("labels")
        return int((labels[:, 1:] != -100).sum()) if torch.is_tensor(labels) else super().count_targets(batch)

    # -- decoding protocol (see attnkit.generation) ------------------------------------------
    def prepare_generation(self, input_ids, attention_mask, expand: int, max_new_tokens: int):
        """Expand the prompt for beams and make an empty cache. Returns ``(ids, mask, cache)``."""
        if expand > 1:
            input_ids = input_ids.repeat_interleave(expand, dim=0)
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(expand, dim=0)
        T, n = input_ids.shape[1], self.config.n_positions
        # The last new token is returned, never fed back: the cache holds one position fewer.
        if T + max_new_tokens - 1 > n and self.wpe is not None:
            raise InputError(f"a {T}-token prompt and max_new_tokens={max_new_tokens} need {T + max_new_tokens - 1} "
                             f"positions, more than the model's context of {n} (n_positions); "
                             + (f"shorten the prompt or ask for at most {n - T + 1} new tokens" if T <= n else
                                f"the prompt alone is longer: keep at most its last {n} tokens"))
        if attention_mask is not None and not bool(attention_mask[:, -1].all()):
            warnings.warn("a prompt is padded on the right: its new tokens follow the padding; pad decoder-only "
                          "prompts on the left (Tokenizer(..., padding_side='left'))", stacklevel=4)
        cache = self.new_cache(input_ids.shape[0], T + max_new_tokens - 1)
        return input_ids, attention_mask, cache

    def generation_step(self, input_ids, attention_mask, cache) -> torch.Tensor:
        """Logits ``(B, V)`` for the next token after feeding ``input_ids`` through the cache."""
        return self(input_ids, attention_mask=attention_mask, cache=cache, logits_to_keep=1).logits[:, -1]

    def generation_refeed_at(self) -> int | None:
        """LongRoPE's original context: past it the long factors rotate every position anew, so
        the decoding loop rebuilds the cache from the whole sequence (as ``transformers``' Phi-3
        does). None for other positions."""
        rotary = self.rotary
        return rotary.scaling["original_max_position_embeddings"] if rotary is not None and rotary.longrope else None

    def generation_logits(self, input_ids, attention_mask, cache) -> torch.Tensor:
        """Logits ``(B, T, V)`` after each of the ``T`` tokens fed through the cache (prompt lookup
        checks several guesses in one pass)."""
        return self(input_ids, attention_mask=attention_mask, cache=cache, logits_to_keep=input_ids.shape[1]).logits
