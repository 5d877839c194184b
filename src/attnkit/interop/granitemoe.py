"""GraniteMoE <-> attnkit GraniteMoe (``GraniteMoeForCausalLM``'s layout: Llama's attention,
norms and head, :mod:`attnkit.interop.llama`, and at ``model.layers.{i}.block_sparse_moe.`` the
router ``router.layer`` and the stacked experts ``input_linear`` ``(E, 2 · d_ff, d_model)``, gate
then up, and ``output_linear`` ``(E, d_model, d_ff)``). Config: Granite's multipliers
(:mod:`attnkit.interop.granite`), ``num_local_experts``, ``num_experts_per_tok``, the auxiliary
loss. Refused with a ``ConfigError``: ``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import granite, llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import (llama_config_fields, llama_fields, router_loss_fields, router_loss_to_hf)
from attnkit.models.llama import GraniteMoe, GraniteMoeConfig

MODEL_TYPE = "granitemoe"
MODELS = {"GraniteMoe": GraniteMoe}
ARCHITECTURES = {"GraniteMoeForCausalLM": "GraniteMoe"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    c: GraniteMoeConfig = model.config
    n, h = "decoder.layers.{i}.ffn.", "model.layers.{i}.block_sparse_moe."
    experts = range(c.n_experts)
    return [r for r in llama.key_rules(model) if ".ffn." not in r.native_names[0]] + [
        Rename(n + "router.weight", h + "router.layer.weight"),
        Rename(tuple(n + f"experts.{j}.{x}.weight" for j in experts for x in ("fc_gate", "fc_in")),
               h + "input_linear.weight", stacked=c.n_experts),
        Rename(tuple(n + f"experts.{j}.fc_out.weight" for j in experts), h + "output_linear.weight",
               stacked=c.n_experts),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``GraniteMoeConfig`` fields, or None for a variant ``GraniteMoeForCausalLM`` cannot represent."""
    c: GraniteMoeConfig = model.config
    fields = llama_fields(c, granite._MULTIPLIERS | {"n_experts"})
    if fields is None or c.bias or not c.normalize_expert_weights:
        return None
    return dict(model_type=MODEL_TYPE, **fields, attention_bias=False, **granite.multipliers_to_hf(c),
                num_local_experts=c.n_experts, num_experts_per_tok=c.experts_per_token, **router_loss_to_hf(c, 0.001))


def config_from_hf(hf: dict, model_class: type) -> GraniteMoeConfig:
    """``GraniteMoeConfig`` from a HF GraniteMoE config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's GraniteMoe")
    get = hf_getter(hf)
    return GraniteMoeConfig(**llama_config_fields(hf, GraniteMoeConfig()), **granite.multipliers_from_hf(hf),
                            n_experts=get("num_local_experts", 8), experts_per_token=get("num_experts_per_tok", 2),
                            **router_loss_fields(hf, 0.001))
