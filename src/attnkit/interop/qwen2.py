"""Qwen2 / Qwen2.5 <-> attnkit Qwen2 (``Qwen2ForCausalLM``'s layout): Llama's keys and config
fields (:mod:`attnkit.interop.llama`), with biases on the q/k/v projections alone.

Qwen2's optional sliding-window layers (``use_sliding_window``: a window on the layers from
``max_window_layers`` on, full attention below) are refused with a ``ConfigError``: attnkit's
window applies to every layer. The released Qwen2 and Qwen2.5 checkpoints do not use them.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Qwen2, Qwen2Config

MODEL_TYPE = "qwen2"
MODELS = {"Qwen2": Qwen2}
ARCHITECTURES = {"Qwen2ForCausalLM": "Qwen2"}
BASE_PREFIX = ""
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
key_rules = llama.key_rules  # the same keys as LlamaForCausalLM


def config_to_hf(model) -> dict | None:
    """HF ``Qwen2Config`` fields, or None for a variant ``Qwen2ForCausalLM`` cannot represent
    (biases beyond q/k/v, a sliding window)."""
    c: Qwen2Config = model.config
    fields = llama_fields(c)
    if fields is None or c.bias or not c.qkv_bias or c.sliding_window is not None:
        return None
    return dict(model_type=MODEL_TYPE, **fields, use_sliding_window=False)


def config_from_hf(hf: dict, model_class: type) -> Qwen2Config:
    """``Qwen2Config`` from a HF Qwen2 config dict (HF's defaults for absent fields)."""
    refuse_sliding_layers(hf)
    return Qwen2Config(**llama_config_fields(hf, Qwen2Config()))


def refuse_sliding_layers(hf: dict) -> None:
    """ConfigError when a Qwen config asks for sliding-window layers (Qwen2, Qwen3)."""
    layer_types = hf.get("layer_types") or []
    if hf.get("use_sliding_window") or any(t != "full_attention" for t in layer_types):
        raise ConfigError(f"config.json: use_sliding_window / layer_types ask for sliding-window layers, which "
                          f"attnkit's {hf.get('model_type', 'Qwen')} does not support (full attention on every layer only)")
