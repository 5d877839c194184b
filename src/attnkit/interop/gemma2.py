"""Gemma 2 <-> attnkit Gemma2 (``Gemma2ForCausalLM``'s layout): see :mod:`attnkit.interop.gemma`."""

from __future__ import annotations

from attnkit.interop import gemma
from attnkit.models.gemma import Gemma2, Gemma2Config

MODEL_TYPE = "gemma2"
MODELS = {"Gemma2": Gemma2}
ARCHITECTURES = {"Gemma2ForCausalLM": "Gemma2"}
BASE_PREFIX = gemma.BASE_PREFIX
IGNORED_HF_KEYS = gemma.IGNORED_HF_KEYS
key_rules = gemma.key_rules  # Llama's keys with the four norms per layer


def config_to_hf(model) -> dict | None:
    """HF ``Gemma2Config`` fields, or None for a variant ``Gemma2ForCausalLM`` cannot represent."""
    fields = gemma.windowed_gemma_fields(model.config, set())
    return None if fields is None else dict(model_type=MODEL_TYPE, **fields)


def config_from_hf(hf: dict, model_class: type) -> Gemma2Config:
    """``Gemma2Config`` from a HF Gemma 2 config dict (HF's defaults for absent fields)."""
    defaults = Gemma2Config()
    fields = gemma.gemma_config_fields(hf, defaults, "hidden_activation")
    return Gemma2Config(**fields, **gemma.windowed_fields(hf, defaults))
