"""Llama <-> attnkit Llama (``LlamaForCausalLM``'s layout): ``model.embed_tokens``,
``model.layers.{i}.self_attn.{q,k,v,o}_proj`` (q/k/v fused into attnkit's ``qkv_proj``, split
back by head counts for grouped-query attention; ``q_norm``/``k_norm`` for Qwen3), ``mlp.{gate,up,down}_proj``,
``input_layernorm``, ``post_attention_layernorm``, ``model.norm``, ``lm_head`` (absent when tied).

Mistral (:mod:`attnkit.interop.mistral`: ``sliding_window``), Qwen2 and Qwen3
(:mod:`attnkit.interop.qwen2`: q/k/v biases; query/key norms) use the same keys and build on the
functions here.

RoPE scaling (``rope_parameters`` / ``rope_scaling``) of the ``linear``, ``llama3`` (Llama 3.1
and 3.2), ``yarn`` and ``longrope`` (Phi-3) kinds is read into ``rope_scaling``. Refused with a
``ConfigError`` naming the field: other RoPE scalings (dynamic NTK), biases on attention but not
the MLP (or the reverse), activations other than SiLU/GELU gates.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, first_token_id, hf_getter
from attnkit.nn.positional import ROPE_SCALINGS, check_rope_scaling, longrope_attention_factor, yarn_mscale
from attnkit.models.llama import Llama, LlamaConfig

MODEL_TYPE = "llama"
MODELS = {"Llama": Llama}
ARCHITECTURES = {"LlamaForCausalLM": "Llama"}
BASE_PREFIX = "model."  # HF base models (LlamaModel, Qwen3Model, ...) save their keys without it
IGNORED_HF_KEYS = (r"rotary_emb\.inv_freq$",)
_GATES = {"silu": "swiglu", "gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh", "relu": "reglu"}


def key_rules(model) -> list[Rename]:
    c: LlamaConfig = model.config
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    q, kv = c.n_heads * c.dim_per_head, (c.n_kv_heads or c.n_heads) * c.dim_per_head
    qkv_names = ("weight", "bias") if (c.bias if c.qkv_bias is None else c.qkv_bias) else ("weight",)
    rules = [Rename("wte.weight", "model.embed_tokens.weight")]
    for p in qkv_names:
        rules.append(Rename(n + f"attn.qkv_proj.{p}", tuple(h + f"self_attn.{x}_proj.{p}" for x in "qkv"),
                            sizes=(q, kv, kv)))
    for p in ("weight", "bias") if c.bias else ("weight",):
        rules += [
            Rename(n + f"attn.out_proj.{p}", h + f"self_attn.o_proj.{p}"),
            Rename(n + f"ffn.fc_gate.{p}", h + f"mlp.gate_proj.{p}"),
            Rename(n + f"ffn.fc_in.{p}", h + f"mlp.up_proj.{p}"),
            Rename(n + f"ffn.fc_out.{p}", h + f"mlp.down_proj.{p}"),
        ]
    norms = [(n + "attn_norm", h + "input_layernorm"), (n + "ffn_norm", h + "post_attention_layernorm"),
             ("decoder.norm", "model.norm")]
    layer_norm_bias = c.norm.startswith("layernorm") and (c.bias if c.norm_bias is None else c.norm_bias)
    return rules + [
        *([Rename(n + f"attn.{x}_norm.weight", h + f"self_attn.{x}_norm.weight") for x in "qk"] if c.qk_norm else []),
        *[Rename(f"{ours}.{p}", f"{theirs}.{p}") for ours, theirs in norms
          for p in (("weight", "bias") if layer_norm_bias else ("weight",))],
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def moe_key_rules(model, block: str, experts: tuple[str, str, str], dense: list[Rename] | None = None,
                  shared: str = "shared_expert") -> list[Rename]:
    """``dense`` (default :func:`key_rules`) with each layer's feed-forward a sparse mixture: the
    router at ``model.layers.{i}.{block}.gate`` (DeepSeek-V3's score bias at
    ``gate.e_score_correction_bias``), each expert's gate, up and down projections at
    ``{block}.experts.{j}.`` + the names in ``experts`` (Mixtral: ``w1``, ``w3``, ``w2``), and a
    shared expert at ``{block}.{shared}.`` with its gate ``{block}.shared_expert_gate``."""
    n, h = "decoder.layers.{i}.ffn.", f"model.layers.{{i}}.{block}."
    c = model.config
    # Dense layers among the sparse ones (moe_layers) keep Llama's mlp.{gate,up,down}_proj.
    dense = key_rules(model) if dense is None else dense
    if c.moe_layers is None:
        dense = [r for r in dense if ".ffn.fc_" not in r.native_names[0]]
    parts = tuple(zip(("fc_gate", "fc_in", "fc_out"), experts))
    shared_rules = [Rename(n + f"shared_expert.{ours}.weight", h + f"{shared}.{theirs}.weight")
                    for ours, theirs in parts]
    if c.shared_expert_gated:
        shared_rules.append(Rename(n + "shared_gate.weight", h + "shared_expert_gate.weight"))
    bias = [Rename(n + "score_bias", h + "gate.e_score_correction_bias")] if c.score_bias else []
    return dense + [Rename(n + "router.weight", h + "gate.weight")] + bias + [
        Rename(n + f"experts.{{j}}.{ours}.weight", h + f"experts.{{j}}.{theirs}.weight") for ours, theirs in parts
    ] + (shared_rules if c.shared_expert_d_ff is not None else [])


def moe_layers_from_hf(hf: dict, n_layers: int, dense_d_ff: int, dense: tuple[int, ...] = ()) -> dict:
    """``moe_layers`` and ``dense_d_ff`` from a Qwen mixture-of-experts config: layer ``i`` has
    experts unless it is in ``mlp_only_layers`` (or ``dense``) or ``(i + 1) % decoder_sparse_step``
    is not 0; the others are dense feed-forwards of ``intermediate_size`` (default
    ``dense_d_ff``). Nothing when every layer has experts."""
    step = hf.get("decoder_sparse_step", 1) or 1
    if not isinstance(step, int) or step < 1:
        raise ConfigError(f"config.json: decoder_sparse_step must be a positive integer, got {step!r}")
    skipped = set(hf.get("mlp_only_layers") or ()) | set(dense)
    sparse = tuple(i for i in range(n_layers) if i not in skipped and (i + 1) % step == 0)
    if len(sparse) == n_layers:
        return {}
    return dict(moe_layers=sparse, dense_d_ff=hf.get("intermediate_size") or dense_d_ff)


def moe_layers_to_hf(c: LlamaConfig) -> dict:
    """The HF fields of :func:`moe_layers_from_hf`: ``mlp_only_layers`` (a sparse step of 1) and
    the dense layers' ``intermediate_size``."""
    if c.moe_layers is None:
        return dict(decoder_sparse_step=1, mlp_only_layers=[])
    return dict(decoder_sparse_step=1, mlp_only_layers=[i for i in range(c.n_layers) if i not in c.moe_layers],
                intermediate_size=c.dense_d_ff or c.d_ff)


