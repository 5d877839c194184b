"""EXAONE 4.0 <-> attnkit Exaone4 (``Exaone4ForCausalLM``'s layout: OLMo 2's keys,
:mod:`attnkit.interop.olmo2`, with ``self_attn.{q,k}_norm`` per head). Config: Llama's fields,
``sliding_window`` (null: every layer global, with rotary positions) and ``layer_types`` (or
``sliding_window_pattern``: every n-th layer global, or a string of ``L``/``G`` repeated): the
``sliding_attention`` layers attend within the window with rotary positions, the others over the
whole context without positions (attnkit's ``nope_layers``). Refused with a ``ConfigError``:
``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama, olmo2
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import layer_types_to_hf, llama_config_fields, llama_fields, sliding_layers_from_hf
from attnkit.models.llama import Exaone4, Exaone4Config

MODEL_TYPE = "exaone4"
MODELS = {"Exaone4": Exaone4}
ARCHITECTURES = {"Exaone4ForCausalLM": "Exaone4"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {"qk_norm", "sandwich_norm", "input_norm", "sliding_window", "sliding_layers", "nope_layers"}


def key_rules(model) -> list[Rename]:
    return olmo2.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``Exaone4Config`` fields, or None for a variant ``Exaone4ForCausalLM`` cannot represent."""
    c: Exaone4Config = model.config
    fields = llama_fields(c, _VARIANTS)
    local = set(c.window_layers)
    nope = set(range(c.n_layers)) - local if c.sliding_window is not None else set()
    if (fields is None or c.bias or not c.qk_norm or not c.qk_norm_per_head or not c.sandwich_norm or c.input_norm
            or set(c.nope_layers or ()) != nope):
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=False, sliding_window=c.sliding_window,
                sliding_window_pattern=None, layer_types=layer_types_to_hf(c))


def _layer_types(hf: dict, n: int) -> list[str]:
    pattern = hf.get("sliding_window_pattern", 4)
    if isinstance(pattern, str) and pattern and set(pattern) <= {"L", "G"}:
        return ["sliding_attention" if pattern[i % len(pattern)] == "L" else "full_attention" for i in range(n)]
    if not isinstance(pattern, int) or isinstance(pattern, bool) or pattern < 1:
        raise ConfigError(f"config.json: sliding_window_pattern must be a positive integer or a string of L and G, "
                          f"got {pattern!r}")
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]


def config_from_hf(hf: dict, model_class: type) -> Exaone4Config:
    """``Exaone4Config`` from a HF EXAONE 4.0 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Exaone4")
    get = hf_getter(hf)
    fields = llama_config_fields(hf, Exaone4Config())
    n = fields["n_layers"]
    window = hf.get("sliding_window", 4096)
    if window is None:
        return Exaone4Config(**fields, sliding_window=None, nope_layers=None)
    local = sliding_layers_from_hf(hf.get("layer_types") or _layer_types(hf, n), n)
    return Exaone4Config(**fields, sliding_window=get("sliding_window", 4096), sliding_layers=local or None,
                         nope_layers=tuple(i for i in range(n) if i not in local) or None)
