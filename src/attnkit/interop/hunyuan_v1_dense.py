"""Hunyuan dense <-> attnkit HunYuanDense (``HunYuanDenseV1ForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`, with the per-head norms at ``self_attn.query_layernorm`` and
``key_layernorm``, applied after the rotary embedding). Config: Llama's fields; a
``rope_parameters`` of type ``dynamic`` with an ``alpha`` (Hunyuan's NTK-alpha scaling: the base
stretched to ``rope_theta · alpha ** (d / (d - 2))``, whatever the length) is read as that base.
Refused with a ``ConfigError``: ``attention_bias`` and ``mlp_bias``.
"""

from __future__ import annotations

from dataclasses import replace

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import HunYuanDense, HunYuanDenseConfig

MODEL_TYPE = "hunyuan_v1_dense"
MODELS = {"HunYuanDense": HunYuanDense}
ARCHITECTURES = {"HunYuanDenseV1ForCausalLM": "HunYuanDense"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_NORMS = {"q_norm": "query_layernorm", "k_norm": "key_layernorm"}


def key_rules(model) -> list[Rename]:
    rules = llama.key_rules(model)
    for i, r in enumerate(rules):
        for ours, theirs in _NORMS.items():
            if r.hf == f"model.layers.{{i}}.self_attn.{ours}.weight":
                rules[i] = replace(r, hf=f"model.layers.{{i}}.self_attn.{theirs}.weight")
    return rules


def config_to_hf(model) -> dict | None:
    """HF ``HunYuanDenseV1Config`` fields, or None for a variant it cannot represent."""
    c: HunYuanDenseConfig = model.config
    fields = llama_fields(c, {"qk_norm", "qk_norm_after_rope"})
    if fields is None or c.bias or not (c.qk_norm and c.qk_norm_after_rope):
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=False, mlp_bias=False)


def config_from_hf(hf: dict, model_class: type) -> HunYuanDenseConfig:
    """``HunYuanDenseConfig`` from a HF Hunyuan dense config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ConfigError("config.json: attention_bias and mlp_bias are not supported by attnkit's HunYuanDense")
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    if params.get("rope_type", params.get("type")) == "dynamic" and params.get("alpha"):
        heads = hf.get("num_attention_heads", 32)
        dim = hf.get("head_dim") or hf.get("hidden_size", 4096) // heads
        theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
        base = theta * float(params["alpha"]) ** (dim / (dim - 2))
        hf = {**{k: v for k, v in hf.items() if k not in ("rope_scaling", "rope_parameters")},
              "rope_parameters": {"rope_type": "default", "rope_theta": base}}
    return HunYuanDenseConfig(**llama_config_fields(hf, HunYuanDenseConfig()))
