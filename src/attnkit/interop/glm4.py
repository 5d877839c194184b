"""GLM-4-0414 <-> attnkit Glm4 (``Glm4ForCausalLM``'s layout): GLM's keys
(:mod:`attnkit.interop.glm`) with ``post_self_attn_layernorm`` and ``post_mlp_layernorm`` on the
sublayers' outputs (attnkit's ``attn_post_norm`` and ``ffn_post_norm``).
"""

from __future__ import annotations

from attnkit.interop import glm, llama
from attnkit.interop.keymap import Rename
from attnkit.models.llama import Glm4, Glm4Config

MODEL_TYPE = "glm4"
MODELS = {"Glm4": Glm4}
ARCHITECTURES = {"Glm4ForCausalLM": "Glm4"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    return glm.key_rules(model) + [
        Rename(n + "attn_post_norm.weight", h + "post_self_attn_layernorm.weight"),
        Rename(n + "ffn_post_norm.weight", h + "post_mlp_layernorm.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``Glm4Config`` fields, or None for a variant ``Glm4ForCausalLM`` cannot represent."""
    c: Glm4Config = model.config
    fields = glm.glm_fields(c, {"sandwich_norm"})
    return None if fields is None or not c.sandwich_norm else dict(model_type=MODEL_TYPE, **fields)


def config_from_hf(hf: dict, model_class: type) -> Glm4Config:
    """``Glm4Config`` from a HF GLM-4-0414 config dict (HF's defaults for absent fields)."""
    return Glm4Config(**glm.glm_config_fields(hf, Glm4Config()))
