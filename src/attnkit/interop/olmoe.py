"""OLMoE <-> attnkit Olmoe (``OlmoeForCausalLM``'s checkpoint layout): Llama's keys and config
fields (:mod:`attnkit.interop.llama`) with ``self_attn.{q,k}_norm`` over all heads' queries and
keys, and a sparse mixture in every layer: ``mlp.gate`` (attnkit's ``ffn.router``) and
``mlp.experts.{j}.{gate,up,down}_proj``. Config: ``num_experts``, ``num_experts_per_tok``,
``intermediate_size`` (each expert's size, attnkit's ``d_ff``), ``norm_topk_prob``
(``normalize_expert_weights``), ``clip_qkv`` (queries, keys and values clamped) and the
auxiliary loss (``output_router_logits``, ``router_aux_loss_coef``).

Refused with a ``ConfigError``: ``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields, router_loss_fields, router_loss_to_hf
from attnkit.models.llama import Olmoe, OlmoeConfig

MODEL_TYPE = "olmoe"
MODELS = {"Olmoe": Olmoe}
ARCHITECTURES = {"OlmoeForCausalLM": "Olmoe"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {"qk_norm", "qk_norm_per_head", "n_experts", "normalize_expert_weights", "clip_qkv"}


def key_rules(model) -> list[Rename]:
    return llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"))


def config_to_hf(model) -> dict | None:
    """HF ``OlmoeConfig`` fields, or None for a variant ``OlmoeForCausalLM`` cannot represent
    (biases, per-head or no query/key norms, a dense feed-forward, another gate than SiLU's)."""
    c: OlmoeConfig = model.config
    fields = llama_fields(c, _VARIANTS)
    if (fields is None or c.bias or not c.qk_norm or c.qk_norm_per_head or c.n_experts is None
            or c.activation != "swiglu" or c.head_dim not in (None, c.d_model // c.n_heads)):
        return None
    return dict(model_type=MODEL_TYPE, **fields, num_experts=c.n_experts, num_experts_per_tok=c.experts_per_token,
                norm_topk_prob=c.normalize_expert_weights, clip_qkv=c.clip_qkv, attention_bias=False,
                **router_loss_to_hf(c, 0.01))


def config_from_hf(hf: dict, model_class: type) -> OlmoeConfig:
    """``OlmoeConfig`` from a HF OLMoE config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Olmoe (the released OLMoE "
                          "checkpoints have none)")
    return OlmoeConfig(**llama_config_fields(hf, OlmoeConfig()), n_experts=hf.get("num_experts", 64),
                       experts_per_token=hf.get("num_experts_per_tok", 8),
                       normalize_expert_weights=bool(hf.get("norm_topk_prob", False)), clip_qkv=hf.get("clip_qkv"),
                       **router_loss_fields(hf, 0.01))
