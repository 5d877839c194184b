"""ESM <-> attnkit Esm and heads: config fields and state-dict keys (ESM-2: rotary positions,
no embedding LayerNorm; ESM-1b: a learned position table and ``emb_layer_norm_before``).

Hugging Face keeps separate ``query``/``key``/``value`` projections; attnkit fuses them into
one ``qkv_proj``. Head models prefix the encoder's keys with ``esm.``; a bare ``EsmModel``
checkpoint has none. The masked-LM head is BERT's (``transform``, ``transform_norm``,
``decoder`` tied to the word embeddings, whose bias is HF's ``lm_head.bias``).

Not supported, refused with a :class:`~attnkit.ConfigError` naming the field: relative
position types (``relative_key``), ESMFold (``is_folding_model``) and decoder variants.
Dropped on load: the rotary frequencies (``rotary_embeddings.inv_freq``, recomputed from
``rope_theta``), position-id buffers, and the position table ``transformers`` creates but never
uses in a rotary model.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.hf_fields import labels_from_hf, labels_to_hf
from attnkit.interop.keymap import Rename, pooler_option, require_hf_settings, weight_and_bias, with_prefix
from attnkit.models.esm import Esm, EsmConfig, EsmForMaskedLM, EsmForSequenceClassification, EsmForTokenClassification

MODEL_TYPE = "esm"
MODELS = {cls.__name__: cls for cls in (Esm, EsmForMaskedLM, EsmForSequenceClassification, EsmForTokenClassification)}
ARCHITECTURES = {
    "EsmModel": "Esm", "EsmForMaskedLM": "EsmForMaskedLM",
    "EsmForSequenceClassification": "EsmForSequenceClassification",
    "EsmForTokenClassification": "EsmForTokenClassification",
}
BASE_PREFIX = "esm."
IGNORED_HF_KEYS = (r"(^|\.)rotary_embeddings\.inv_freq$", r"(^|\.)embeddings\.position_ids$",
                   r"(^|\.)embeddings\.position_embeddings\.weight$")  # the last as transformers: unused with rotary


def _encoder_rules(encoder: Esm) -> list[Rename]:
    n, h = "encoder.layers.{i}.", "encoder.layer.{i}."
    rules = [
        Rename("word_embeddings.weight", "embeddings.word_embeddings.weight"),
        *([Rename("position_embeddings.weight", "embeddings.position_embeddings.weight")]
          if encoder.position_embeddings is not None else []),
        *(weight_and_bias("embed_norm", "embeddings.layer_norm") if encoder.embed_norm is not None else []),
        *weight_and_bias(n + "attn_norm", h + "attention.LayerNorm"),
        *weight_and_bias(n + "attn.qkv_proj", tuple(h + f"attention.self.{x}" for x in ("query", "key", "value"))),
        *weight_and_bias(n + "attn.out_proj", h + "attention.output.dense"),
        *weight_and_bias(n + "ffn_norm", h + "LayerNorm"),
        *weight_and_bias(n + "ffn.fc_in", h + "intermediate.dense"),
        *weight_and_bias(n + "ffn.fc_out", h + "output.dense"),
        *weight_and_bias("encoder.norm", "encoder.emb_layer_norm_after"),
        *weight_and_bias("contact_head.regression", "contact_head.regression"),
        # transformers 5 saves these two LayerNorms under their legacy names (the first rule is written)
        Rename(n + "attn_norm.weight", h + "attention.LayerNorm.gamma"),
        Rename(n + "attn_norm.bias", h + "attention.LayerNorm.beta"),
        Rename(n + "ffn_norm.weight", h + "LayerNorm.gamma"),
        Rename(n + "ffn_norm.bias", h + "LayerNorm.beta"),
    ]
    return rules + (weight_and_bias("pooler", "pooler.dense") if encoder.pooler is not None else [])


_HEAD_RULES = {
    EsmForMaskedLM: [
        *weight_and_bias("transform", "lm_head.dense"),
        *weight_and_bias("transform_norm", "lm_head.layer_norm"),
        Rename("decoder.bias", "lm_head.bias"),
        Rename("decoder.weight", "lm_head.decoder.weight"),  # tied: an equal copy is accepted
    ],
    EsmForSequenceClassification: [*weight_and_bias("head_dense", "classifier.dense"),
                                   *weight_and_bias("classifier", "classifier.out_proj")],
    EsmForTokenClassification: weight_and_bias("classifier", "classifier"),
}


def key_rules(model) -> list[Rename]:
    if isinstance(model, Esm):
        return _encoder_rules(model)
    base = with_prefix(_encoder_rules(model.esm), BASE_PREFIX)
    return base + next(rules for cls, rules in _HEAD_RULES.items() if isinstance(model, cls))


def model_options(model_class: type, keys) -> dict:
    """A bare ``EsmModel`` saved without its pooler (``add_pooling_layer=False``) loads as
    ``Esm(config, add_pooler=False)``."""
    return pooler_option(keys) if model_class is Esm else {}


def config_to_hf(model) -> dict:
    """HF ``EsmConfig`` fields (every attnkit ESM has an HF equivalent)."""
    c: EsmConfig = model.config
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, intermediate_size=c.d_ff, hidden_act="gelu", hidden_dropout_prob=c.dropout,
        attention_probs_dropout_prob=c.attn_dropout, max_position_embeddings=c.n_positions, rope_theta=c.rope_theta,
        initializer_range=c.initializer_range, layer_norm_eps=c.norm_eps, position_embedding_type=c.position_embedding,
        emb_layer_norm_before=c.embed_norm, token_dropout=c.token_dropout, mask_token_id=c.mask_token_id,
        pad_token_id=c.pad_token_id, is_folding_model=False, tie_word_embeddings=True,
        **labels_to_hf(c.id2label, c.problem_type),
    )


def config_from_hf(hf: dict, model_class: type) -> EsmConfig:
    """``EsmConfig`` from a HF ESM config dict (HF's defaults for absent fields)."""
    position = hf.get("position_embedding_type", "absolute")  # HF's default: ESM-1b's learned table
    if position not in ("rotary", "absolute"):
        raise ConfigError(f"config.json: position_embedding_type={position!r} is not supported by attnkit's ESM "
                          "(needs 'rotary', ESM-2's, or 'absolute', ESM-1b's)")
    require_hf_settings(hf, dict(is_folding_model=False, is_decoder=False, add_cross_attention=False), "ESM")
    return EsmConfig(
        vocab_size=hf.get("vocab_size") or 33, position_embedding=position,
        embed_norm=bool(hf.get("emb_layer_norm_before")), n_positions=hf.get("max_position_embeddings", 1026),
        d_model=hf.get("hidden_size", 768), n_layers=hf.get("num_hidden_layers", 12),
        n_heads=hf.get("num_attention_heads", 12), d_ff=hf.get("intermediate_size", 3072),
        norm_eps=hf.get("layer_norm_eps", 1e-12), dropout=hf.get("hidden_dropout_prob", 0.1),
        attn_dropout=hf.get("attention_probs_dropout_prob", 0.1), rope_theta=hf.get("rope_theta", 10000.0),
        initializer_range=hf.get("initializer_range", 0.02), token_dropout=bool(hf.get("token_dropout", False)),
        mask_token_id=hf.get("mask_token_id"), pad_token_id=hf.get("pad_token_id"), **labels_from_hf(hf),
    )
