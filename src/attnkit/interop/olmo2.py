"""OLMo 2 <-> attnkit Olmo2 (``Olmo2ForCausalLM``'s layout): Llama's keys and config fields
(:mod:`attnkit.interop.llama`) without the input norms, with ``post_attention_layernorm`` and
``post_feedforward_layernorm`` on the sublayers' outputs (attnkit's ``attn_post_norm`` and
``ffn_post_norm``) and ``self_attn.{q,k}_norm`` over all heads' queries and keys.

Refused with a ``ConfigError``: ``attention_bias`` (the released checkpoints have none).
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename
from attnkit.interop.llama import llama_config_fields, llama_fields
from attnkit.models.llama import Olmo2, Olmo2Config

MODEL_TYPE = "olmo2"
MODELS = {"Olmo2": Olmo2}
ARCHITECTURES = {"Olmo2ForCausalLM": "Olmo2"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_NORMS = {"qk_norm", "qk_norm_per_head", "sandwich_norm", "input_norm"}


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    inputs = {n + "attn_norm.weight", n + "ffn_norm.weight"}  # Llama's input norms: none here
    return [r for r in llama.key_rules(model) if r.native not in inputs] + [
        Rename(n + "attn_post_norm.weight", h + "post_attention_layernorm.weight"),
        Rename(n + "ffn_post_norm.weight", h + "post_feedforward_layernorm.weight"),
    ]


def olmo2_fields(c: Olmo2Config, variants: set[str] = frozenset()) -> dict | None:
    """The HF config fields of OLMo 2 (and OLMo 3, with its ``variants``), or None for a variant
    they cannot represent (biases, norms placed otherwise, a head size of its own)."""
    fields = llama_fields(c, _NORMS | set(variants))
    if (fields is None or c.bias or c.variants() & _NORMS != _NORMS or c.head_dim not in (None, c.d_model // c.n_heads)):
        return None
    return dict(fields, attention_bias=False)


def config_to_hf(model) -> dict | None:
    """HF ``Olmo2Config`` fields, or None for a variant ``Olmo2ForCausalLM`` cannot represent."""
    fields = olmo2_fields(model.config)
    return None if fields is None else dict(model_type=MODEL_TYPE, **fields)


def config_from_hf(hf: dict, model_class: type) -> Olmo2Config:
    """``Olmo2Config`` from a HF OLMo 2 config dict (HF's defaults for absent fields)."""
    if hf.get("attention_bias"):
        raise ConfigError("config.json: attention_bias=true is not supported by attnkit's Olmo2 (no released "
                          "checkpoint has attention biases)")
    return Olmo2Config(**llama_config_fields(hf, Olmo2Config()))
