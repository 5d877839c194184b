"""Ministral <-> attnkit Ministral (``MinistralForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`). Config: Mistral's fields plus ``layer_types``: the window on the
``sliding_attention`` layers (attnkit's ``sliding_layers``), none on the others.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import layer_types_to_hf, llama_config_fields, llama_fields, sliding_layers_from_hf
from attnkit.models.llama import Ministral, MinistralConfig

MODEL_TYPE = "ministral"
MODELS = {"Ministral": Ministral}
ARCHITECTURES = {"MinistralForCausalLM": "Ministral"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``MinistralConfig`` fields, or None for a variant ``MinistralForCausalLM`` cannot represent."""
    c: MinistralConfig = model.config
    fields = llama_fields(c, {"sliding_window", "sliding_layers"})
    if fields is None or c.bias:
        return None
    return dict(model_type=MODEL_TYPE, **fields, sliding_window=c.sliding_window, layer_types=layer_types_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> MinistralConfig:
    """``MinistralConfig`` from a HF Ministral config dict (HF's defaults for absent fields)."""
    window = hf.get("sliding_window", MinistralConfig.sliding_window)
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window <= 0):
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer or null")
    fields = llama_config_fields(hf, MinistralConfig())
    n = fields["n_layers"]
    types = hf.get("layer_types") or ["sliding_attention" if window is not None else "full_attention"] * n
    local = sliding_layers_from_hf(types, n)
    every = local == tuple(range(n))
    return MinistralConfig(**fields, sliding_window=window if local else None,
                           sliding_layers=None if every or not local else local)
