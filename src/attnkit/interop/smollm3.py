"""SmolLM3 <-> attnkit SmolLM3 (``SmolLM3ForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`). Config: Llama's fields plus ``no_rope_layers`` (1 = rotary
positions, 0 = none; else every ``no_rope_layer_interval``-th layer has none), read into
attnkit's ``nope_layers``. Refused with a ``ConfigError``: ``use_sliding_window`` (the released
checkpoints attend over the whole context) and biases on attention but not the MLP.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import SmolLM3, SmolLM3Config

MODEL_TYPE = "smollm3"
MODELS = {"SmolLM3": SmolLM3}
ARCHITECTURES = {"SmolLM3ForCausalLM": "SmolLM3"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``SmolLM3Config`` fields, or None for a variant ``SmolLM3ForCausalLM`` cannot represent."""
    c: SmolLM3Config = model.config
    fields = llama_fields(c, {"nope_layers"})
    if fields is None:
        return None
    nope = set(c.nope_layers or ())
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=c.bias, mlp_bias=c.bias, use_sliding_window=False,
                no_rope_layers=[int(i not in nope) for i in range(c.n_layers)])


def config_from_hf(hf: dict, model_class: type) -> SmolLM3Config:
    """``SmolLM3Config`` from a HF SmolLM3 config dict (HF's defaults for absent fields)."""
    if hf.get("use_sliding_window"):
        raise ConfigError("config.json: use_sliding_window=true is not supported by attnkit's SmolLM3")
    bias = llama.uniform_bias(hf, "SmolLM3")
    fields = llama_config_fields(hf, SmolLM3Config())
    n = fields["n_layers"]
    flags = hf.get("no_rope_layers")
    if flags is None:
        every = hf.get("no_rope_layer_interval") or 4
        flags = [int((i + 1) % every != 0) for i in range(n)]
    if not isinstance(flags, list) or len(flags) != n or any(f not in (0, 1) for f in flags):
        raise ConfigError(f"config.json: no_rope_layers must list {n} flags of 0 or 1, got {flags!r}")
    return SmolLM3Config(**fields, bias=bias,
                         nope_layers=tuple(i for i, f in enumerate(flags) if not f))
