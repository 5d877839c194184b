"""StarCoder2 <-> attnkit Starcoder2 (``Starcoder2ForCausalLM``'s layout): Llama's embedding, q/k/v
(fused into ``qkv_proj`` and split back by head counts) and output keys, here with biases
(:mod:`attnkit.interop.llama`), ``mlp.c_fc``/``mlp.c_proj`` (attnkit's ``fc_in``/``fc_out``),
LayerNorms with biases (``input_layernorm``, ``post_attention_layernorm``, ``model.norm``) and
``lm_head`` (absent when tied).

Config: ``norm_epsilon``, ``use_bias``, ``sliding_window``, the rotary base and scaling as Llama's,
``residual_dropout`` and ``attention_dropout`` (attnkit's ``dropout``, ``attn_dropout``).
Refused with a ``ConfigError``: ``use_bias=false`` (the LayerNorms would keep theirs; the released
checkpoints have biases), activations other than GELU's.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop import llama
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.interop.llama import _rope
from attnkit.models.starcoder2 import Starcoder2, Starcoder2Config

MODEL_TYPE = "starcoder2"
MODELS = {"Starcoder2": Starcoder2}
ARCHITECTURES = {"Starcoder2ForCausalLM": "Starcoder2"}
BASE_PREFIX = llama.BASE_PREFIX
IGNORED_HF_KEYS = llama.IGNORED_HF_KEYS
_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}


def key_rules(model) -> list[Rename]:
    n, h = "decoder.layers.{i}.", "model.layers.{i}."
    attention = [r for r in llama.key_rules(model) if ".attn." in r.native_names[0] or r.native == "wte.weight"
                 or r.native == "lm_head.weight"]
    return attention + [
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.c_fc"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.c_proj"),
        *weight_and_bias(n + "attn_norm", h + "input_layernorm"),
        *weight_and_bias(n + "ffn_norm", h + "post_attention_layernorm"),
        *weight_and_bias("decoder.norm", "model.norm"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``Starcoder2Config`` fields, or None for a variant ``Starcoder2ForCausalLM`` cannot
    represent (no biases, RMSNorm, a gated feed-forward, learned positions, a head size of its own)."""
    c: Starcoder2Config = model.config
    act = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}.get(c.activation)
    if (c.positional != "rotary" or c.norm != "layernorm" or not c.bias or act is None
            or c.head_dim not in (None, c.d_model // c.n_heads) or c.variants() - {"sliding_window"}):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model,
        intermediate_size=c.d_ff or 4 * c.d_model,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads or c.n_heads,
        hidden_act=act, max_position_embeddings=c.n_positions, norm_epsilon=c.norm_eps, use_bias=True,
        rope_parameters={"rope_theta": c.rope_base, **(c.rope_scaling or {"rope_type": "default"})},
        sliding_window=c.sliding_window, residual_dropout=c.dropout, embedding_dropout=c.dropout,
        attention_dropout=c.attn_dropout, tie_word_embeddings=c.tie_word_embeddings,
        initializer_range=c.initializer_range, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> Starcoder2Config:
    """``Starcoder2Config`` from a HF StarCoder2 config dict (HF's defaults for absent fields)."""
    d = Starcoder2Config()
    get = hf_getter(hf)

    if not get("use_bias", True):
        raise ConfigError("config.json: use_bias=false is not supported by attnkit's Starcoder2 (its LayerNorms would "
                          "keep their biases; the released checkpoints have biases)")
    act = get("hidden_act", "gelu_pytorch_tanh")
    if act not in _ACTIVATIONS:
        raise ConfigError(f"config.json: hidden_act={act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    n_positions = get("max_position_embeddings", d.n_positions)
    base, scaling = _rope(hf, n_positions)
    return Starcoder2Config(
        vocab_size=get("vocab_size", d.vocab_size), n_positions=n_positions, d_model=get("hidden_size", d.d_model),
        n_layers=get("num_hidden_layers", d.n_layers), n_heads=get("num_attention_heads", d.n_heads),
        n_kv_heads=get("num_key_value_heads", d.n_kv_heads), d_ff=get("intermediate_size", d.d_ff),
        activation=_ACTIVATIONS[act], norm_eps=get("norm_epsilon", d.norm_eps), rope_base=base, rope_scaling=scaling,
        sliding_window=hf.get("sliding_window"), dropout=float(get("residual_dropout", 0.0)),
        attn_dropout=float(get("attention_dropout", 0.0)), tie_word_embeddings=bool(get("tie_word_embeddings", True)),
        initializer_range=get("initializer_range", d.initializer_range),
        bos_token_id=hf.get("bos_token_id", d.bos_token_id),
        eos_token_id=first_token_id(hf, "eos_token_id", d.eos_token_id), pad_token_id=hf.get("pad_token_id"),
    )
