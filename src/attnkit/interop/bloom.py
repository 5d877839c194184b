"""BLOOM <-> attnkit Bloom (``BloomForCausalLM``'s layout): ``transformer.word_embeddings`` and
``word_embeddings_layernorm`` (attnkit's ``embed_norm``), ``transformer.h.{i}.input_layernorm``,
``self_attention.query_key_value`` (q, k and v interleaved head by head: regrouped into attnkit's
``qkv_proj``), ``self_attention.dense``, ``post_attention_layernorm``,
``mlp.dense_h_to_4h``/``dense_4h_to_h``, ``transformer.ln_f``, and the tied ``lm_head``.

BLOOM's ALiBi adds ``slope · key position`` (counted from each row's first real token) to the
scores; attnkit adds ``slope · (key - query position)``, which differs by a constant per query
and so gives the same attention. Refused with a ``ConfigError``:
``apply_residual_connection_post_layernorm`` and untied embeddings.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, first_token_id, hf_getter, weight_and_bias
from attnkit.models.bloom import Bloom, BloomConfig

MODEL_TYPE = "bloom"
MODELS = {"Bloom": Bloom}
ARCHITECTURES = {"BloomForCausalLM": "Bloom"}
BASE_PREFIX = "transformer."
IGNORED_HF_KEYS = ()


def key_rules(model) -> list[Rename]:
    c: BloomConfig = model.config
    n, h = "decoder.layers.{i}.", "transformer.h.{i}."
    return [
        Rename("wte.weight", "transformer.word_embeddings.weight"),
        *weight_and_bias("embed_norm", "transformer.word_embeddings_layernorm"),
        *[Rename(n + f"attn.qkv_proj.{p}", h + f"self_attention.query_key_value.{p}", interleaved=(c.n_heads, 3))
          for p in ("weight", "bias")],
        *weight_and_bias(n + "attn.out_proj", h + "self_attention.dense"),
        *weight_and_bias(n + "attn_norm", h + "input_layernorm"),
        *weight_and_bias(n + "ffn_norm", h + "post_attention_layernorm"),
        *weight_and_bias(n + "ffn.fc_in", h + "mlp.dense_h_to_4h"),
        *weight_and_bias(n + "ffn.fc_out", h + "mlp.dense_4h_to_h"),
        *weight_and_bias("decoder.norm", "transformer.ln_f"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def config_to_hf(model) -> dict | None:
    """HF ``BloomConfig`` fields, or None for a variant ``BloomForCausalLM`` cannot represent."""
    c: BloomConfig = model.config
    if (c.positional != "alibi" or c.norm != "layernorm" or not c.bias or c.activation != "gelu_tanh"
            or c.n_kv_heads not in (None, c.n_heads) or c.head_dim not in (None, c.d_model // c.n_heads)
            or c.d_ff not in (None, 4 * c.d_model) or not c.tie_word_embeddings or c.variants() - {"embedding_norm"}
            or not c.embedding_norm):
        return None
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, n_layer=c.n_layers, n_head=c.n_heads,
        layer_norm_epsilon=c.norm_eps, apply_residual_connection_post_layernorm=False, hidden_dropout=c.dropout,
        attention_dropout=c.attn_dropout, initializer_range=c.initializer_range, tie_word_embeddings=True,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
    )


def config_from_hf(hf: dict, model_class: type) -> BloomConfig:
    """``BloomConfig`` from a HF BLOOM config dict (HF's defaults for absent fields; ``n_embed``,
    ``num_hidden_layers`` and ``num_attention_heads`` are read as the older names they replace)."""
    for field in ("apply_residual_connection_post_layernorm",):
        if hf.get(field):
            raise ConfigError(f"config.json: {field}=true is not supported by attnkit's Bloom")
    if hf.get("tie_word_embeddings") is False:
        raise ConfigError("config.json: tie_word_embeddings=false is not supported by attnkit's Bloom")
    get = hf_getter(hf)
    return BloomConfig(
        vocab_size=get("vocab_size", 250880), d_model=get("hidden_size", get("n_embed", 64)),
        n_layers=get("n_layer", get("num_hidden_layers", 2)), n_heads=get("n_head", get("num_attention_heads", 8)),
        d_ff=None, activation="gelu_tanh", norm_eps=get("layer_norm_epsilon", 1e-5),
        dropout=float(get("hidden_dropout", 0.0)), attn_dropout=float(get("attention_dropout", 0.0)),
        initializer_range=get("initializer_range", 0.02), bos_token_id=hf.get("bos_token_id", 1),
        eos_token_id=first_token_id(hf, "eos_token_id", 2), pad_token_id=hf.get("pad_token_id"),
    )
