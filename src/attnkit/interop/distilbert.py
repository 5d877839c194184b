"""DistilBERT <-> attnkit DistilBert and heads: ``embeddings.*`` as BERT's (no token types),
``transformer.layer.{i}.attention.{q,k,v,out}_lin`` (q/k/v fused into attnkit's ``qkv_proj``),
``sa_layer_norm``, ``ffn.lin1``/``lin2``, ``output_layer_norm``; heads ``vocab_transform``,
``vocab_layer_norm``, ``vocab_projector`` (masked LM), ``pre_classifier`` + ``classifier``,
``classifier`` (tokens), ``qa_outputs``. Checkpoints with ``sinusoidal_pos_embds`` store their
fixed position table like a learned one and load as such.
"""

from __future__ import annotations

from attnkit.interop import bert
from attnkit.interop.hf_fields import ACT_TO_HF, activation_from_hf, labels_from_hf, labels_to_hf
from attnkit.interop.keymap import Rename, require_hf_settings, weight_and_bias, with_prefix
from attnkit.models.distilbert import (
    DistilBert,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
)

MODEL_TYPE = "distilbert"
MODELS = {cls.__name__: cls for cls in (DistilBert, DistilBertForMaskedLM, DistilBertForSequenceClassification,
                                        DistilBertForTokenClassification, DistilBertForQuestionAnswering)}
ARCHITECTURES = {name: name.replace("DistilBertModel", "DistilBert") for name in (
    "DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification", "DistilBertForQuestionAnswering")}
BASE_PREFIX = "distilbert."
IGNORED_HF_KEYS = (r"(^|\.)embeddings\.position_ids$",)


def _encoder_rules() -> list[Rename]:
    n, h = "encoder.layers.{i}.", "transformer.layer.{i}."
    return [
        Rename("word_embeddings.weight", "embeddings.word_embeddings.weight"),
        Rename("position_embeddings.weight", "embeddings.position_embeddings.weight"),
        *weight_and_bias("embed_norm", "embeddings.LayerNorm"),
        *weight_and_bias(n + "attn.qkv_proj", tuple(h + f"attention.{x}_lin" for x in "qkv")),
        *weight_and_bias(n + "attn.out_proj", h + "attention.out_lin"),
        *weight_and_bias(n + "attn_norm", h + "sa_layer_norm"),
        *weight_and_bias(n + "ffn.fc_in", h + "ffn.lin1"),
        *weight_and_bias(n + "ffn.fc_out", h + "ffn.lin2"),
        *weight_and_bias(n + "ffn_norm", h + "output_layer_norm"),
    ]


_HEAD_RULES = {
    DistilBertForMaskedLM: [
        *weight_and_bias("transform", "vocab_transform"),
        *weight_and_bias("transform_norm", "vocab_layer_norm"),
        Rename("decoder.weight", "vocab_projector.weight"),
        Rename("decoder.bias", "vocab_projector.bias"),
    ],
    DistilBertForSequenceClassification: [*weight_and_bias("head_dense", "pre_classifier"),
                                          *weight_and_bias("classifier", "classifier")],
    DistilBertForTokenClassification: weight_and_bias("classifier", "classifier"),
    DistilBertForQuestionAnswering: weight_and_bias("qa_outputs", "qa_outputs"),
}


def key_rules(model) -> list[Rename]:
    if isinstance(model, DistilBert):
        return _encoder_rules()
    return with_prefix(_encoder_rules(), BASE_PREFIX) + next(r for cls, r in _HEAD_RULES.items() if isinstance(model, cls))


def config_to_hf(model) -> dict:
    """HF ``DistilBertConfig`` fields (every attnkit DistilBERT has an HF equivalent)."""
    c: DistilBertConfig = model.config
    n_labels = 2 if isinstance(model, DistilBertForQuestionAnswering) else c.num_labels  # HF's qa_outputs: 2 rows
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, dim=c.d_model, n_layers=c.n_layers, n_heads=c.n_heads,
        hidden_dim=c.d_ff, activation=ACT_TO_HF[c.activation], dropout=c.dropout, attention_dropout=c.attn_dropout,
        max_position_embeddings=c.n_positions, initializer_range=c.initializer_range, pad_token_id=c.pad_token_id,
        seq_classif_dropout=c.classifier_dropout if c.classifier_dropout is not None else c.dropout,
        qa_dropout=c.qa_dropout, sinusoidal_pos_embds=False, tie_word_embeddings=True,
        **labels_to_hf(bert.id2label_for(c, n_labels), c.problem_type),
    )


def config_from_hf(hf: dict, model_class: type) -> DistilBertConfig:
    """``DistilBertConfig`` from a HF DistilBERT config dict (HF's defaults for absent fields)."""
    require_hf_settings(hf, dict(tie_word_embeddings=True), "DistilBERT")
    return DistilBertConfig(
        vocab_size=hf.get("vocab_size", 30522), n_positions=hf.get("max_position_embeddings", 512),
        d_model=hf.get("dim", 768), n_layers=hf.get("n_layers", 6), n_heads=hf.get("n_heads", 12),
        d_ff=hf.get("hidden_dim", 3072), activation=activation_from_hf(hf, "activation", "gelu"),
        dropout=hf.get("dropout", 0.1), attn_dropout=hf.get("attention_dropout", 0.1),
        initializer_range=hf.get("initializer_range", 0.02), pad_token_id=hf.get("pad_token_id", 0),
        classifier_dropout=hf.get("seq_classif_dropout", 0.2), qa_dropout=hf.get("qa_dropout", 0.1),
        **labels_from_hf(hf),
    )
