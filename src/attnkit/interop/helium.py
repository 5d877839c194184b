"""Helium <-> attnkit Helium (``HeliumForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`). Config: Llama's fields; the rotary pairs are interleaved
(``rope_interleave``); ``attention_bias`` puts biases on the query/key/value projections alone
(``qkv_bias``). Refused with a ``ConfigError``: ``mlp_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Helium, HeliumConfig

MODEL_TYPE = "helium"
MODELS = {"Helium": Helium}
ARCHITECTURES = {"HeliumForCausalLM": "Helium"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``HeliumConfig`` fields, or None for a variant ``HeliumForCausalLM`` cannot represent."""
    c: HeliumConfig = model.config
    fields = llama_fields(c, {"rope_interleave", "qkv_bias"})
    if fields is None or c.bias or not c.rope_interleave or c.n_heads * c.dim_per_head != c.d_model:
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=bool(c.qkv_bias), mlp_bias=False)


def config_from_hf(hf: dict, model_class: type) -> HeliumConfig:
    """``HeliumConfig`` from a HF Helium config dict (HF's defaults for absent fields)."""
    if hf.get("mlp_bias"):
        raise ConfigError("config.json: mlp_bias=true is not supported by attnkit's Helium")
    fields = llama_config_fields(hf, HeliumConfig())
    return HeliumConfig(**fields, qkv_bias=True if hf.get("attention_bias") else None)
