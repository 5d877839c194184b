"""Mistral <-> attnkit Mistral (``MistralForCausalLM``'s layout): Llama's keys and config fields
(:mod:`attnkit.interop.llama`) plus ``sliding_window`` (None: full attention)."""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Mistral, MistralConfig

MODEL_TYPE = "mistral"
MODELS = {"Mistral": Mistral}
ARCHITECTURES = {"MistralForCausalLM": "Mistral"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
key_rules = llama.key_rules  # the same keys as LlamaForCausalLM


def config_to_hf(model) -> dict | None:
    """HF ``MistralConfig`` fields, or None for a variant ``MistralForCausalLM`` cannot represent
    (biases)."""
    c: MistralConfig = model.config
    fields = llama_fields(c, {"sliding_window"})
    if fields is None or c.bias:
        return None
    return dict(model_type=MODEL_TYPE, **fields, sliding_window=c.sliding_window)


def config_from_hf(hf: dict, model_class: type) -> MistralConfig:
    """``MistralConfig`` from a HF Mistral config dict (HF's defaults for absent fields)."""
    window = hf.get("sliding_window", MistralConfig.sliding_window)
    if window is not None and (not isinstance(window, int) or window <= 0):
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer or null")
    return MistralConfig(**llama_config_fields(hf, MistralConfig()), sliding_window=window)