def router_loss_fields(hf: dict, default_coef: float) -> dict:
    """``router_aux_loss_coef`` from a mixture-of-experts HF config: its coefficient when
    ``output_router_logits`` turns the loss on, else 0."""
    coef = hf.get("router_aux_loss_coef", default_coef) if hf.get("output_router_logits") else 0.0
    return dict(router_aux_loss_coef=float(coef or 0.0))


def router_loss_to_hf(c: LlamaConfig, default_coef: float) -> dict:
    """The HF fields of :func:`router_loss_fields`."""
    coef = c.router_aux_loss_coef
    return dict(output_router_logits=coef > 0, router_aux_loss_coef=coef or default_coef)


def config_to_hf(model) -> dict | None:
    """HF ``LlamaConfig`` fields, or None for a variant ``LlamaForCausalLM`` cannot represent."""
    c: LlamaConfig = model.config
    fields = llama_fields(c)  # None for Qwen2's, Qwen3's, Mistral's and Gemma's features: their own modules save them
    return None if fields is None else dict(model_type=MODEL_TYPE, **fields, attention_bias=c.bias, mlp_bias=c.bias)


def llama_fields(c: LlamaConfig, variants: frozenset | set = frozenset(), norm: str = "rmsnorm",
                 activations: dict[str, str] | None = None) -> dict | None:
    """The HF config fields Llama, Mistral, Qwen, Phi-3 and Gemma share, or None for a config the
    caller's family cannot represent: one that uses ``GPTConfig.variant_fields`` beyond
    ``variants`` (the caller's own) or another ``norm``. ``activations``: the family's HF
    activation names by attnkit's (default: the gated ones of Llama's MLP)."""
    act = ({v: k for k, v in _GATES.items()} if activations is None else activations).get(c.activation)
    if c.positional != "rotary" or c.norm != norm or act is None or c.dropout or c.variants() - set(variants):
        return None
    return dict(
        vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff or 4 * c.d_model,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads or c.n_heads,
        head_dim=c.dim_per_head, hidden_act=act, max_position_embeddings=c.n_positions, rms_norm_eps=c.norm_eps,
        rope_parameters={"rope_theta": c.rope_base, **(c.rope_scaling or {"rope_type": "default"})},
        attention_dropout=c.attn_dropout, tie_word_embeddings=c.tie_word_embeddings,
        initializer_range=c.initializer_range, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )


