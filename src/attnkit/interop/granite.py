"""Granite <-> attnkit Granite (``GraniteForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`). Config: Llama's fields plus ``embedding_multiplier``,
``residual_multiplier``, ``logits_scaling`` and ``attention_multiplier`` (the score scale itself:
attnkit's ``attn_scale_dim`` is its inverse square).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Granite, GraniteConfig

MODEL_TYPE = "granite"
MODELS = {"Granite": Granite}
ARCHITECTURES = {"GraniteForCausalLM": "Granite"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_MULTIPLIERS = {"embedding_multiplier", "residual_multiplier", "logits_scaling", "attn_scale_dim"}


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def multipliers_to_hf(c: GraniteConfig) -> dict:
    """Granite's four multipliers as HF config fields (GraniteMoE's too)."""
    return dict(embedding_multiplier=c.embedding_multiplier, residual_multiplier=c.residual_multiplier,
                logits_scaling=c.logits_scaling, attention_multiplier=(c.attn_scale_dim or c.dim_per_head) ** -0.5)


def multipliers_from_hf(hf: dict) -> dict:
    """attnkit's fields of Granite's four multipliers (``attention_multiplier`` is the score scale
    itself: ``attn_scale_dim`` is its inverse square)."""
    multiplier = hf.get("attention_multiplier", 1.0)
    if not isinstance(multiplier, (int, float)) or multiplier <= 0:
        raise ConfigError(f"config.json: attention_multiplier must be a positive number, got {multiplier!r}")
    return dict(embedding_multiplier=float(hf.get("embedding_multiplier", 1.0)),
                residual_multiplier=float(hf.get("residual_multiplier", 1.0)),
                logits_scaling=float(hf.get("logits_scaling", 1.0)), attn_scale_dim=float(multiplier) ** -2)


def config_to_hf(model) -> dict | None:
    """HF ``GraniteConfig`` fields, or None for a variant ``GraniteForCausalLM`` cannot represent."""
    c: GraniteConfig = model.config
    fields = llama_fields(c, _MULTIPLIERS)
    if fields is None:
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=c.bias, mlp_bias=c.bias, **multipliers_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> GraniteConfig:
    """``GraniteConfig`` from a HF Granite config dict (HF's defaults for absent fields)."""
    bias = llama.uniform_bias(hf, "Granite")
    return GraniteConfig(**llama_config_fields(hf, GraniteConfig()), bias=bias, **multipliers_from_hf(hf))
