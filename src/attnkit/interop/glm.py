"""GLM-4 <-> attnkit Glm (``GlmForCausalLM``'s layout): Llama's embedding, q/k/v (with biases,
fused into ``qkv_proj``), output, norm and head keys (:mod:`attnkit.interop.llama`), with the
feed-forward's gate and up projections fused in ``mlp.gate_up_proj`` (as Phi-3's). Config:
Llama's fields with ``attention_bias`` (the q/k/v biases) and ``partial_rotary_factor`` (of
``head_dim``: attnkit's ``rotary_dim``, rotated in interleaved pairs). :mod:`attnkit.interop.glm4`
adds GLM-4-0414's output norms.
"""

from __future__ import annotations

from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields, rotary_fraction
from attnkit.models.llama import Glm, GlmConfig

MODEL_TYPE = "glm"
MODELS = {"Glm": Glm}
ARCHITECTURES = {"GlmForCausalLM": "Glm"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
VARIANTS = {"qkv_bias", "rotary_dim", "rope_interleave"}


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    rules = [r for r in llama.key_rules(model) if ".ffn." not in r.native_names[0]]
    return rules + [
        Rename((n + "ffn.fc_gate.weight", n + "ffn.fc_in.weight"), h + "mlp.gate_up_proj.weight"),
        Rename(n + "ffn.fc_out.weight", h + "mlp.down_proj.weight"),
    ]


def glm_fields(c: GlmConfig, variants: set[str] = frozenset()) -> dict | None:
    """The HF config fields of GLM (and GLM-4-0414, with its ``variants``), or None for a variant
    they cannot represent (biases beyond q/k/v, halves rotated instead of pairs)."""
    fields = llama_fields(c, VARIANTS | set(variants))
    if fields is None or c.bias or not c.rope_interleave or c.activation != "swiglu":
        return None
    fields["rope_parameters"]["partial_rotary_factor"] = (c.rotary_dim or c.dim_per_head) / c.dim_per_head
    return dict(fields, attention_bias=bool(c.qkv_bias))


def config_to_hf(model) -> dict | None:
    """HF ``GlmConfig`` fields, or None for a variant ``GlmForCausalLM`` cannot represent."""
    fields = glm_fields(model.config)
    return None if fields is None else dict(model_type=MODEL_TYPE, **fields)


def glm_config_fields(hf: dict, defaults: GlmConfig) -> dict:
    """attnkit config fields from a HF GLM or GLM-4-0414 config dict."""
    fields = llama_config_fields(hf, defaults, partial_rotary=True)
    head = fields["head_dim"] or fields["d_model"] // fields["n_heads"]
    rotary = int(head * rotary_fraction(hf, default=0.5))
    return dict(fields, rotary_dim=None if rotary == head else rotary, qkv_bias=bool(hf.get("attention_bias", True)))


def config_from_hf(hf: dict, model_class: type) -> GlmConfig:
    """``GlmConfig`` from a HF GLM config dict (HF's defaults for absent fields)."""
    return GlmConfig(**glm_config_fields(hf, GlmConfig()))
