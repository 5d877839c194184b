"""Seed-OSS <-> attnkit SeedOss (``SeedOssForCausalLM``'s layout: Llama's keys with q/k/v biases,
:mod:`attnkit.interop.llama`). Config: Llama's fields with ``attention_bias`` (the q/k/v
projections' biases: attnkit's ``qkv_bias``) and ``residual_dropout`` (``dropout``). Refused with a
``ConfigError``: ``attention_out_bias`` and ``mlp_bias`` (the released checkpoints have neither).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import SeedOss, SeedOssConfig

MODEL_TYPE = "seed_oss"
MODELS = {"SeedOss": SeedOss}
ARCHITECTURES = {"SeedOssForCausalLM": "SeedOss"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``SeedOssConfig`` fields, or None for a variant ``SeedOssForCausalLM`` cannot represent."""
    c: SeedOssConfig = model.config
    fields = llama_fields(c, {"qkv_bias"})
    if fields is None or c.bias:
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=bool(c.qkv_bias), attention_out_bias=False,
                mlp_bias=False, residual_dropout=c.dropout)


def config_from_hf(hf: dict, model_class: type) -> SeedOssConfig:
    """``SeedOssConfig`` from a HF Seed-OSS config dict (HF's defaults for absent fields)."""
    if hf.get("attention_out_bias") or hf.get("mlp_bias"):
        raise ConfigError("config.json: attention_out_bias=true and mlp_bias=true are not supported by attnkit's "
                          "SeedOss (the released checkpoints bias the q/k/v projections only)")
    return SeedOssConfig(**llama_config_fields(hf, SeedOssConfig()), qkv_bias=bool(hf.get("attention_bias", True)),
                         dropout=float(hf.get("residual_dropout") or 0.0))
