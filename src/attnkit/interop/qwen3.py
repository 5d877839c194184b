"""Qwen3 <-> attnkit Qwen3 (``Qwen3ForCausalLM``'s layout): Llama's keys and config fields
(:mod:`attnkit.interop.llama`) plus ``self_attn.{q,k}_norm`` and an explicit ``head_dim``.

Sliding-window layers are read as Qwen2's (:mod:`attnkit.interop.qwen2`). Refused with a
``ConfigError``: ``attention_bias`` (the released checkpoints have none).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.interop.qwen2 import WINDOW, window_fields, window_to_hf
from attnkit.models.llama import Qwen3, Qwen3Config

MODEL_TYPE = "qwen3"
MODELS = {"Qwen3": Qwen3}
ARCHITECTURES = {"Qwen3ForCausalLM": "Qwen3"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
key_rules = llama.key_rules  # LlamaForCausalLM's keys and the q/k norms


def config_to_hf(model) -> dict | None:
    """HF ``Qwen3Config`` fields, or None for a variant ``Qwen3ForCausalLM`` cannot represent
    (biases, no query/key norms, LayerNorm)."""
    c: Qwen3Config = model.config
    fields = llama_fields(c, {"qk_norm", *WINDOW})
    if fields is None or c.bias or not c.qk_norm:
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=False, **window_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> Qwen3Config:
    """``Qwen3Config`` from a HF Qwen3 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Qwen3 (no released "
                          "checkpoint has attention biases)")
    fields = llama_config_fields(hf, Qwen3Config())
    fields["head_dim"] = hf.get("head_dim") or Qwen3Config.head_dim  # explicit, even where it is d_model // n_heads
    return Qwen3Config(**fields, **window_fields(hf, Qwen3Config()))
