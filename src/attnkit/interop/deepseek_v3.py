"""DeepSeek-V3 <-> attnkit DeepseekV3 (``DeepseekV3ForCausalLM``'s checkpoint layout): Llama's
embeddings, norms, dense MLPs and head (:mod:`attnkit.interop.llama`), with

- latent attention at ``model.layers.{i}.self_attn.``: ``q_proj`` (or ``q_a_proj``,
  ``q_a_layernorm``, ``q_b_proj``), ``kv_a_proj_with_mqa``, ``kv_a_layernorm``, ``kv_b_proj`` and
  ``o_proj`` (attnkit's ``attn.q_proj``, ``q_a_proj``, ``q_a_norm``, ``q_b_proj``, ``kv_a_proj``,
  ``kv_a_norm``, ``kv_b_proj``, ``out_proj``);
- from layer ``first_k_dense_replace`` on, a mixture at ``mlp.``: ``gate`` (the router) with its
  ``e_score_correction_bias``, ``experts.{j}.{gate,up,down}_proj`` and ``shared_experts.``.

Config: ``kv_lora_rank``, ``q_lora_rank``, ``qk_nope_head_dim`` + ``qk_rope_head_dim`` (attnkit's
``head_dim``, of which ``rotary_dim`` rotate), ``v_head_dim``, ``rope_interleave``,
``n_routed_experts``, ``num_experts_per_tok``, ``moe_intermediate_size`` (``d_ff``),
``n_shared_experts`` (times it: ``shared_expert_d_ff``), ``n_group``, ``topk_group``,
``routed_scaling_factor``, ``norm_topk_prob``, ``first_k_dense_replace`` (``moe_layers``) with
``intermediate_size`` (``dense_d_ff``), and YaRN scaling whose ``mscale_all_dim`` also scales the
scores by ``mscale²`` (``attn_scale_dim``).

Refused with a ``ConfigError``: ``attention_bias`` and the auxiliary loss (``output_router_logits``;
DeepSeek-V3 balances its experts with the score bias instead). The released DeepSeek-V3 weights
are FP8 with their block scales, dequantized on load (:func:`attnkit.interop._dequantized`); the
multi-token-prediction layer after the last (``model.layers.61``) is skipped, as ``transformers``
skips it.
"""

from __future__ import annotations

import math

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.deepseek import DeepseekV3, DeepseekV3Config
from attnkit.nn.positional import yarn_mscale

MODEL_TYPE = "deepseek_v3"
MODELS = {"DeepseekV3": DeepseekV3}
ARCHITECTURES = {"DeepseekV3ForCausalLM": "DeepseekV3"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
EXTRA_LAYERS = "model.layers."  # the multi-token-prediction layer after the last one: not used to generate
# the GPTConfig fields DeepSeekMoE sets (moe_to_hf writes them), for the families that use it
MOE_VARIANTS = frozenset({"n_experts", "normalize_expert_weights", "shared_expert_d_ff", "shared_expert_gated",
                          "router_scoring", "expert_groups", "expert_groups_per_token", "routed_scaling_factor",
                          "moe_layers", "dense_d_ff"})
_VARIANTS = MOE_VARIANTS | {"rotary_dim", "attn_scale_dim", "kv_lora_rank", "q_lora_rank", "v_head_dim",
                            "rope_interleave"}
_ATTENTION = {"q_proj": "q_proj", "q_a_proj": "q_a_proj", "q_a_norm": "q_a_layernorm", "q_b_proj": "q_b_proj",
              "kv_a_proj": "kv_a_proj_with_mqa", "kv_a_norm": "kv_a_layernorm", "kv_b_proj": "kv_b_proj",
              "out_proj": "o_proj"}


def key_rules(model) -> list[Rename]:
    c: DeepseekV3Config = model.config
    n, h = "decoder.layers.{i}.attn.", "model.layers.{i}.self_attn."
    names = [k for k in _ATTENTION if (k == "q_proj") == (c.q_lora_rank is None) or not k.startswith("q_")]
    attention = [Rename(n + f"{ours}.weight", h + f"{_ATTENTION[ours]}.weight") for ours in names]
    rest = [r for r in llama.key_rules(model) if ".attn." not in r.native_names[0]]
    return llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"), dense=rest + attention,
                               shared="shared_experts")


def _score_correction(c: DeepseekV3Config) -> float:
    """``mscale`` with which the scores are scaled by ``head_dim ** -0.5 · mscale²``."""
    return 1.0 if c.attn_scale_dim is None else (c.dim_per_head / c.attn_scale_dim) ** 0.25


def moe_to_hf(c) -> dict | None:
    """DeepSeekMoE's HF config fields (DeepSeek-V3's, GLM-4.5's), or None for a mixture they
    cannot represent (no shared expert or a gated one, softmax scores, dense layers that are not
    the first ones)."""
    sparse = c.moe_layers if c.moe_layers is not None else tuple(range(c.n_layers))
    first_sparse = sparse[0] if sparse else c.n_layers  # DeepSeek's dense layers come first
    if (c.n_experts is None or c.shared_expert_d_ff is None or c.shared_expert_gated or c.router_scoring != "sigmoid"
            or not c.score_bias or c.activation != "swiglu" or c.shared_expert_d_ff % c.d_ff
            or tuple(sparse) != tuple(range(first_sparse, c.n_layers))):
        return None
    return dict(intermediate_size=c.dense_d_ff or c.d_ff, moe_intermediate_size=c.d_ff, n_routed_experts=c.n_experts,
                num_experts_per_tok=c.experts_per_token, n_shared_experts=c.shared_expert_d_ff // c.d_ff,
                n_group=c.expert_groups or 1, topk_group=c.expert_groups_per_token or 1,
                routed_scaling_factor=c.routed_scaling_factor, norm_topk_prob=c.normalize_expert_weights,
                first_k_dense_replace=first_sparse, output_router_logits=False)


