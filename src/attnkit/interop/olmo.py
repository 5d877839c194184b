"""OLMo (1) <-> attnkit Olmo (``OlmoForCausalLM``'s layout: Llama's keys, :mod:`attnkit.interop.llama`,
without norm weights: its LayerNorms have none). Config: Llama's fields and ``clip_qkv`` (queries,
keys and values clamped). Refused with a ``ConfigError``: ``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Olmo, OlmoConfig

MODEL_TYPE = "olmo"
MODELS = {"Olmo": Olmo}
ARCHITECTURES = {"OlmoForCausalLM": "Olmo"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return [r for r in llama.key_rules(model) if "norm." not in r.native_names[0]]


def config_to_hf(model) -> dict | None:
    """HF ``OlmoConfig`` fields, or None for a variant ``OlmoForCausalLM`` cannot represent."""
    c: OlmoConfig = model.config
    fields = llama_fields(c, {"clip_qkv"}, norm="layernorm_unweighted")
    if fields is None or c.bias or c.norm_eps != 1e-5:
        return None
    fields.pop("rms_norm_eps")
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=False, clip_qkv=c.clip_qkv)


def config_from_hf(hf: dict, model_class: type) -> OlmoConfig:
    """``OlmoConfig`` from a HF OLMo config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Olmo")
    fields = llama_config_fields({k: v for k, v in hf.items() if k != "rms_norm_eps"}, OlmoConfig())
    return OlmoConfig(**fields, clip_qkv=hf.get("clip_qkv"))
