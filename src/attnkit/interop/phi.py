"""Phi-1/1.5/2 <-> attnkit Phi (``PhiForCausalLM``'s layout): ``model.embed_tokens``,
``model.layers.{i}.self_attn.{q,k,v}_proj`` (fused into attnkit's ``qkv_proj`` and split back by
head counts, as Llama's) and ``self_attn.dense``, ``mlp.fc1``/``fc2``, the shared
``input_layernorm``, ``model.final_layernorm`` and ``lm_head`` with its bias; biases everywhere.

Config: ``partial_rotary_factor`` (``rotary_dim``), the rotary base and scaling as Llama's,
``layer_norm_eps``, ``resid_pdrop``/``attention_dropout`` (attnkit's ``dropout``/``attn_dropout``).
Refused with a ``ConfigError``: ``qk_layernorm`` (norms with biases over each head's queries and
keys; the released Phi-1, 1.5 and 2 do not use them), activations other than GELU's.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.interop.llama import _rope, rotary_fraction
from attnkit.models.phi import Phi, PhiConfig

MODEL_TYPE = "phi"
MODELS = {"Phi": Phi}
ARCHITECTURES = {"PhiForCausalLM": "Phi"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu"}


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    qkv = [r for r in llama.key_rules(model) if ".attn.qkv_proj." in r.native_names[0] or r.native == "wte.weight"]
    return qkv + [
        *weight_and_bias(n + "attn.out_proj", h + "self_attn.dense"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.fc1"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.fc2"),
        *weight_and_bias(n + "attn_norm", h + "input_layernorm"),
        *weight_and_bias("decoder.norm", "model.final_layernorm"),
        *weight_and_bias("lm_head", "lm_head"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``PhiConfig`` fields, or None for a variant ``PhiForCausalLM`` cannot represent."""
    c: PhiConfig = model.config
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu"}.get(c.activation)
    if (c.positional != "rotary" or c.norm != "layernorm" or not c.bias or act is None or not c.lm_head_bias
            or not (c.parallel_residual and c.shared_norm) or c.head_dim not in (None, c.d_model // c.n_heads)
            or c.variants() - {"rotary_dim", "parallel_residual", "shared_norm", "lm_head_bias"}):
        return None
    head = c.dim_per_head
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model,
        intermediate_size=c.d_ff or 4 * c.d_model,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads or c.n_heads,
        hidden_act=act, max_position_embeddings=c.n_positions, layer_norm_eps=c.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_base,
                         "partial_rotary_factor": (c.rotary_dim or head) / head, **(c.rope_scaling or {})},
        qk_layernorm=False, resid_pdrop=c.dropout, embd_pdrop=c.dropout, attention_dropout=c.attn_dropout,
        tie_word_embeddings=c.tie_word_embeddings, initializer_range=c.initializer_range,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> PhiConfig:
    """``PhiConfig`` from a HF Phi config dict (HF's defaults for absent fields)."""
    d = PhiConfig()
    get = hf_getter(hf)

    if get("qk_layernorm", False):
        raise ConfigError("config.json: qk_layernorm=true is not supported by attnkit's Phi (the released Phi-1, 1.5 "
                          "and 2 have no query/key norms)")
    act = get("hidden_act", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ConfigError(f"config.json: hidden_act={act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    width, heads = get("hidden_size", d.d_model), get("num_attention_heads", d.n_heads)
    rotary_dim = int(width // heads * rotary_fraction(hf, default=0.5))
    n_positions = get("max_position_embeddings", d.n_positions)
    base, scaling = _rope(hf, n_positions, rotary_dim)
    return PhiConfig(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=n_positions, d_model=width,
        n_layers=get("num_hidden_layers", d.n_layers), n_heads=heads,
        n_kv_heads=None if get("num_key_value_heads", heads) == heads else hf["num_key_value_heads"],
        d_ff=get("intermediate_size", d.d_ff), activation=_ACTIVATIONS[act], norm_eps=get("layer_norm_eps", d.norm_eps),
        rope_base=base, rope_scaling=scaling, rotary_dim=None if rotary_dim == width // heads else rotary_dim,
        dropout=float(get("resid_pdrop", 0.0)), attn_dropout=float(get("attention_dropout", 0.0)),
        tie_word_embeddings=bool(get("tie_word_embeddings", False)),
        initializer_range=get("initializer_range", d.initializer_range),
        bos_token_id=hf.get("bos_token_id", d.bos_token_id),
        eos_token_id=first_token_id(hf, "eos_token_id", d.eos_token_id), pad_token_id=hf.get("pad_token_id"),
    )
