"""ERNIE 4.5 MoE <-> attnkit Ernie4_5Moe (``Ernie4_5_MoeForCausalLM``'s layout): ERNIE 4.5's
attention, norms and head (:mod:`attnkit.interop.ernie4_5`), and at ``mlp.`` the router ``gate``
with its score bias ``moe_statics.e_score_correction_bias`` (``(1, E)``), ``experts.{j}`` and
``shared_experts``; dense MLPs off the mixture's layers.

Config: ERNIE 4.5's fields, ``moe_num_experts``, ``moe_k``, ``moe_intermediate_size``,
``moe_num_shared_experts``, ``moe_layer_start_index``/``end_index``/``interval`` (attnkit's
``moe_layers``), the auxiliary loss. Refused with a ``ConfigError``: ``use_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import llama_config_fields, llama_fields, router_loss_fields, router_loss_to_hf
from attnkit.models.llama import Ernie4_5Moe, Ernie4_5MoeConfig

MODEL_TYPE = "ernie4_5_moe"
MODELS = {"Ernie4_5Moe": Ernie4_5Moe}
ARCHITECTURES = {"Ernie4_5_MoeForCausalLM": "Ernie4_5Moe"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {"rope_interleave", "n_experts", "router_score_bias", "shared_expert_d_ff", "shared_expert_gated",
             "moe_layers", "dense_d_ff", "router_aux_loss_coef"}


def key_rules(model) -> list[Rename]:
    rules = llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"), shared="shared_experts")
    return [r for r in rules if not r.native_names[0].endswith("score_bias")] + [
        Rename("decoder.layers.{i}.ffn.score_bias", "model.layers.{i}.mlp.moe_statics.e_score_correction_bias",
               squeeze=True)]


def config_to_hf(model) -> dict | None:
    """HF ``Ernie4_5_MoeConfig`` fields, or None for a variant ``Ernie4_5_MoeForCausalLM`` cannot represent."""
    c: Ernie4_5MoeConfig = model.config
    fields = llama_fields(c, _VARIANTS)
    sparse = c.moe_layers if c.moe_layers is not None else tuple(range(c.n_layers))
    if (fields is None or c.bias or not c.rope_interleave or c.router_scoring != "softmax" or not c.score_bias
            or c.shared_expert_gated or not sparse or c.shared_expert_d_ff is None or c.shared_expert_d_ff % c.d_ff
            or tuple(sparse) != tuple(range(sparse[0], sparse[-1] + 1)) or not c.normalize_expert_weights):
        return None
    return dict(model_type=MODEL_TYPE, **{**fields, "intermediate_size": c.dense_d_ff or c.d_ff}, use_bias=False,
                moe_intermediate_size=c.d_ff, moe_k=c.experts_per_token, moe_num_experts=c.n_experts,
                moe_num_shared_experts=c.shared_expert_d_ff // c.d_ff, moe_layer_start_index=sparse[0],
                moe_layer_end_index=sparse[-1], moe_layer_interval=1, **router_loss_to_hf(c, 0.001))


def config_from_hf(hf: dict, model_class: type) -> Ernie4_5MoeConfig:
    """``Ernie4_5MoeConfig`` from a HF ERNIE 4.5 MoE config dict (HF's defaults for absent fields)."""
    if hf.get("use_bias"):
        raise ConfigError("config.json: use_bias=true is not supported by attnkit's Ernie4_5Moe")
    d = Ernie4_5MoeConfig()
    get = hf_getter(hf)
    fields = llama_config_fields(hf, d)
    n = fields["n_layers"]
    start, end, every = get("moe_layer_start_index", 1), get("moe_layer_end_index", n - 1), get("moe_layer_interval", 1)
    sparse = tuple(i for i in range(n) if (i + 1) % every == 0 and start <= i <= end)
    moe_d_ff = get("moe_intermediate_size", d.d_ff)
    shared = get("moe_num_shared_experts", 0)
    return Ernie4_5MoeConfig(
        **{**fields, "d_ff": moe_d_ff}, n_experts=get("moe_num_experts", d.n_experts),
        experts_per_token=get("moe_k", d.experts_per_token), shared_expert_d_ff=moe_d_ff * shared if shared else None,
        moe_layers=None if sparse == tuple(range(n)) else sparse,
        dense_d_ff=None if sparse == tuple(range(n)) else get("intermediate_size", d.dense_d_ff),
        **router_loss_fields(hf, 0.001))
