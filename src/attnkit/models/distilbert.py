"""DistilBERT (Sanh et al. 2019): a 6-layer BERT distilled from BERT-base, without segment
embeddings or pooler, so the model is :mod:`attnkit.models.bert`'s with ``type_vocab_size=0``
(``token_type_ids`` are ignored) and DistilBERT's own heads: the sequence classifier reads the
first token through a dense layer, ReLU and dropout (``seq_classif_dropout``), and extractive
QA drops out the states first (``qa_dropout``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from attnkit.models.bert import (
    Bert,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForTokenClassification,
    FirstTokenHead,
    _BertHead,
)
from attnkit.models.classification import ClassifierLoss


@dataclass(frozen=True)
class DistilBertConfig(BertConfig):
    """Sizes of a DistilBERT. Defaults are distilbert-base-uncased (66M parameters)."""

    model_type = "distilbert"

    n_layers: int = 6
    type_vocab_size: int = 0
    classifier_dropout: float | None = 0.2  # Hugging Face's seq_classif_dropout
    qa_dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        self.require_fraction("qa_dropout")


class DistilBert(Bert):
    """The DistilBERT encoder (:class:`~attnkit.models.bert.Bert` without segments or pooler;
    ``add_pooler`` is accepted for the heads' sake and ignored)."""

    config_class = DistilBertConfig

    def __init__(self, config: DistilBertConfig, add_pooler: bool = False):
        super().__init__(config, add_pooler=False)


class _DistilBertHead(_BertHead):
    config_class = DistilBertConfig
    base_model_prefix, base_model_class = "distilbert", DistilBert


class DistilBertForMaskedLM(_DistilBertHead, BertForMaskedLM):
    """DistilBERT's masked language model (``vocab_transform``, activation, ``vocab_layer_norm``,
    ``vocab_projector`` tied to the word embeddings): ``logits`` ``(B, T, V)``."""


class DistilBertForSequenceClassification(ClassifierLoss, FirstTokenHead, _DistilBertHead):
    """Classifier over the ``[CLS]`` state: dense (``pre_classifier``), ReLU, dropout, linear.
    ``logits`` ``(B, num_labels)``; the loss follows ``config.problem_type``."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.add_first_token_head(config.d_model, config.num_labels, p, config.initializer_range, activation="relu",
                                  drop_first=False)


class DistilBertForTokenClassification(_DistilBertHead, BertForTokenClassification):
    """Per-token classifier (NER): ``logits`` ``(B, T, num_labels)``; ``labels`` ``(B, T)``, -100 ignored."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.head_drop = nn.Dropout(config.dropout)  # DistilBERT's token head drops out at the model's rate


class DistilBertForQuestionAnswering(_DistilBertHead, BertForQuestionAnswering):
    """Extractive QA: ``start_logits`` and ``end_logits`` ``(B, T)`` after dropout (``qa_dropout``)."""