def _rope(hf: dict, n_positions: int, rotary_dim: int | None = None) -> tuple[float, dict | None]:
    """``(rope_theta, rope_scaling)`` from transformers 5's ``rope_parameters`` or the older
    top-level ``rope_theta`` and ``rope_scaling``. Linear, Llama 3.1 (``llama3``), LongRoPE
    (Phi-3) and YaRN scaling are read, with ``transformers``' defaults for the fields a config
    leaves out; other kinds (dynamic NTK) are refused by name. A top-level
    ``original_max_position_embeddings`` wins over the scaling's own (Phi-3's, as transformers
    reads it). ``rotary_dim``: the rotated dimensions, to check LongRoPE's factor lists."""
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    base = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return base, None
    if kind not in ROPE_SCALINGS:
        raise ConfigError(f"config.json: RoPE scaling {kind!r} is not supported by attnkit (supported: default, "
                          f"{', '.join(sorted(ROPE_SCALINGS))})")
    if hf.get("original_max_position_embeddings") is not None:
        params["original_max_position_embeddings"] = hf["original_max_position_embeddings"]
    params.setdefault("original_max_position_embeddings", n_positions)  # transformers' fallback
    original = params["original_max_position_embeddings"]
    if kind in ("longrope", "yarn"):  # transformers' defaults: the context's growth, and a scale for it
        params["factor"] = params.get("factor") or n_positions / original
    if kind == "longrope":
        params["attention_factor"] = params.get("attention_factor") or longrope_attention_factor(params["factor"],
                                                                                                  original)
    if kind == "yarn":
        factor, mscale, mscale_all = params["factor"], params.get("mscale"), params.get("mscale_all_dim")
        scale = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all) if mscale and mscale_all else \
            yarn_mscale(factor)
        params.update(attention_factor=params.get("attention_factor") or scale, beta_fast=params.get("beta_fast") or 32,
                      beta_slow=params.get("beta_slow") or 1, truncate=params.get("truncate", True))
    scaling = {"rope_type": kind, **{k: params.get(k) for k in ("factor", *ROPE_SCALINGS[kind])}}
    problem = check_rope_scaling(scaling, rotary_dim)
    if problem:
        raise ConfigError(f"config.json: RoPE scaling {scaling}: {problem}")
    return base, scaling


def rotary_fraction(hf: dict, default: float = 1.0) -> float:
    """``partial_rotary_factor`` (the rotated fraction of each head) from ``rope_parameters``,
    ``rope_scaling`` or the top level; ``default`` when absent."""
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    return float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", default)) or default)


LAYER_TYPES = ("sliding_attention", "full_attention")  # transformers' names in layer_types


