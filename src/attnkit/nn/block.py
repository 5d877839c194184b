"""Encoder and decoder layers (Vaswani et al. 2017 §3.1) and stacks of them.

One ``LayerConfig`` describes a layer; every model builds its stacks from one. A sublayer is
``x + dropout(f(norm(x)))`` when pre-norm and ``norm(x + dropout(f(x)))`` when post-norm (the
paper's form, §5.4 for the dropout). ``sandwich_norm`` adds a norm on the output of each
pre-norm sublayer as well: ``x + dropout(norm'(f(norm(x))))`` (Gemma 2 and 3); without
``input_norm`` only the output is normed, ``x + dropout(norm'(f(x)))`` (OLMo 2).
``parallel_residual`` runs a decoder layer's self-attention and feed-forward side by side on
the same input, ``x + attn(norm(x)) + ffn(norm'(x))`` (GPT-J, GPT-NeoX / Pythia).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from attnkit.errors import InputError
from attnkit.nn.attention import MultiHeadAttention, MultiHeadLatentAttention
from attnkit.nn.cache import DecoderCache, KVCache
from attnkit.nn.feedforward import FeedForward, MoEFeedForward
from attnkit.nn.norm import build_norm


@dataclass(frozen=True)
class LayerConfig:
    """Sizes and variants of one encoder or decoder layer."""

    d_model: int
    n_heads: int
    d_ff: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    pre_norm: bool = True
    bias: bool = True
    qkv_bias: bool | None = None  # biases on the query/key/value projections; None = ``bias``
    attn_out_bias: bool | None = None  # a bias on the attention's output projection; None = ``bias``
    norm_bias: bool | None = None  # biases on the LayerNorms; None = ``bias`` (StableLM: LayerNorm biases alone)
    key_bias: bool = True  # False: none on the key projection alone (Whisper; needs fused_qkv=False)
    dropout: float = 0.0
    attn_dropout: float = 0.0
    ffn_dropout: float | None = None  # inside the feed-forward, after the activation; None = ``dropout``
    fused_qkv: bool = True
    attn_scale: float | None = None
    qk_norm: bool = False  # a ``norm`` over each head's queries and keys (Qwen3)
    qk_norm_kind: str | None = None  # the kind of that norm; None = ``norm`` (Llama 4: "rmsnorm_unweighted")
    attn_temperature: tuple[float, float] | None = None  # (floor, strength): Llama 4's query temperature
    attn_sinks: bool = False  # a learned attention-sink logit per head (GPT-OSS)
    clip_qkv: float | None = None  # queries, keys and values clamped to ±clip_qkv (OLMo)
    qk_norm_after_rope: bool = False  # the per-head query/key norms after the rotary embedding (HunYuan)
    attn_softcap: float | None = None  # scores soft-capped to c·tanh(s/c) (Gemma 2)
    sandwich_norm: bool = False  # pre-norm sublayers also norm their output (Gemma 2 and 3)
    parallel_residual: bool = False  # decoder layers: x + attn(norm(x)) + ffn(norm'(x)) (GPT-J, GPT-NeoX)
    shared_norm: bool = False  # with parallel_residual: one norm for both sublayers (GPT-J, Phi)
    residual_multiplier: float = 1.0  # each sublayer's output scaled before the residual add (Granite)
    input_norm: bool = True  # False: pre-norm sublayers read x itself; with sandwich_norm, x + norm(f(x)) (OLMo 2)
    qk_norm_per_head: bool = True  # False: qk_norm over all heads' queries (keys) at once (OLMo 2)
    n_experts: int | None = None  # a sparse mixture of this many feed-forward experts (Mixtral)
    experts_per_token: int = 2  # the experts each token runs on
    normalize_expert_weights: bool = True  # the chosen experts' router weights renormalised to sum to 1
    shared_expert_d_ff: int | None = None  # an expert every token runs, gated (Qwen2-MoE)
    shared_expert_gated: bool = True  # False: the shared expert's output added as it is (DeepSeek)
    router_scoring: str = "softmax"  # or "sigmoid", with a score bias for the choice (DeepSeek-V3)
    expert_groups: int | None = None  # the choice limited to the best expert_groups_per_token groups
    expert_groups_per_token: int | None = None
    expert_group_score: str = "top2"  # a group's score: its two best experts' ("max": its best, DeepSeek-V2)
    routed_scaling_factor: float = 1.0  # the routed experts' weights multiplied by it (DeepSeek-V3)
    router_jitter_noise: float = 0.0  # training: the mixture's input times U(1 - j, 1 + j) (Mixtral)
    router_score_bias: bool = False  # a learned bias on the router's scores for the choice (DeepSeek-V3, ERNIE 4.5)
    expert_input_weights: bool = False  # the router's weights scale each chosen expert's input (Llama 4)
    router_bias: bool = False  # a bias on the router's logits (GPT-OSS)
    kv_lora_rank: int | None = None  # multi-head latent attention with latents this wide (DeepSeek)
    q_lora_rank: int | None = None  # with kv_lora_rank: queries through a latent this wide
    rope_head_dim: int | None = None  # with kv_lora_rank: the rotary part of each query/key head
    v_head_dim: int | None = None  # with kv_lora_rank: each head's value size
    rope_interleave: bool = False  # rotary dimensions as interleaved pairs (GPT-J, Cohere, DeepSeek)

    def attention(self, cross: bool = False) -> MultiHeadAttention | MultiHeadLatentAttention:
        if self.kv_lora_rank is not None:
            if cross:
                raise InputError("multi-head latent attention is self-attention only")
            head = self.head_dim or self.d_model // self.n_heads
            return MultiHeadLatentAttention(
                self.d_model, self.n_heads, self.kv_lora_rank, head - self.rope_head_dim, self.rope_head_dim,
                self.v_head_dim, self.q_lora_rank, bias=self.bias, dropout=self.attn_dropout, scale=self.attn_scale,
                norm_eps=self.norm_eps, rope_interleave=self.rope_interleave)
        return MultiHeadAttention(
            self.d_model, self.n_heads, self.n_kv_heads, self.head_dim, bias=self.bias,
            fused_qkv=self.fused_qkv, cross=cross, dropout=self.attn_dropout, scale=self.attn_scale,
            qkv_bias=self.qkv_bias, key_bias=self.key_bias,
            qk_norm=(self.qk_norm_kind or self.norm) if self.qk_norm else None,
            norm_eps=self.norm_eps, softcap=self.attn_softcap, qk_norm_per_head=self.qk_norm_per_head,
            rope_interleave=self.rope_interleave, out_bias=self.attn_out_bias, temperature=self.attn_temperature,
            sinks=self.attn_sinks, clip_qkv=self.clip_qkv, qk_norm_after_rope=self.qk_norm_after_rope,
        )

    def feedforward(self) -> FeedForward | MoEFeedForward:
        ffn_dropout = self.dropout if self.ffn_dropout is None else self.ffn_dropout
        if self.n_experts is not None:
            return MoEFeedForward(self.d_model, self.d_ff, self.n_experts, self.experts_per_token, self.activation,
                                  self.bias, ffn_dropout, self.normalize_expert_weights, self.shared_expert_d_ff,
                                  self.router_scoring, self.expert_groups, self.expert_groups_per_token,
                                  self.routed_scaling_factor, self.shared_expert_gated, self.router_jitter_noise,
                                  self.router_score_bias, self.expert_input_weights, self.router_bias,
                                  self.expert_group_score)
        return FeedForward(self.d_model, self.d_ff, self.activation, self.bias, ffn_dropout)

    def norm_layer(self) -> nn.Module:
        return build_norm(self.norm, self.d_model, self.norm_eps, bias=self.bias if self.norm_bias is None
                          else self.norm_bias)

    def input_norm_layer(self) -> nn.Module | None:
        """A sublayer's input norm: ``norm_layer()``, or None without ``input_norm`` (pre-norm only)."""
        return self.norm_layer() if self.input_norm or not self.pre_norm else None


