"""BERT <-> attnkit Bert and heads: config fields and state-dict keys.

Hugging Face keeps separate ``query``/``key``/``value`` projections; attnkit fuses them into
one ``qkv_proj`` (concatenated along the output dimension). Head models prefix the encoder's
keys with ``bert.``; a bare ``BertModel`` checkpoint has no prefix.
"""

from __future__ import annotations

from attnkit.errors import ConfigError
from attnkit.interop.keymap import Rename, require_hf_settings
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

_ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}
_ACT_FROM_HF = {**{v: k for k, v in _ACT_TO_HF.items()}, "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}


def _pair(native: str, hf: str | tuple[str, ...]) -> list[Rename]:
    """Rules for ``.weight`` and ``.bias`` of one Linear or LayerNorm."""
    if isinstance(hf, tuple):
        return [Rename(f"{native}.{p}", tuple(f"{h}.{p}" for h in hf)) for p in ("weight", "bias")]
    return [Rename(f"{native}.{p}", f"{hf}.{p}") for p in ("weight", "bias")]


def _encoder_rules(pooler: bool) -> list[Rename]:
    n, h = "encoder.layers.{i}.", "encoder.layer.{i}."
    rules = [
        Rename("word_embeddings.weight", "embeddings.word_embeddings.weight"),
        Rename("position_embeddings.weight", "embeddings.position_embeddings.weight"),
        Rename("token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
        *_pair("embed_norm", "embeddings.LayerNorm"),
        *_pair(n + "attn.qkv_proj", tuple(h + f"attention.self.{x}" for x in ("query", "key", "value"))),
        *_pair(n + "attn.out_proj", h + "attention.output.dense"),
        *_pair(n + "attn_norm", h + "attention.output.LayerNorm"),
        *_pair(n + "ffn.fc_in", h + "intermediate.dense"),
        *_pair(n + "ffn.fc_out", h + "output.dense"),
        *_pair(n + "ffn_norm", h + "output.LayerNorm"),
    ]
    return rules + (_pair("pooler", "pooler.dense") if pooler else [])


_HEAD_RULES = {
    BertForMaskedLM: [
        *_pair("transform", "cls.predictions.transform.dense"),
        *_pair("transform_norm", "cls.predictions.transform.LayerNorm"),
        Rename("decoder.weight", "cls.predictions.decoder.weight"),
        Rename("decoder.bias", "cls.predictions.bias"),
    ],
    BertForSequenceClassification: _pair("classifier", "classifier"),
    BertForTokenClassification: _pair("classifier", "classifier"),
    BertForQuestionAnswering: _pair("qa_outputs", "qa_outputs"),
}


def key_rules(model) -> list[Rename]:
    if isinstance(model, Bert):
        return _encoder_rules(pooler=model.pooler is not None)
    base = [Rename("bert." + r.native, tuple("bert." + h for h in r.hf_names) if isinstance(r.hf, tuple)
                   else "bert." + r.hf) for r in _encoder_rules(pooler=model.bert.pooler is not None)]
    return base + next(rules for cls, rules in _HEAD_RULES.items() if isinstance(model, cls))


def model_options(model_class: type, keys) -> dict:
    """A bare ``BertModel`` saved without its pooler (``add_pooling_layer=False``) loads as
    ``Bert(config, add_pooler=False)``."""
    if model_class is Bert and not any(k.endswith(("pooler.dense.weight", "pooler.weight")) for k in keys):
        return {"add_pooler": False}
    return {}


def config_to_hf(model) -> dict:
    """HF ``BertConfig`` fields (every attnkit BERT has an HF equivalent)."""
    c: BertConfig = model.config
    n_labels = 2 if isinstance(model, BertForQuestionAnswering) else c.num_labels  # HF's qa_outputs has num_labels rows
    return dict(
        model_type=MODEL_TYPE, vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, intermediate_size=c.d_ff, hidden_act=_ACT_TO_HF[c.activation],
        hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.attn_dropout,
        max_position_embeddings=c.n_positions, type_vocab_size=c.type_vocab_size,
        initializer_range=c.initializer_range, layer_norm_eps=c.norm_eps, pad_token_id=c.pad_token_id,
        classifier_dropout=c.classifier_dropout, position_embedding_type="absolute", tie_word_embeddings=True,
        id2label={str(i): name for i, name in _id2label(c, n_labels).items()},
        label2id={name: i for i, name in _id2label(c, n_labels).items()}, problem_type=c.problem_type,
    )


def _id2label(c: BertConfig, n_labels: int) -> dict[int, str]:
    return c.id2label if n_labels == c.num_labels else {i: f"LABEL_{i}" for i in range(n_labels)}


def config_from_hf(hf: dict, model_class: type) -> BertConfig:
    """``BertConfig`` from a HF BERT config dict (HF's defaults for absent fields)."""
    require_hf_settings(hf, dict(position_embedding_type="absolute", is_decoder=False, add_cross_attention=False),
                        "BERT")
    act = hf.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in _ACT_FROM_HF:
        raise ConfigError(f"config.json: hidden_act {act!r} is not supported; supported: {sorted(_ACT_FROM_HF)}")
    id2label = hf.get("id2label")
    num_labels = len(id2label) if isinstance(id2label, dict) and id2label else hf.get("num_labels", 2)
    label_names = None
    if isinstance(id2label, dict) and id2label:
        names = [id2label.get(str(i)) for i in range(len(id2label))]
        if None in names:
            raise ConfigError(f"config.json: id2label must name the classes 0..{len(names) - 1}, got keys "
                              f"{sorted(id2label)[:10]}")
        if names != [f"LABEL_{i}" for i in range(len(names))]:  # transformers' default names stay implicit
            label_names = names
    return BertConfig(
        vocab_size=hf.get("vocab_size", 30522), n_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2), d_model=hf.get("hidden_size", 768),
        n_layers=hf.get("num_hidden_layers", 12), n_heads=hf.get("num_attention_heads", 12),
        d_ff=hf.get("intermediate_size", 3072), activation=_ACT_FROM_HF[act], norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout=hf.get("hidden_dropout_prob", 0.1), attn_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02), pad_token_id=hf.get("pad_token_id", 0),
        num_labels=num_labels, classifier_dropout=hf.get("classifier_dropout"), problem_type=hf.get("problem_type"),
        label_names=label_names,
    )
