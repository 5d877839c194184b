"""Qwen3-MoE <-> attnkit Qwen3Moe (``Qwen3MoeForCausalLM``'s checkpoint layout): Qwen3's keys and
config fields (:mod:`attnkit.interop.qwen3`) with a sparse mixture in every layer:
``mlp.gate`` (attnkit's ``ffn.router``) and ``mlp.experts.{j}.{gate,up,down}_proj``. Config:
``num_experts``, ``num_experts_per_tok``, ``moe_intermediate_size`` (attnkit's ``d_ff``) and
``norm_topk_prob`` (``normalize_expert_weights``).

Dense layers among the sparse ones (``mlp_only_layers``, ``decoder_sparse_step``) are read into
``moe_layers`` and ``dense_d_ff`` (``intermediate_size``). Refused with a ``ConfigError``:
attention biases, sliding-window layers.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import (llama_config_fields, llama_fields, moe_layers_from_hf, moe_layers_to_hf,
                                  router_loss_fields, router_loss_to_hf)
from attnkit.models.llama import Qwen3Moe, Qwen3MoeConfig

MODEL_TYPE = "qwen3_moe"
MODELS = {"Qwen3Moe": Qwen3Moe}
ARCHITECTURES = {"Qwen3MoeForCausalLM": "Qwen3Moe"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"))


def config_to_hf(model) -> dict | None:
    """HF ``Qwen3MoeConfig`` fields, or None for a variant ``Qwen3MoeForCausalLM`` cannot represent
    (biases, no query/key norms, a dense feed-forward, another gate than SiLU's)."""
    c: Qwen3MoeConfig = model.config
    fields = llama_fields(c, {"qk_norm", "n_experts", "normalize_expert_weights", "moe_layers", "dense_d_ff"})
    if fields is None or c.bias or not c.qk_norm or c.n_experts is None or c.activation != "swiglu":
        return None
    return dict(model_type=MODEL_TYPE, **{**fields, **moe_layers_to_hf(c)}, moe_intermediate_size=c.d_ff,
                num_experts=c.n_experts, num_experts_per_tok=c.experts_per_token,
                norm_topk_prob=c.normalize_expert_weights, attention_bias=False, use_sliding_window=False,
                **router_loss_to_hf(c, 0.001))


def config_from_hf(hf: dict, model_class: type) -> Qwen3MoeConfig:
    """``Qwen3MoeConfig`` from a HF Qwen3-MoE config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias") or hf.get("use_sliding_window"):
        raise ConfigError("config.json: attention_bias=true and use_sliding_window=true are not supported by "
                          "attnkit's Qwen3Moe (no released checkpoint uses them)")
    defaults = Qwen3MoeConfig()
    fields = llama_config_fields(hf, defaults)
    fields.update(head_dim=hf.get("head_dim") or fields["d_model"] // fields["n_heads"],
                  d_ff=hf.get("moe_intermediate_size", 768), **moe_layers_from_hf(hf, fields["n_layers"], 6144))
    experts = hf.get("num_experts", hf.get("num_local_experts", 128))  # transformers writes the latter
    return Qwen3MoeConfig(**fields, n_experts=experts, experts_per_token=hf.get("num_experts_per_tok", 8),
                          normalize_expert_weights=bool(hf.get("norm_topk_prob", False)),
                          **router_loss_fields(hf, 0.001))