class _Sublayers(nn.Module):
    """Residual wiring shared by encoder and decoder layers."""

    def __init__(self, cfg: LayerConfig):
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.drop = nn.Dropout(cfg.dropout)
        self.residual_multiplier = cfg.residual_multiplier

    def residual(self, x, norm, fn, post_norm=None):
        """Apply one sublayer; ``fn`` returns ``(output, extra)``. ``post_norm`` (sandwich norm)
        norms a pre-norm sublayer's output before the residual add; ``residual_multiplier``
        scales it (Granite)."""
        if self.pre_norm:
            y, extra = fn(x if norm is None else norm(x))
            if post_norm is not None:
                y = post_norm(y)
            if self.residual_multiplier != 1.0:
                y = y * self.residual_multiplier
            return x + self.drop(y) if self.training else x + y, extra
        y, extra = fn(x)
        return norm(x + self.drop(y) if self.training else x + y), extra


def _post_norms(cfg: LayerConfig) -> tuple[nn.Module | None, nn.Module | None]:
    """The sandwich norms on the attention and feed-forward outputs, or None."""
    if not cfg.sandwich_norm:
        return None, None
    return cfg.norm_layer(), cfg.norm_layer()


class EncoderLayer(_Sublayers):
    """Self-attention then feed-forward."""

    def __init__(self, cfg: LayerConfig):
        super().__init__(cfg)
        self.attn_norm = cfg.input_norm_layer()
        self.attn = cfg.attention()
        self.ffn_norm = cfg.input_norm_layer()
        self.ffn = cfg.feedforward()
        self.attn_post_norm, self.ffn_post_norm = _post_norms(cfg)

    def forward(self, x, mask=None, bias=None, rotary=None, need_weights=False, window=None):
        """``x`` ``(B, T, C)``; ``mask`` bool broadcastable to ``(B, H, T, T)``; ``window``: a
        sliding window ``(left, right)`` (:func:`~attnkit.nn.attention.scaled_dot_product_attention`'s)."""
        x, weights = self.residual(
            x, self.attn_norm,
            lambda h: self.attn(h, mask=mask, bias=bias, rotary=rotary, need_weights=need_weights, window=window),
            self.attn_post_norm,
        )
        x, _ = self.residual(x, self.ffn_norm, lambda h: (self.ffn(h), None), self.ffn_post_norm)
        return x, weights


