"""RoBERTa (Liu et al. 2019): BERT's architecture, pre-trained longer on more text with dynamic
masking and without next-sentence prediction, so the model is :mod:`attnkit.models.bert`'s with
two differences that checkpoints depend on:

- positions count real tokens from ``pad_token_id + 1`` (fairseq's numbering; padding takes
  position ``pad_token_id``), so ``n_positions`` is the longest input plus that offset (514 for
  512 tokens);
- the sequence classifier reads the first token's state through its own dropout, dense, tanh,
  dropout and linear layers (:class:`~attnkit.models.bert.FirstTokenHead`) instead of BERT's
  pooler, and the masked-LM head's activation is always GELU.

One segment type (``type_vocab_size=1``), LayerNorm eps 1e-5, a 50,265-token byte-level BPE
vocabulary with ``<pad>`` = 1 (Hugging Face's ``RobertaConfig`` defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
class RobertaConfig(BertConfig):
    """Sizes of a RoBERTa. Defaults are RoBERTa-base (Liu et al. 2019, 125M parameters)."""

    model_type = "roberta"

    vocab_size: int = 50265
    n_positions: int = 514
    type_vocab_size: int = 1
    norm_eps: float = 1e-5
    pad_token_id: int | None = 1

    def validate(self) -> None:
        super().validate()
        self.require(self.pad_token_id is not None, "pad_token_id", "must be set: RoBERTa numbers positions after it")
        self.require(self.n_positions > self.pad_token_id + 1, "n_positions",
                     f"must exceed pad_token_id + 1 ({self.pad_token_id + 1}), where positions start")


class Roberta(Bert):
    """The RoBERTa encoder: :class:`~attnkit.models.bert.Bert` with positions counted over the real
    tokens from ``pad_token_id + 1``."""

    config_class = RobertaConfig

    @property
    def max_length(self) -> int:
        return self.config.n_positions - self.config.pad_token_id - 1

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)``: ``pad_token_id + 1, + 2, ...`` over the real tokens, ``pad_token_id`` on
        padding (Hugging Face's ``create_position_ids_from_input_ids``)."""
        real = (input_ids != self.config.pad_token_id).long()
        return torch.cumsum(real, dim=1) * real + self.config.pad_token_id


class _RobertaHead(_BertHead):
    config_class = RobertaConfig
    base_model_prefix, base_model_class = "roberta", Roberta


class RobertaForMaskedLM(_RobertaHead, BertForMaskedLM):
    """RoBERTa's masked language model: ``logits`` ``(B, T, V)``; ``labels`` ``(B, T)`` with -100
    on the positions not to predict give ``loss``."""

    lm_head_activation = "gelu"  # Hugging Face's RobertaLMHead: GELU whatever hidden_act says


class RobertaForSequenceClassification(ClassifierLoss, FirstTokenHead, _RobertaHead):
    """Classifier over the ``<s>`` state (:class:`~attnkit.models.bert.FirstTokenHead`): ``logits``
    ``(B, num_labels)``; the loss follows ``config.problem_type``."""

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.add_first_token_head(config.d_model, config.num_labels, p, config.initializer_range)


class RobertaForTokenClassification(_RobertaHead, BertForTokenClassification):
    """Per-token classifier (NER): ``logits`` ``(B, T, num_labels)``; ``labels`` ``(B, T)``, -100 ignored."""


class RobertaForQuestionAnswering(_RobertaHead, BertForQuestionAnswering):
    """Extractive QA: ``start_logits`` and ``end_logits`` ``(B, T)`` (see :class:`BertForQuestionAnswering`)."""
