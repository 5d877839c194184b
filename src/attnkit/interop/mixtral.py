"""Mixtral <-> attnkit Mixtral (``MixtralForCausalLM``'s checkpoint layout): Llama's keys and
config fields (:mod:`attnkit.interop.llama`), with each layer's feed-forward a sparse mixture:
``block_sparse_moe.gate`` (attnkit's ``ffn.router``) and ``block_sparse_moe.experts.{j}.w1``,
``w3``, ``w2`` (each expert's ``fc_gate``, ``fc_in``, ``fc_out``), as the checkpoints on the Hub
and ``transformers``' ``save_pretrained`` store them. Config: ``num_local_experts``,
``num_experts_per_tok``, ``sliding_window`` and the auxiliary load-balancing loss
(``output_router_logits`` with ``router_aux_loss_coef``: attnkit's ``router_aux_loss_coef``) and the
router's training-time jitter (``router_jitter_noise``).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields, router_loss_fields, router_loss_to_hf
from attnkit.models.llama import Mixtral, MixtralConfig

MODEL_TYPE = "mixtral"
MODELS = {"Mixtral": Mixtral}
ARCHITECTURES = {"MixtralForCausalLM": "Mixtral"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS


def key_rules(model) -> list[Rename]:
    return llama.moe_key_rules(model, "block_sparse_moe", ("w1", "w3", "w2"))


def config_to_hf(model) -> dict | None:
    """HF ``MixtralConfig`` fields, or None for a variant ``MixtralForCausalLM`` cannot represent
    (biases, a dense feed-forward, another gate than SiLU's)."""
    c: MixtralConfig = model.config
    fields = llama_fields(c, {"n_experts", "sliding_window", "router_jitter_noise"})
    if fields is None or c.bias or c.n_experts is None or c.activation != "swiglu":
        return None
    return dict(model_type=MODEL_TYPE, **fields, num_local_experts=c.n_experts,
                num_experts_per_tok=c.experts_per_token, sliding_window=c.sliding_window,
                router_jitter_noise=c.router_jitter_noise, **router_loss_to_hf(c, 0.001))


def config_from_hf(hf: dict, model_class: type) -> MixtralConfig:
    """``MixtralConfig`` from a HF Mixtral config dict (HF's defaults for absent fields)."""
    window = hf.get("sliding_window")
    if window is not None and (not isinstance(window, int) or window <= 0):
        raise ConfigError(f"config.json: sliding_window={window!r} must be a positive integer or null")
    return MixtralConfig(**llama_config_fields(hf, MixtralConfig()), sliding_window=window,
                         n_experts=hf.get("num_local_experts", 8), experts_per_token=hf.get("num_experts_per_tok", 2),
                         router_jitter_noise=float(hf.get("router_jitter_noise") or 0.0),
                         **router_loss_fields(hf, 0.001))