class DecoderLayer(_Sublayers):
    """Masked self-attention, optional cross-attention over the encoder output, feed-forward."""

    def __init__(self, cfg: LayerConfig, cross: bool = False):
        super().__init__(cfg)
        self.attn_norm = cfg.input_norm_layer()
        self.attn = cfg.attention()
        if cross:
            if cfg.parallel_residual:
                raise InputError("parallel_residual decoder layers have no cross-attention")
            self.cross_norm = cfg.norm_layer()
            self.cross_attn = cfg.attention(cross=True)
        else:
            self.cross_norm = self.cross_attn = None
        self.parallel_residual = cfg.parallel_residual
        self.ffn_norm = None if cfg.shared_norm else cfg.input_norm_layer()
        self.ffn = cfg.feedforward()
        self.attn_post_norm, self.ffn_post_norm = _post_norms(cfg)

    def forward(
        self, x, mask=None, bias=None, is_causal=True, cache: KVCache | None = None, context=None,
        context_mask=None, cross_bias=None, cross_cache: KVCache | None = None, rotary=None, need_weights=False,
        window=None,
    ):
        """``window``: the self-attention's sliding window ``(left, right)``
        (:func:`~attnkit.nn.attention.scaled_dot_product_attention`'s)."""
        if self.parallel_residual:  # both sublayers read x; their outputs are added to it together
            normed = self.attn_norm(x)
            a, self_w = self.attn(normed, mask=mask, bias=bias, is_causal=is_causal, cache=cache, rotary=rotary,
                                  need_weights=need_weights, window=window)
            f = self.ffn(normed if self.ffn_norm is None else self.ffn_norm(x))
            return (x + self.drop(a) + self.drop(f) if self.training else x + a + f), self_w, None
        x, self_w = self.residual(
            x, self.attn_norm,
            lambda h: self.attn(h, mask=mask, bias=bias, is_causal=is_causal, cache=cache, rotary=rotary,
                                need_weights=need_weights, window=window),
            self.attn_post_norm,
        )
        cross_w = None
        if self.cross_attn is not None:
            x, cross_w = self.residual(
                x, self.cross_norm,
                lambda h: self.cross_attn(h, context=context, mask=context_mask, bias=cross_bias, cache=cross_cache,
                                          need_weights=need_weights),
            )
        x, _ = self.residual(x, self.ffn_norm, lambda h: (self.ffn(h), None), self.ffn_post_norm)
        return x, self_w, cross_w


class StackOutput(NamedTuple):
    hidden: torch.Tensor
    attentions: list | None = None
    cross_attentions: list | None = None
    hidden_states: list | None = None  # the input, then each layer's output (the last one normed)


class _Stack(nn.Module):
    def __init__(self, cfg: LayerConfig, layers: list[nn.Module], final_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = cfg.norm_layer() if final_norm else None
        self.gradient_checkpointing = False

    def _finish(self, x, states):
        """The final norm; the hidden states end with the stack's output (as Hugging Face's do)."""
        if self.norm is not None:
            x = self.norm(x)
        if states is not None:
            states.append(x)
        return x

    def _run(self, layer, *args, **kwargs):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False, **kwargs)
        return layer(*args, **kwargs)


