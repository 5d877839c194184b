"""DeepSeek-V2 <-> attnkit DeepseekV2 (``DeepseekV2ForCausalLM``'s layout): DeepSeek-V3's keys
(:mod:`attnkit.interop.deepseek_v3`: latent attention, DeepSeekMoE), without the router's score
bias. Its config is DeepSeek-V3's, read with DeepSeek-V2's defaults, and its router: softmax
scores, ``topk_method`` ``"greedy"`` (no groups) or ``"group_limited_greedy"`` (``n_group`` /
``topk_group``, each group scored by its best expert), ``norm_topk_prob`` (default false),
``routed_scaling_factor``. The rotary pairs are always interleaved (DeepSeek-V2 rotates complex
numbers).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from attnkit.errors import ConfigError
from attnkit.interop import deepseek_v3, llama
from attnkit.models.deepseek import DeepseekV2, DeepseekV2Config, DeepseekV3Config

MODEL_TYPE = "deepseek_v2"
MODELS = {"DeepseekV2": DeepseekV2}
ARCHITECTURES = {"DeepseekV2ForCausalLM": "DeepseekV2"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
# transformers' DeepseekV2Config defaults, for the fields a config.json leaves out
HF_DEFAULTS = dict(vocab_size=102400, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                   num_attention_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6, bos_token_id=1,
                   eos_token_id=2, tie_word_embeddings=False, kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128,
                   qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=64, n_shared_experts=2,
                   moe_intermediate_size=1407, num_experts_per_tok=6, first_k_dense_replace=0,
                   routed_scaling_factor=1.0, norm_topk_prob=False, n_group=1, topk_group=1)


def key_rules(model):
    return deepseek_v3.key_rules(model)


def _as_v3(c: DeepseekV2Config) -> DeepseekV3Config:
    """The DeepSeek-V3 config with ``c``'s fields and V3's router: to reuse V3's conversions."""
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(DeepseekV3Config)}
    return DeepseekV3Config(**{**fields, "router_scoring": "sigmoid", "router_score_bias": None,
                               "expert_group_score": None})


def config_to_hf(model) -> dict | None:
    """HF ``DeepseekV2Config`` fields, or None for a variant ``DeepseekV2ForCausalLM`` cannot represent."""
    c: DeepseekV2Config = model.config
    groups = c.expert_groups is not None
    if (c.router_scoring != "softmax" or c.score_bias or not c.rope_interleave
            or (groups and c.expert_group_score != "max") or (not groups and c.expert_group_score is not None)):
        return None
    fields = deepseek_v3.config_to_hf(SimpleNamespace(config=_as_v3(c)))
    if fields is None:
        return None
    fields.pop("rope_interleave")
    return dict(fields, model_type=MODEL_TYPE, topk_method="group_limited_greedy" if groups else "greedy",
                n_group=c.expert_groups or 1, topk_group=c.expert_groups_per_token or 1)


def config_from_hf(hf: dict, model_class: type) -> DeepseekV2Config:
    """``DeepseekV2Config`` from a HF DeepSeek-V2 config dict (HF's defaults for absent fields)."""
    method = hf.get("topk_method", "greedy")
    if method not in ("greedy", "group_limited_greedy"):
        raise ConfigError(f"config.json: topk_method {method!r} is not supported by attnkit's DeepseekV2 (needs "
                          "'greedy' or 'group_limited_greedy')")
    filled = {**HF_DEFAULTS, **hf, "rope_interleave": True}
    for name in ("n_group", "topk_group", "num_experts_per_tok"):  # None in transformers' defaults
        filled[name] = HF_DEFAULTS[name] if filled[name] is None else filled[name]
    v3 = deepseek_v3.config_from_hf(filled, model_class)
    grouped = method == "group_limited_greedy"
    fields = {f.name: getattr(v3, f.name) for f in dataclasses.fields(DeepseekV2Config)}
    return DeepseekV2Config(**{
        **fields, "router_scoring": "softmax", "router_score_bias": False,
        "expert_groups": filled["n_group"] if grouped else None,
        "expert_groups_per_token": filled["topk_group"] if grouped else None,
        "expert_group_score": "max" if grouped else None})
