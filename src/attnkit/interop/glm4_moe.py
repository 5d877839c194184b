"""GLM-4.5 <-> attnkit Glm4Moe (``Glm4MoeForCausalLM``'s layout): Llama's attention keys (q/k/v
biases with ``attention_bias``, per-head ``q_norm``/``k_norm`` with ``use_qk_norm``), norms and
head (:mod:`attnkit.interop.llama`), and DeepSeek-V3's mixture keys at ``mlp.``
(:mod:`attnkit.interop.deepseek_v3`: ``gate`` with its ``e_score_correction_bias``,
``experts.{j}``, ``shared_experts``; dense MLPs on the first ``first_k_dense_replace`` layers).
The multi-token-prediction layer after the last is skipped, as ``transformers`` skips it.

Config: Llama's fields with ``partial_rotary_factor`` (default 0.5) of ``head_dim`` rotated in
halves, and DeepSeekMoE's (``deepseek_v3.moe_from_hf``).
"""

from __future__ import annotations

from attnkit.interop import deepseek_v3, llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields, rotary_fraction
from attnkit.models.deepseek import Glm4Moe, Glm4MoeConfig

MODEL_TYPE = "glm4_moe"
MODELS = {"Glm4Moe": Glm4Moe}
ARCHITECTURES = {"Glm4MoeForCausalLM": "Glm4Moe"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
EXTRA_LAYERS = "model.layers."  # the multi-token-prediction layer
_VARIANTS = deepseek_v3.MOE_VARIANTS | {"rotary_dim", "qkv_bias", "qk_norm"}


def key_rules(model) -> list[Rename]:
    return llama.moe_key_rules(model, "mlp", ("gate_proj", "up_proj", "down_proj"), shared="shared_experts")


def config_to_hf(model) -> dict | None:
    """HF ``Glm4MoeConfig`` fields, or None for a variant ``Glm4MoeForCausalLM`` cannot represent."""
    c: Glm4MoeConfig = model.config
    fields = llama_fields(c, _VARIANTS)
    moe = deepseek_v3.moe_to_hf(c)
    if fields is None or moe is None or c.bias:
        return None
    fields["rope_parameters"]["partial_rotary_factor"] = (c.rotary_dim or c.dim_per_head) / c.dim_per_head
    return dict(model_type=MODEL_TYPE, **{**fields, **moe}, attention_bias=bool(c.qkv_bias), use_qk_norm=c.qk_norm)


def config_from_hf(hf: dict, model_class: type) -> Glm4MoeConfig:
    """``Glm4MoeConfig`` from a HF GLM-4.5 config dict (HF's defaults for absent fields)."""
    d = Glm4MoeConfig()
    source = {"partial_rotary_factor": 0.5, **hf}
    fields = llama_config_fields(source, d, partial_rotary=True)
    head = fields["head_dim"] or fields["d_model"] // fields["n_heads"]
    rotary = int(head * rotary_fraction(source))  # of head_dim, as GLM's rotary embedding counts it
    fields["rotary_dim"] = None if rotary == head else rotary
    return Glm4MoeConfig(**{**fields, **deepseek_v3.moe_from_hf(hf, fields["n_layers"], d)},
                         qkv_bias=True if hf.get("attention_bias") else None, qk_norm=bool(hf.get("use_qk_norm")))
