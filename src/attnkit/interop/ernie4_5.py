"""ERNIE 4.5 (dense) <-> attnkit Ernie4_5 (``Ernie4_5ForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`). Config: Llama's fields with ``use_bias`` (biases everywhere or
nowhere); the rotary pairs are interleaved (attnkit's ``rope_interleave``), as in every ERNIE 4.5.
"""

from __future__ import annotations

from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Ernie4_5, Ernie4_5Config

MODEL_TYPE = "ernie4_5"
MODELS = {"Ernie4_5": Ernie4_5}
ARCHITECTURES = {"Ernie4_5ForCausalLM": "Ernie4_5"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``Ernie4_5Config`` fields, or None for a variant ``Ernie4_5ForCausalLM`` cannot represent."""
    c: Ernie4_5Config = model.config
    fields = llama_fields(c, {"rope_interleave"})
    if fields is None or not c.rope_interleave:
        return None
    return dict(model_type=MODEL_TYPE, **fields, use_bias=c.bias)


def config_from_hf(hf: dict, model_class: type) -> Ernie4_5Config:
    """``Ernie4_5Config`` from a HF ERNIE 4.5 config dict (HF's defaults for absent fields)."""
    return Ernie4_5Config(**llama_config_fields(hf, Ernie4_5Config()), bias=bool(hf.get("use_bias", False)))
