"""Qwen2-MoE <-> attnkit Qwen2Moe (``Qwen2MoeForCausalLM``'s checkpoint layout: Qwen1.5-MoE,
Qwen2-57B-A14B): Qwen2's keys and config fields (:mod:`attnkit.interop.qwen2`) with a sparse
mixture in every layer, ``mlp.gate`` and ``mlp.experts.{j}.{gate,up,down}_proj``, plus the
shared expert every token runs, ``mlp.shared_expert.*``, gated by ``mlp.shared_expert_gate``.
Config: ``num_experts``, ``num_experts_per_tok``, ``moe_intermediate_size`` (attnkit's ``d_ff``),
``shared_expert_intermediate_size``, ``norm_topk_prob`` and ``qkv_bias``.

Dense layers among the sparse ones (``mlp_only_layers``, ``decoder_sparse_step``) are read into
``moe_layers`` and ``dense_d_ff`` (``intermediate_size``). Refused with a ``ConfigError``:
sliding-window layers.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import (llama_config_fields, llama_fields, moe_layers_from_hf, moe_layers_to_hf,
                                  router_loss_fields, router_loss_to_hf)
from attnkit.models.llama import Qwen2Moe, Qwen2MoeConfig

MODEL_TYPE = "qwen2_moe"
MODELS = {"Qwen2Moe": Qwen2Moe}
ARCHITECTURES = {"Qwen2MoeForCausalLM": "Qwen2Moe"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_MOE = {"n_experts", "normalize_expert_weights", "shared_expert_d_ff", "qkv_bias", "moe_layers", "dense_d_ff"}


def key_rules(model) -> list[Rename]:
    return llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"))


def config_to_hf(model) -> dict | None:
    """HF ``Qwen2MoeConfig`` fields, or None for a variant ``Qwen2MoeForCausalLM`` cannot represent
    (biases beyond q/k/v, no shared expert, a dense feed-forward, another gate than SiLU's)."""
    c: Qwen2MoeConfig = model.config
    fields = llama_fields(c, _MOE)
    if fields is None or c.bias or c.n_experts is None or c.shared_expert_d_ff is None or c.activation != "swiglu":
        return None
    return dict(model_type=MODEL_TYPE, **{**fields, **moe_layers_to_hf(c)}, moe_intermediate_size=c.d_ff,
                num_experts=c.n_experts, num_experts_per_tok=c.experts_per_token,
                norm_topk_prob=c.normalize_expert_weights, shared_expert_intermediate_size=c.shared_expert_d_ff,
                qkv_bias=bool(c.qkv_bias), use_sliding_window=False, **router_loss_to_hf(c, 0.001))


def config_from_hf(hf: dict, model_class: type) -> Qwen2MoeConfig:
    """``Qwen2MoeConfig`` from a HF Qwen2-MoE config dict (HF's defaults for absent fields)."""
    if hf.get("use_sliding_window"):
        raise ConfigError("config.json: use_sliding_window=true is not supported by attnkit's Qwen2Moe")
    fields = llama_config_fields(hf, Qwen2MoeConfig())
    fields.update(d_ff=hf.get("moe_intermediate_size", 1408), **moe_layers_from_hf(hf, fields["n_layers"], 5632))
    return Qwen2MoeConfig(**fields, qkv_bias=bool(hf.get("qkv_bias", True)),
                          n_experts=hf.get("num_experts", hf.get("num_local_experts", 60)),
                          experts_per_token=hf.get("num_experts_per_tok", 4),
                          normalize_expert_weights=bool(hf.get("norm_topk_prob", False)),
                          shared_expert_d_ff=hf.get("shared_expert_intermediate_size", 5632),
                          **router_loss_fields(hf, 0.001))
