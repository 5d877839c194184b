"""Qwen2 / Qwen2.5 <-> attnkit Qwen2 (``Qwen2ForCausalLM``'s layout): Llama's keys and config
fields (:mod:`attnkit.interop.llama`), with biases on the q/k/v projections alone.

Qwen2's optional sliding-window layers (``use_sliding_window``: a window on the layers from
``max_window_layers`` on, or on those ``layer_types`` names, full attention elsewhere) are read
into ``sliding_window`` and ``sliding_layers``. The released Qwen2 and Qwen2.5 checkpoints do not
use them (``use_sliding_window: false``).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.llama import layer_types_to_hf, llama_config_fields, llama_fields, sliding_layers_from_hf
from attnkit.models.llama import Qwen2, Qwen2Config

MODEL_TYPE = "qwen2"
MODELS = {"Qwen2": Qwen2}
ARCHITECTURES = {"Qwen2ForCausalLM": "Qwen2"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
key_rules = llama.key_rules  # the same keys as LlamaForCausalLM


def config_to_hf(model) -> dict | None:
    """HF ``Qwen2Config`` fields, or None for a variant ``Qwen2ForCausalLM`` cannot represent
    (biases beyond q/k/v)."""
    c: Qwen2Config = model.config
    fields = llama_fields(c, {"qkv_bias", *WINDOW})
    if fields is None or c.bias or not c.qkv_bias:
        return None
    return dict(model_type=MODEL_TYPE, **fields, **window_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> Qwen2Config:
    """``Qwen2Config`` from a HF Qwen2 config dict (HF's defaults for absent fields)."""
    return Qwen2Config(**llama_config_fields(hf, Qwen2Config()), **window_fields(hf, Qwen2Config()))


WINDOW = {"sliding_window", "sliding_layers"}


def window_fields(hf: dict, defaults: Qwen2Config) -> dict:
    """``sliding_window`` and ``sliding_layers`` of a Qwen2 or Qwen3 HF config: none without
    ``use_sliding_window``; else the layers ``layer_types`` names, or those from
    ``max_window_layers`` on (None when that is every layer)."""
    window = hf.get("sliding_window", 4096) if hf.get("use_sliding_window") else None
    if window is None:
        return dict(sliding_window=None, sliding_layers=None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer")
    n = hf.get("num_hidden_layers") or defaults.n_layers
    types = hf.get("layer_types")
    if types is None:  # transformers' fallback
        first = hf.get("max_window_layers", 28)
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
    layers = sliding_layers_from_hf(types, n)
    return dict(sliding_window=window if layers else None, sliding_layers=None if len(layers) in (0, n) else layers)


def window_to_hf(c: Qwen2Config) -> dict:
    """The HF fields of :func:`window_fields`."""
    if c.sliding_window is None:
        return dict(use_sliding_window=False)
    layers = c.window_layers
    return dict(use_sliding_window=True, sliding_window=c.sliding_window, max_window_layers=min(layers),
                layer_types=layer_types_to_hf(c))
