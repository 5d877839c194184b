"""Nemotron <-> attnkit Nemotron (``NemotronForCausalLM``'s layout: Llama's keys with Arcee's
squared-ReLU feed-forward, :mod:`attnkit.interop.arcee`, and LayerNorm biases on
``input_layernorm``, ``post_attention_layernorm`` and ``model.norm``, whose weights are stored as an
offset from 1: ``LayerNorm1P``). Config: ``norm_eps``, ``partial_rotary_factor`` of each head
(``rotary_dim``). Refused with a ``ConfigError``: attention biases without feed-forward biases (or
the reverse).
"""

from __future__ import annotations

from attnkit.interop import arcee, llama
from attnkit.interop.keymap import Rename, hf_getter
from attnkit.interop.llama import llama_config_fields, llama_fields, rotary_fraction
from attnkit.models.llama import Nemotron, NemotronConfig

MODEL_TYPE = "nemotron"
MODELS = {"Nemotron": Nemotron}
ARCHITECTURES = {"NemotronForCausalLM": "Nemotron"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS

def key_rules(model) -> list[Rename]:
    return llama.key_rules(model)  # with the LayerNorms' biases


def config_to_hf(model) -> dict | None:
    """HF ``NemotronConfig`` fields, or None for a variant ``NemotronForCausalLM`` cannot represent."""
    c: NemotronConfig = model.config
    fields = llama_fields(c, {"rotary_dim", "norm_bias"}, norm="layernorm_offset", activations=arcee.ACTIVATIONS)
    if fields is None or c.norm_bias is False:
        return None
    fields["rope_parameters"]["partial_rotary_factor"] = (c.rotary_dim or c.dim_per_head) / c.dim_per_head
    eps = fields.pop("rms_norm_eps")
    return dict(model_type=MODEL_TYPE, **fields, norm_eps=eps, attention_bias=c.bias, mlp_bias=c.bias)


def config_from_hf(hf: dict, model_class: type) -> NemotronConfig:
    """``NemotronConfig`` from a HF Nemotron config dict (HF's defaults for absent fields)."""
    bias = llama.uniform_bias(hf, "Nemotron")
    eps = hf_getter(hf)("norm_eps", 1e-5)
    source = {"hidden_act": "relu2", "partial_rotary_factor": 0.5, **hf, "rms_norm_eps": eps}
    fields = llama_config_fields(source, NemotronConfig(), partial_rotary=True, activations=arcee.ACTIVATIONS)
    # the rotated part of each head, of head_dim (not hidden_size // num_attention_heads, as Phi-3 counts it)
    head = fields["head_dim"] or fields["d_model"] // fields["n_heads"]
    rotary = int(head * rotary_fraction(source))
    return NemotronConfig(**{**fields, "rotary_dim": None if rotary == head else rotary}, bias=bias)
