"""dots.llm1 <-> attnkit Dots1 (``Dots1ForCausalLM``'s layout): Qwen3's attention keys (per-head
``q_norm``/``k_norm``), norms and head (:mod:`attnkit.interop.llama`), and DeepSeek-V3's mixture
keys at ``mlp.`` (:mod:`attnkit.interop.deepseek_v3`). Config: Llama's fields, DeepSeekMoE's
(``deepseek_v3.moe_from_hf``), and ``layer_types`` (a window on the ``sliding_attention``
layers). Refused with a ``ConfigError``: ``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import deepseek_v3, llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import layer_types_to_hf, llama_config_fields, llama_fields, sliding_layers_from_hf
from attnkit.models.deepseek import Dots1, Dots1Config

MODEL_TYPE = "dots1"
MODELS = {"Dots1": Dots1}
ARCHITECTURES = {"Dots1ForCausalLM": "Dots1"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = deepseek_v3.MOE_VARIANTS | {"qk_norm", "sliding_window", "sliding_layers"}


def key_rules(model) -> list[Rename]:
    return llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"), shared="shared_experts")


def config_to_hf(model) -> dict | None:
    """HF ``Dots1Config`` fields, or None for a variant ``Dots1ForCausalLM`` cannot represent."""
    c: Dots1Config = model.config
    fields = llama_fields(c, _VARIANTS)
    moe = deepseek_v3.moe_to_hf(c)
    if fields is None or moe is None or c.bias or not c.qk_norm:
        return None
    return dict(model_type=MODEL_TYPE, **{**fields, **moe}, attention_bias=False, sliding_window=c.sliding_window,
                layer_types=layer_types_to_hf(c))


def config_from_hf(hf: dict, model_class: type) -> Dots1Config:
    """``Dots1Config`` from a HF dots.llm1 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Dots1")
    d = Dots1Config()
    get = hf_getter(hf)
    fields = llama_config_fields(hf, d)
    n = fields["n_layers"]
    types = hf.get("layer_types") or ["full_attention"] * n
    local = sliding_layers_from_hf(types, n)
    moe = deepseek_v3.moe_from_hf({"norm_topk_prob": False, "first_k_dense_replace": 0, **hf}, n, d)
    return Dots1Config(**{**fields, **moe},
                       sliding_window=get("sliding_window", 4096) if local else None, sliding_layers=local or None)
