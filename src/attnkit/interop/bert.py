"""BERT <-> attnkit Bert and heads: config fields and state-dict keys.

Hugging Face keeps separate ``query``/``key``/``value`` projections; attnkit fuses them into
one ``qkv_proj`` (concatenated along the output dimension). Head models prefix the encoder's
keys with ``bert.``; a bare ``BertModel`` checkpoint has no prefix.
"""

from __future__ import annotations

from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf, labels_from_hf, labels_to_hf
from attnkit.interop.keymap import Rename, pooler_option, require_hf_settings, weight_and_bias, with_prefix
from attnkit.models.bert import (
    Bert,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)

MODEL_TYPE = "bert"
MODELS = {cls.__name__: cls for cls in (Bert, BertForMaskedLM, BertForSequenceClassification,
                                        BertForTokenClassification, BertForQuestionAnswering)}
ARCHITECTURES = {
    "BertModel": "Bert", "BertForMaskedLM": "BertForMaskedLM", "BertForPreTraining": "BertForMaskedLM",
    "BertForSequenceClassification": "BertForSequenceClassification",
    "BertForTokenClassification": "BertForTokenClassification",
    "BertForQuestionAnswering": "BertForQuestionAnswering",
}
BASE_PREFIX = "bert."
# Dropped when no rule uses them: position_ids (a buffer of old checkpoints), decoder.bias (HF's
# alias of cls.predictions.bias), and the pooler and next-sentence head of pre-training
# checkpoints (bert-base-uncased) loaded into heads that have no use for them, as transformers does.
IGNORED_HF_KEYS = (r"(^|\.)embeddings\.position_ids$", r"^cls\.predictions\.decoder\.bias$", r"^cls\.seq_relationship\.",
                   r"^bert\.pooler\.")

def encoder_rules(pooler: bool) -> list[Rename]:
    n, h = "encoder.layers.{i}.", "encoder.layer.{i}."
    rules = [
        Rename("word_embeddings.weight", "embeddings.word_embeddings.weight"),
        Rename("position_embeddings.weight", "embeddings.position_embeddings.weight"),
        Rename("token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
        *weight_and_bias("embed_norm", "embeddings.LayerNorm"),
        *weight_and_bias(n + "attn.qkv_proj", tuple(h + f"attention.self.{x}" for x in ("query", "key", "value"))),
        *weight_and_bias(n + "attn.out_proj", h + "attention.output.dense"),
        *weight_and_bias(n + "attn_norm", h + "attention.output.LayerNorm"),
        *weight_and_bias(n + "ffn.fc_in", h + "intermediate.dense"),
        *weight_and_bias(n + "ffn.fc_out", h + "output.dense"),
        *weight_and_bias(n + "ffn_norm", h + "output.LayerNorm"),
    ]
    return rules + (weight_and_bias("pooler", "pooler.dense") if pooler else [])


_HEAD_RULES = {
    BertForMaskedLM: [
        *weight_and_bias("transform", "cls.predictions.transform.dense"),
        *weight_and_bias("transform_norm", "cls.predictions.transform.LayerNorm"),
        Rename("decoder.weight", "cls.predictions.decoder.weight"),
        Rename("decoder.bias", "cls.predictions.bias"),
    ],
    BertForSequenceClassification: weight_and_bias("classifier", "classifier"),
    BertForTokenClassification: weight_and_bias("classifier", "classifier"),
    BertForQuestionAnswering: weight_and_bias("qa_outputs", "qa_outputs"),
}


def key_rules(model) -> list[Rename]:
    if isinstance(model, Bert):
        return encoder_rules(pooler=model.pooler is not None)
    base = with_prefix(encoder_rules(pooler=model.encoder_model.pooler is not None), BASE_PREFIX)
    return base + next(rules for cls, rules in _HEAD_RULES.items() if isinstance(model, cls))


def model_options(model_class: type, keys) -> dict:
    """A bare ``BertModel`` saved without its pooler (``add_pooling_layer=False``) loads as
    ``Bert(config, add_pooler=False)``."""
    return pooler_option(keys) if model_class is Bert else {}


def config_to_hf(model) -> dict:
    """HF ``BertConfig`` fields (every attnkit BERT has an HF equivalent)."""
    c: BertConfig = model.config
    n_labels = 2 if isinstance(model, BertForQuestionAnswering) else c.num_labels  # HF's qa_outputs has num_labels rows
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, intermediate_size=c.d_ff, hidden_act=ACT_TO_HF[c.activation],
        hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.attn_dropout,
        max_position_embeddings=c.n_positions, type_vocab_size=c.type_vocab_size,
        initializer_range=c.initializer_range, layer_norm_eps=c.norm_eps, pad_token_id=c.pad_token_id,
        classifier_dropout=c.classifier_dropout, position_embedding_type="absolute", tie_word_embeddings=True,
        **labels_to_hf(id2label_for(c, n_labels), c.problem_type),
    )


def id2label_for(c: BertConfig, n_labels: int) -> dict[int, str]:
    return c.id2label if n_labels == c.num_labels else {i: f"LABEL_{i}" for i in range(n_labels)}


def config_from_hf(hf: dict, model_class: type, vocab_size: int = 30522, pad_token_id: int = 0,
                   family: str = "BERT") -> BertConfig:
    """``model_class.config_class`` from a HF BERT-style config dict (HF's defaults for absent
    fields; RoBERTa's differ in ``vocab_size`` and ``pad_token_id``)."""
    require_hf_settings(hf, dict(position_embedding_type="absolute", is_decoder=False, add_cross_attention=False),
                        family)
    return model_class.config_class(
        vocab_size=hf.get("vocab_size", vocab_size), n_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2), d_model=hf.get("hidden_size", 768),
        n_layers=hf.get("num_hidden_layers", 12), n_heads=hf.get("num_attention_heads", 12),
        d_ff=hf.get("intermediate_size", 3072), activation=activation_from_hf(hf, "hidden_act", "gelu"),
        norm_eps=hf.get("layer_norm_eps", 1e-12), dropout=hf.get("hidden_dropout_prob", 0.1), attn_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02), pad_token_id=hf.get("pad_token_id", pad_token_id),
        classifier_dropout=hf.get("classifier_dropout"), **labels_from_hf(hf),
    )
