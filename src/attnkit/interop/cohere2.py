"""Command R7B / Command A <-> attnkit Cohere2 (``Cohere2ForCausalLM``'s layout: Command R's keys,
:mod:`attnkit.interop.cohere`). Config: Command R's fields, ``sliding_window`` and ``layer_types``
(or the older ``sliding_window_pattern``): the ``sliding_attention`` layers attend within the
window with rotary positions, the others over the whole context without positions
(``nope_layers``). Refused with a ``ConfigError``: ``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import cohere, llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import layer_types_to_hf, llama_config_fields, llama_fields, sliding_layers_from_hf
from attnkit.models.cohere import Cohere2, Cohere2Config

MODEL_TYPE = "cohere2"
MODELS = {"Cohere2": Cohere2}
ARCHITECTURES = {"Cohere2ForCausalLM": "Cohere2"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {*cohere._VARIANTS, "sliding_window", "sliding_layers", "nope_layers"}


def key_rules(model) -> list[Rename]:
    return cohere.key_rules(model)


def config_to_hf(model) -> dict | None:
    """HF ``Cohere2Config`` fields, or None for a variant ``Cohere2ForCausalLM`` cannot represent
    (rotary positions on a global layer, or none on a windowed one)."""
    c: Cohere2Config = model.config
    fields = llama_fields(c, _VARIANTS, norm="layernorm")
    local = set(c.window_layers)
    if (fields is None or c.bias or not (c.parallel_residual and c.shared_norm and c.rope_interleave)
            or c.sliding_window is None or set(c.nope_layers or ()) != set(range(c.n_layers)) - local):
        return None
    fields["layer_norm_eps"] = fields.pop("rms_norm_eps")
    return dict(model_type=MODEL_TYPE, **fields, logit_scale=1.0 / c.logits_scaling, attention_bias=False,
                sliding_window=c.sliding_window, layer_types=layer_types_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> Cohere2Config:
    """``Cohere2Config`` from a HF Cohere 2 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Cohere2")
    get = hf_getter(hf)
    scale = get("logit_scale", 0.0625)
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(f"config.json: logit_scale must be a positive number, got {scale!r}")
    fields = llama_config_fields({**hf, "rms_norm_eps": get("layer_norm_eps", 1e-5)}, Cohere2Config())
    n = fields["n_layers"]
    every = get("sliding_window_pattern", 4)
    types = hf.get("layer_types") or ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(n)]
    local = sliding_layers_from_hf(types, n)
    return Cohere2Config(**fields, logits_scaling=1.0 / scale, sliding_window=get("sliding_window", 4096),
                         sliding_layers=local, nope_layers=tuple(i for i in range(n) if i not in local) or None)