def moe_from_hf(hf: dict, n_layers: int, defaults) -> dict:
    """attnkit's fields of DeepSeekMoE from a HF config (DeepSeek-V3's, GLM-4.5's): sigmoid scores
    with a score bias, ``n_group``/``topk_group``, ``routed_scaling_factor``, ``norm_topk_prob``,
    ``n_shared_experts`` experts of ``moe_intermediate_size`` shared, the first
    ``first_k_dense_replace`` layers dense (``intermediate_size``)."""
    get = hf_getter(hf)
    d = defaults
    first_sparse = get("first_k_dense_replace", 1)
    moe_d_ff = get("moe_intermediate_size", d.d_ff)
    return dict(
        d_ff=moe_d_ff, n_experts=get("n_routed_experts", get("num_local_experts", d.n_experts)),
        experts_per_token=get("num_experts_per_tok", d.experts_per_token), router_scoring="sigmoid",
        expert_groups=get("n_group", 1), expert_groups_per_token=get("topk_group", 1),
        routed_scaling_factor=float(get("routed_scaling_factor", d.routed_scaling_factor)),
        normalize_expert_weights=bool(get("norm_topk_prob", True)), shared_expert_gated=False,
        shared_expert_d_ff=moe_d_ff * get("n_shared_experts", 1),
        moe_layers=tuple(range(first_sparse, n_layers)) if first_sparse else None,
        dense_d_ff=get("intermediate_size", d.dense_d_ff) if first_sparse else None)


def config_to_hf(model) -> dict | None:
    """HF ``DeepseekV3Config`` fields, or None for a variant ``DeepseekV3ForCausalLM`` cannot
    represent (biases, ordinary attention or feed-forwards, a gated shared expert, a score scale
    without YaRN scaling)."""
    c: DeepseekV3Config = model.config
    fields = llama_fields(c, _VARIANTS)
    moe = moe_to_hf(c)
    scaling = c.rope_scaling or {}
    if (fields is None or moe is None or c.bias or c.kv_lora_rank is None
            or (c.attn_scale_dim is not None and (scaling.get("rope_type") != "yarn" or scaling["factor"] <= 1))):
        return None
    fields.pop("head_dim")
    if c.attn_scale_dim is not None:  # the score correction, as transformers derives it from mscale_all_dim
        fields["rope_parameters"]["mscale_all_dim"] = (_score_correction(c) - 1) / (0.1 * math.log(scaling["factor"]))
    return dict(model_type=MODEL_TYPE, **{**fields, **moe}, kv_lora_rank=c.kv_lora_rank, q_lora_rank=c.q_lora_rank,
                qk_rope_head_dim=c.rotary_dim, qk_nope_head_dim=c.dim_per_head - c.rotary_dim,
                v_head_dim=c.v_head_dim or c.dim_per_head, rope_interleave=c.rope_interleave, attention_bias=False)


def config_from_hf(hf: dict, model_class: type) -> DeepseekV3Config:
    """``DeepseekV3Config`` from a HF DeepSeek-V3 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias") or hf.get("output_router_logits"):
        raise ConfigError("config.json: attention_bias=true and output_router_logits=true are not supported by "
                          "attnkit's DeepseekV3 (DeepSeek-V3 has no attention biases and no auxiliary loss)")
    d = DeepseekV3Config()
    get = hf_getter(hf)

    rope, nope = get("qk_rope_head_dim", d.rotary_dim), get("qk_nope_head_dim", d.dim_per_head - d.rotary_dim)
    fields = llama_config_fields({**hf, "head_dim": nope + rope}, d)
    fields.update(head_dim=nope + rope, rotary_dim=rope)
    if fields["rope_scaling"] is not None and fields["rope_scaling"]["rope_type"] != "yarn":
        raise ConfigError(f"config.json: DeepSeek-V3 uses YaRN RoPE scaling; {fields['rope_scaling']['rope_type']!r} "
                          "is not supported by attnkit's DeepseekV3")
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    attn_scale_dim = None
    if fields["rope_scaling"] is not None and params.get("mscale_all_dim"):  # transformers' yarn_apply_mscale
        m = yarn_mscale(fields["rope_scaling"]["factor"], params["mscale_all_dim"])
        attn_scale_dim = None if m == 1.0 else (nope + rope) / m ** 4
    moe = moe_from_hf({"first_k_dense_replace": 3, "n_group": d.expert_groups, "topk_group": d.expert_groups_per_token,
                       **hf}, fields["n_layers"], d)
    return DeepseekV3Config(
        **{**fields, **moe}, attn_scale_dim=attn_scale_dim, kv_lora_rank=get("kv_lora_rank", d.kv_lora_rank),
        q_lora_rank=hf.get("q_lora_rank", d.q_lora_rank), v_head_dim=get("v_head_dim", d.v_head_dim),
        rope_interleave=bool(get("rope_interleave", True)))