def sliding_layers_from_hf(types, n_layers: int) -> tuple[int, ...]:
    """The indices of the ``"sliding_attention"`` layers in a HF ``layer_types`` list, which must
    name ``n_layers`` layers of :data:`LAYER_TYPES`."""
    if not isinstance(types, list) or len(types) != n_layers or any(t not in LAYER_TYPES for t in types):
        raise ConfigError(f"config.json: layer_types must list {n_layers} of {LAYER_TYPES}, got {types!r}")
    return tuple(i for i, t in enumerate(types) if t == LAYER_TYPES[0])


def layer_types_to_hf(c: LlamaConfig) -> list[str]:
    """HF ``layer_types``: ``"sliding_attention"`` for ``c.window_layers``, else ``"full_attention"``."""
    local = set(c.window_layers)
    return [LAYER_TYPES[0] if i in local else LAYER_TYPES[1] for i in range(c.n_layers)]


def uniform_bias(hf: dict, family: str) -> bool:
    """The one ``bias`` of a config whose ``attention_bias`` and ``mlp_bias`` must agree (attnkit's
    ``family`` has biases everywhere or nowhere)."""
    if bool(hf.get("attention_bias", False)) != bool(hf.get("mlp_bias", False)):
        raise ConfigError(f"config.json: attention_bias and mlp_bias differ; attnkit's {family} has biases everywhere "
                          "or nowhere")
    return bool(hf.get("attention_bias", False))


def config_from_hf(hf: dict, model_class: type) -> LlamaConfig:
    """``LlamaConfig`` from a HF Llama config dict (HF's defaults for absent fields)."""
    return LlamaConfig(**llama_config_fields(hf, LlamaConfig()), bias=uniform_bias(hf, "Llama"))


def llama_config_fields(hf: dict, defaults: LlamaConfig, partial_rotary: bool = False,
                        activations: dict[str, str] | None = None) -> dict:
    """attnkit config fields from the HF config fields Llama, Mistral and Qwen2 share; an absent
    field takes ``defaults``' value (the family's HF default). A ``partial_rotary_factor`` below 1
    is refused unless the family rotates part of each head (``partial_rotary``: Phi-3's
    ``int(hidden_size // num_attention_heads * factor)`` dimensions, read into ``rotary_dim``).
    ``activations``: attnkit's names of the family's HF activations (default: Llama's gated MLP)."""
    get = hf_getter(hf)
    d, heads = get("hidden_size", defaults.d_model), get("num_attention_heads", defaults.n_heads)
    head_dim = hf.get("head_dim")
    fraction, rotary_dim = rotary_fraction(hf), None
    if fraction != 1.0:
        if not partial_rotary:
            raise ConfigError("config.json: partial_rotary_factor is not supported by this family (attnkit rotates "
                              "whole heads)")
        rotary_dim = int(d // heads * fraction)
    rope_base, rope_scaling = _rope(hf, get("max_position_embeddings", defaults.n_positions),
                                    rotary_dim or head_dim or d // heads)
    acts = _GATES if activations is None else activations
    act = hf.get("hidden_act", "silu")
    if act not in acts:
        raise ConfigError(f"config.json: hidden_act={act!r} is not supported; supported: {sorted(acts)}")
    return dict(
        vocab_size=get("vocab_size", defaults.vocab_size),
        n_positions=get("max_position_embeddings", defaults.n_positions),
        d_model=d, n_layers=get("num_hidden_layers", defaults.n_layers), n_heads=heads,
        head_dim=None if head_dim in (None, d // heads) else head_dim,
        n_kv_heads=get("num_key_value_heads", heads), d_ff=get("intermediate_size", defaults.d_ff),
        activation=acts[act], norm_eps=get("rms_norm_eps", defaults.norm_eps), rope_base=rope_base,
        rope_scaling=rope_scaling, rotary_dim=rotary_dim,
        attn_dropout=get("attention_dropout", 0.0),
        tie_word_embeddings=get("tie_word_embeddings", defaults.tie_word_embeddings),
        initializer_range=get("initializer_range", 0.02), bos_token_id=hf.get("bos_token_id", defaults.bos_token_id),
        eos_token_id=first_token_id(hf, "eos_token_id", defaults.eos_token_id), pad_token_id=hf.get("pad_token_id"),
    )
