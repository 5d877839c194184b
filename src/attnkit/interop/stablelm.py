"""StableLM <-> attnkit StableLm (``StableLmForCausalLM``'s layout: Llama's keys,
:mod:`attnkit.interop.llama`, with LayerNorm biases on ``input_layernorm``,
``post_attention_layernorm`` and ``model.norm``; q/k/v biases with ``use_qkv_bias``).

Config: Llama's fields, ``layer_norm_eps``, ``partial_rotary_factor`` (``rotary_dim``),
``use_qkv_bias`` (``qkv_bias``), ``use_parallel_residual`` (one LayerNorm before attention and
the feed-forward side by side: ``parallel_residual`` with ``shared_norm``). Refused with a
``ConfigError``: ``qk_layernorm`` (StableLM 2 12B's per-head norms, each head with its own
weights).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import StableLm, StableLmConfig

MODEL_TYPE = "stablelm"
MODELS = {"StableLm": StableLm}
ARCHITECTURES = {"StableLmForCausalLM": "StableLm"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS

def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)  # with the LayerNorms' biases


def config_to_hf(model) -> dict | None:
    """HF ``StableLmConfig`` fields, or None for a variant ``StableLmForCausalLM`` cannot represent
    (linear biases beyond q/k/v, no LayerNorm biases, two norms for parallel sublayers)."""
    c: StableLmConfig = model.config
    fields = llama_fields(c, {"rotary_dim", "qkv_bias", "norm_bias", "parallel_residual", "shared_norm"},
                          norm="layernorm")
    if fields is None or c.bias or not c.norm_bias or c.parallel_residual != c.shared_norm:
        return None
    fields["rope_parameters"]["partial_rotary_factor"] = (c.rotary_dim or c.dim_per_head) / c.dim_per_head
    eps = fields.pop("rms_norm_eps")
    return dict(model_type=MODEL_TYPE, **fields, layer_norm_eps=eps, use_qkv_bias=bool(c.qkv_bias),
                qk_layernorm=False, use_parallel_residual=c.parallel_residual, hidden_dropout=c.dropout)


def config_from_hf(hf: dict, model_class: type) -> StableLmConfig:
    """``StableLmConfig`` from a HF StableLM config dict (HF's defaults for absent fields)."""
    if hf.get("qk_layernorm"):
        raise ConfigError("config.json: qk_layernorm=true (a LayerNorm of its own for each head's queries and keys) "
                          "is not supported by attnkit's StableLm")
    d = StableLmConfig()
    get = hf_getter(hf)
    fields = llama_config_fields({"partial_rotary_factor": 0.25, **hf, "rms_norm_eps": get("layer_norm_eps", 1e-5)},
                                 d, partial_rotary=True)
    parallel = bool(get("use_parallel_residual", False))
    return StableLmConfig(**fields, qkv_bias=bool(get("use_qkv_bias", False)), parallel_residual=parallel,
                          shared_norm=parallel, dropout=float(get("hidden_dropout", 0.0)))