class Encoder(_Stack):
    """A stack of :class:`EncoderLayer` with an optional final norm (pre-norm models).
    ``local_layers``: the layers that take ``forward``'s ``local`` mask and rotary embedding
    (ModernBERT's windowed layers)."""

    def __init__(self, cfg: LayerConfig, n_layers: int, final_norm: bool | None = None,
                 local_layers: tuple[int, ...] = ()):
        final_norm = cfg.pre_norm if final_norm is None else final_norm
        super().__init__(cfg, [EncoderLayer(cfg) for _ in range(n_layers)], final_norm)
        self.local_layers = frozenset(local_layers)

    def forward(self, x, mask=None, bias=None, rotary=None, output_attentions=False,
                output_hidden_states=False, local=None) -> StackOutput:
        """``x`` ``(B, T, C)``; ``mask`` bool broadcastable to ``(B, H, T, T)``. ``local``:
        ``(mask, rotary, window)`` for the layers in ``local_layers`` instead of ``mask``,
        ``rotary`` and no window (``window``: ``(left, right)``, see
        :func:`~attnkit.nn.attention.scaled_dot_product_attention`)."""
        attentions = [] if output_attentions else None
        states = [] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                states.append(x)
            layer_mask, layer_rotary, window = local if local is not None and i in self.local_layers \
                else (mask, rotary, None)
            x, w = self._run(layer, x, mask=layer_mask, bias=bias, rotary=layer_rotary, need_weights=output_attentions,
                             window=window)
            if output_attentions:
                attentions.append(w)
        return StackOutput(self._finish(x, states), attentions, hidden_states=states)


class Decoder(_Stack):
    """A stack of :class:`DecoderLayer`; ``cross=True`` adds cross-attention (encoder-decoder)."""

    def __init__(self, cfg: LayerConfig, n_layers: int, cross: bool = False, final_norm: bool | None = None,
                 local_layers: tuple[int, ...] = (), layer_cfgs: dict[int, LayerConfig] | None = None,
                 nope_layers: tuple[int, ...] = ()):
        """``layer_cfgs``: the layers built from a config of their own instead of ``cfg`` (a
        mixture of experts' dense layers). ``nope_layers``: the layers that get no rotary
        positions (SmolLM3's "NoPE" layers)."""
        final_norm = cfg.pre_norm if final_norm is None else final_norm
        layer_cfgs = layer_cfgs or {}
        super().__init__(cfg, [DecoderLayer(layer_cfgs.get(i, cfg), cross) for i in range(n_layers)], final_norm)
        self.cross = cross
        self.local_layers = frozenset(local_layers)
        self.nope_layers = frozenset(nope_layers)

    def new_cache(self, max_len: int, context_repeat: int = 1, keep: dict[int, int] | None = None) -> DecoderCache:
        """An empty cache for incremental decoding of up to ``max_len`` positions (``context_repeat``,
        ``keep``: see :class:`DecoderCache`)."""
        return DecoderCache(len(self.layers), max_len, cross=self.cross, context_repeat=context_repeat, keep=keep)

    def forward(
        self, x, mask=None, bias=None, is_causal=True, cache: DecoderCache | None = None, context=None,
        context_mask=None, cross_bias=None, rotary=None, output_attentions=False, output_hidden_states=False,
        local=None,
    ) -> StackOutput:
        """``x`` ``(B, T, C)``. ``mask`` bool broadcastable to ``(B, H, T, S)`` where ``S`` counts
        cached positions too; ``is_causal`` adds the (bottom-right aligned) causal mask.
        ``local``: ``(mask, rotary, window)`` for the layers in ``local_layers`` instead of ``mask``,
        ``rotary`` and no window (Gemma's sliding-window layers, with their own RoPE base in Gemma
        3; ``window``: ``(left, right)``, see :func:`~attnkit.nn.attention.scaled_dot_product_attention`)."""
        self_ws = [] if output_attentions else None
        cross_ws = [] if output_attentions and self.cross else None
        states = [] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                states.append(x)
            self_cache, cross_cache = cache.layer(i) if cache is not None else (None, None)
            layer_mask, layer_rotary, window = local if local is not None and i in self.local_layers \
                else (mask, rotary, None)
            if i in self.nope_layers:
                layer_rotary = None
            x, sw, cw = self._run(
                layer, x, mask=layer_mask, bias=bias, is_causal=is_causal, cache=self_cache, context=context,
                context_mask=context_mask, cross_bias=cross_bias, cross_cache=cross_cache, rotary=layer_rotary,
                need_weights=output_attentions, window=window,
            )
            if output_attentions:
                self_ws.append(sw)
                if self.cross:
                    cross_ws.append(cw)
        return StackOutput(self._finish(x, states), self_ws, cross_ws, states)
