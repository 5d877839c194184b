"""OLMo 3 <-> attnkit Olmo3 (``Olmo3ForCausalLM``'s layout, OLMo 2's keys: :mod:`attnkit.interop.olmo2`).
Config: OLMo 2's fields plus ``sliding_window`` with ``layer_types`` (attnkit's ``sliding_layers``,
None where they follow the three-in-four pattern) and ``rope_parameters`` keyed by layer type (the
sliding layers' unscaled base is attnkit's ``rope_local_base``).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama, olmo2
from attnkit.interop.gemma import rope_by_layer_type
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import LAYER_TYPES, layer_types_to_hf, llama_config_fields, sliding_layers_from_hf
from attnkit.models.llama import Olmo3, Olmo3Config

MODEL_TYPE = "olmo3"
MODELS = {"Olmo3": Olmo3}
ARCHITECTURES = {"Olmo3ForCausalLM": "Olmo3"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return olmo2.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``Olmo3Config`` fields, or None for a variant ``Olmo3ForCausalLM`` cannot represent."""
    c: Olmo3Config = model.config
    fields = olmo2.olmo2_fields(c, {"sliding_window", "sliding_layers", "rope_local_base"})
    if fields is None or c.sliding_window is None:
        return None
    full = fields.pop("rope_parameters")
    fields["rope_parameters"] = {LAYER_TYPES[1]: full, LAYER_TYPES[0]: {"rope_type": "default",
                                                                        "rope_theta": c.rope_local_base or c.rope_base}}
    if c.rope_scaling is not None and c.rope_local_base is None:
        return None  # the sliding layers would be scaled too, which transformers' OLMo 3 never does
    return dict(model_type=MODEL_TYPE, **fields, sliding_window=c.sliding_window, layer_types=layer_types_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> Olmo3Config:
    """``Olmo3Config`` from a HF OLMo 3 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Olmo3")
    d = Olmo3Config()
    fields = llama_config_fields({k: v for k, v in hf.items() if k not in ("rope_parameters", "rope_scaling")}, d)
    rope = rope_by_layer_type(hf, fields["n_positions"], d.rope_base, d.rope_base)
    if rope["rope_scaling"] is None and rope["rope_local_base"] == rope["rope_base"]:
        rope["rope_local_base"] = None  # one RoPE for every layer
    n = fields["n_layers"]
    window = hf.get("sliding_window", d.sliding_window)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer")
    types = hf.get("layer_types") or [LAYER_TYPES[0] if (i + 1) % 4 else LAYER_TYPES[1] for i in range(n)]
    sliding = sliding_layers_from_hf(types, n)
    return Olmo3Config(**{**fields, **rope}, sliding_window=window,
                       sliding_layers=None if sliding == d.replace(n_layers=n).window_layers else sliding)
