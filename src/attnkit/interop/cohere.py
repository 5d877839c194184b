"""Command R / Aya <-> attnkit Cohere (``CohereForCausalLM``'s layout): Llama's keys
(:mod:`attnkit.interop.llama`) with one ``input_layernorm`` per layer, shared by the parallel
attention and feed-forward (no ``post_attention_layernorm``), LayerNorms without bias.

Config: Llama's fields with ``layer_norm_eps``, and ``logit_scale`` (attnkit's ``logits_scaling``
is its inverse). Refused with a ``ConfigError``: ``use_qk_norm`` (Command R+'s per-head query/key
norms, a weight per head) and ``attention_bias``.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.cohere import Cohere, CohereConfig

MODEL_TYPE = "cohere"
MODELS = {"Cohere": Cohere}
ARCHITECTURES = {"CohereForCausalLM": "Cohere"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_VARIANTS = {"parallel_residual", "shared_norm", "rope_interleave", "logits_scaling"}


def key_rules(model) -> list[Rename]:
    return [r for r in llama.key_rules(model) if r.native != "decoder.layers.{i}.ffn_norm.weight"]


def config_to_hf(model) -> dict | None:
    """HF ``CohereConfig`` fields, or None for a variant ``CohereForCausalLM`` cannot represent."""
    c: CohereConfig = model.config
    fields = llama_fields(c, _VARIANTS, norm="layernorm")
    if fields is None or c.bias or not (c.parallel_residual and c.shared_norm and c.rope_interleave):
        return None
    fields["layer_norm_eps"] = fields.pop("rms_norm_eps")
    return dict(model_type=MODEL_TYPE, **fields, logit_scale=1.0 / c.logits_scaling, use_qk_norm=False,
                attention_bias=False)


def config_from_hf(hf: dict, model_class: type) -> CohereConfig:
    """``CohereConfig`` from a HF Cohere config dict (HF's defaults for absent fields)."""
    if hf.get("use_qk_norm") or hf.get("attention_bias"):
        raise ConfigError("config.json: use_qk_norm=true and attention_bias=true are not supported by attnkit's Cohere "
                          "(Command R+'s query/key norms have a weight per head)")
    scale = hf.get("logit_scale", 0.0625)
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(f"config.json: logit_scale must be a positive number, got {scale!r}")
    fields = llama_config_fields({**hf, "rms_norm_eps": hf.get("layer_norm_eps", 1e-5)}, CohereConfig())
    return CohereConfig(**fields, logits_scaling=1.0 / scale)
