"""GPT-OSS <-> attnkit GptOss (``GptOssForCausalLM``'s layout): Llama's attention (with biases),
norms, embeddings and head (:mod:`attnkit.interop.llama`), plus ``self_attn.sinks`` (attnkit's
``attn.sinks``), ``mlp.router`` (weight and bias) and the stacked experts
``mlp.experts.gate_up_proj`` ``(E, d_model, 2 · d_ff)`` (the gate's and up's outputs alternating),
``gate_up_proj_bias``, ``down_proj`` and ``down_proj_bias`` (attnkit's
``ffn.experts.{j}.fc_gate``/``fc_in``/``fc_out``).

Config: Llama's fields, ``layer_types`` (``sliding_window`` on the ``sliding_attention`` layers),
``num_local_experts``, ``num_experts_per_tok``, ``attention_bias``, YaRN RoPE scaling (the
default when a config gives none, as ``transformers``'), the auxiliary loss. Refused with a
``ConfigError``: ``swiglu_alpha`` and ``swiglu_limit`` other than 1.702 and 7 (the clamped
SwiGLU's constants). Quantised checkpoints (the released MXFP4 experts) are refused for every
family by :func:`attnkit.interop.from_pretrained`.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import (layer_types_to_hf, llama_config_fields, llama_fields, router_loss_fields,
                                   router_loss_to_hf, sliding_layers_from_hf)
from attnkit.models.gpt_oss import GptOss, GptOssConfig
from attnkit.nn.feedforward import SWIGLU_ALPHA, SWIGLU_LIMIT

MODEL_TYPE = "gpt_oss"
MODELS = {"GptOss": GptOss}
ARCHITECTURES = {"GptOssForCausalLM": "GptOss"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {"attn_sinks", "sliding_window", "sliding_layers", "n_experts", "router_bias", "qkv_bias",
             "attn_out_bias"}
_YARN = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
         "original_max_position_embeddings": 4096, "rope_theta": 150000.0}  # transformers' default


def key_rules(model) -> list[Rename]:
    c: GptOssConfig = model.config
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    experts = range(c.n_experts)
    gate_up = lambda p: tuple(n + f"ffn.experts.{j}.{x}.{p}"  # noqa: E731
                              for j in experts for x in ("fc_gate", "fc_in"))
    down = lambda p: tuple(n + f"ffn.experts.{j}.fc_out.{p}" for j in experts)  # noqa: E731
    return [r for r in llama.key_rules(model) if ".ffn." not in r.native_names[0]] + [
        Rename(n + "attn.sinks", h + "self_attn.sinks"),
        Rename(n + "ffn.router.weight", h + "mlp.router.weight"),
        Rename(n + "ffn.router.bias", h + "mlp.router.bias"),
        *[Rename(gate_up(p), h + f"mlp.experts.gate_up_proj{suffix}", transpose=True, stacked=c.n_experts, pairs=True)
          for p, suffix in (("weight", ""), ("bias", "_bias"))],
        *[Rename(down(p), h + f"mlp.experts.down_proj{suffix}", transpose=True, stacked=c.n_experts)
          for p, suffix in (("weight", ""), ("bias", "_bias"))],
    ]


def config_to_hf(model) -> dict | None:
    """HF ``GptOssConfig`` fields, or None for a variant ``GptOssForCausalLM`` cannot represent."""
    c: GptOssConfig = model.config
    if (c.activation != "swiglu_clamped" or not c.bias or not c.attn_sinks or not c.router_bias or c.n_experts is None
            or not c.normalize_expert_weights or c.qkv_bias != c.attn_out_bias):
        return None
    fields = llama_fields(c.replace(activation="swiglu"), _VARIANTS | {"router_aux_loss_coef"})
    if fields is None:
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=c.qkv_bias is not False,
                num_local_experts=c.n_experts, num_experts_per_tok=c.experts_per_token,
                sliding_window=c.sliding_window, layer_types=layer_types_to_hf(c),
                swiglu_alpha=SWIGLU_ALPHA, swiglu_limit=SWIGLU_LIMIT, **router_loss_to_hf(c, 0.001))


def config_from_hf(hf: dict, model_class: type) -> GptOssConfig:
    """``GptOssConfig`` from a HF GPT-OSS config dict (HF's defaults for absent fields)."""
    get = hf_getter(hf)
    if (get("swiglu_alpha", SWIGLU_ALPHA), get("swiglu_limit", SWIGLU_LIMIT)) != (SWIGLU_ALPHA, SWIGLU_LIMIT):
        raise ConfigError(f"config.json: swiglu_alpha={hf.get('swiglu_alpha')} and swiglu_limit="
                          f"{hf.get('swiglu_limit')} are not supported: attnkit's GptOss has GPT-OSS's "
                          f"{SWIGLU_ALPHA} and {SWIGLU_LIMIT}")
    d = GptOssConfig()
    if hf.get("rope_parameters") is None and hf.get("rope_scaling") is None:
        hf = {**hf, "rope_parameters": {**_YARN, "rope_theta": get("rope_theta", _YARN["rope_theta"])}}
    fields = llama_config_fields(hf, d)
    n = fields["n_layers"]
    types = hf.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
    sliding = sliding_layers_from_hf(types, n)
    attention_bias = bool(get("attention_bias", True))
    return GptOssConfig(
        **{**fields, "activation": "swiglu_clamped"}, bias=True,
        qkv_bias=None if attention_bias else False, attn_out_bias=None if attention_bias else False,
        sliding_window=get("sliding_window", 128) if sliding else None, sliding_layers=sliding or None,
        n_experts=get("num_local_experts", d.n_experts), experts_per_token=get("num_experts_per_tok", 4),
        **router_loss_fields(hf, 0.001))
