"""Arcee <-> attnkit Arcee (``ArceeForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`, with a feed-forward of ``mlp.up_proj`` and ``mlp.down_proj`` alone:
a squared ReLU without a gate, ``hidden_act="relu2"``). Nemotron
(:mod:`attnkit.interop.nemotron`) shares the feed-forward.

Refused with a ``ConfigError``: attention biases without feed-forward biases (or the reverse).
"""

from __future__ import annotations

from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Arcee, ArceeConfig

MODEL_TYPE = "arcee"
MODELS = {"Arcee": Arcee}
ARCHITECTURES = {"ArceeForCausalLM": "Arcee"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
ACTIVATIONS = {"relu2": "relu2"}  # HF's name -> attnkit's (the same, both ways)


def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``ArceeConfig`` fields, or None for a variant ``ArceeForCausalLM`` cannot represent."""
    c: ArceeConfig = model.config
    fields = llama_fields(c, activations=ACTIVATIONS)
    return None if fields is None else dict(model_type=MODEL_TYPE, **fields, attention_bias=c.bias, mlp_bias=c.bias)


def config_from_hf(hf: dict, model_class: type) -> ArceeConfig:
    """``ArceeConfig`` from a HF Arcee config dict (HF's defaults for absent fields)."""
    bias = llama.uniform_bias(hf, "Arcee")
    return ArceeConfig(**llama_config_fields({"hidden_act": "relu2", **hf}, ArceeConfig(), activations=ACTIVATIONS),
                       bias=bias)
