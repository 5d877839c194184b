"""RoBERTa <-> attnkit Roberta and heads: BERT's encoder keys (:mod:`attnkit.interop.bert`) under
``roberta.``, and RoBERTa's own heads: ``lm_head.{dense,layer_norm,decoder,bias}`` for the
masked LM and ``classifier.{dense,out_proj}`` for sequence classification.

XLM-RoBERTa checkpoints (``model_type`` ``xlm-roberta``: the same architecture and keys with a
250,002-token vocabulary; Conneau et al. 2020) load through this module too, as attnkit's
RoBERTa classes, and are saved back as ``roberta`` checkpoints (``transformers`` reads those
with the same weights and outputs).
"""

from __future__ import annotations

from attnkit.interop import bert
from attnkit.interop.keymap import Rename, pooler_option, weight_and_bias, with_prefix
from attnkit.models.roberta import (
    Roberta,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
)

MODEL_TYPE = "roberta"
MODELS = {cls.__name__: cls for cls in (Roberta, RobertaForMaskedLM, RobertaForSequenceClassification,
                                        RobertaForTokenClassification, RobertaForQuestionAnswering)}
ARCHITECTURES = {prefix + name: name.replace("RobertaModel", "Roberta") for prefix in ("", "XLM") for name in (
    "RobertaModel", "RobertaForMaskedLM", "RobertaForSequenceClassification", "RobertaForTokenClassification",
    "RobertaForQuestionAnswering")}
BASE_PREFIX = "roberta."
# Dropped when no rule uses them: the position_ids buffer, lm_head.decoder.bias (transformers'
# alias of lm_head.bias), and the pooler of checkpoints loaded into heads that do not use it.
IGNORED_HF_KEYS = (r"(^|\.)embeddings\.position_ids$", r"^lm_head\.decoder\.bias$", r"^roberta\.pooler\.")

_HEAD_RULES = {
    RobertaForMaskedLM: [
        *weight_and_bias("transform", "lm_head.dense"),
        *weight_and_bias("transform_norm", "lm_head.layer_norm"),
        Rename("decoder.weight", "lm_head.decoder.weight"),
        Rename("decoder.bias", "lm_head.bias"),
    ],
    RobertaForSequenceClassification: [*weight_and_bias("head_dense", "classifier.dense"),
                                       *weight_and_bias("classifier", "classifier.out_proj")],
    RobertaForTokenClassification: weight_and_bias("classifier", "classifier"),
    RobertaForQuestionAnswering: weight_and_bias("qa_outputs", "qa_outputs"),
}


def key_rules(model) -> list[Rename]:
    if isinstance(model, Roberta):
        return bert.encoder_rules(pooler=model.pooler is not None)
    base = with_prefix(bert.encoder_rules(pooler=model.encoder_model.pooler is not None), BASE_PREFIX)
    return base + next(rules for cls, rules in _HEAD_RULES.items() if isinstance(model, cls))


def model_options(model_class: type, keys) -> dict:
    """A bare ``RobertaModel`` saved without its pooler loads as ``Roberta(config, add_pooler=False)``."""
    return pooler_option(keys) if model_class is Roberta else {}


def config_to_hf(model) -> dict:
    """HF ``RobertaConfig`` fields: BERT's, with RoBERTa's model type."""
    return dict(bert.config_to_hf(model), model_type=MODEL_TYPE)


def config_from_hf(hf: dict, model_class: type) -> RobertaConfig:
    """``RobertaConfig`` from a HF RoBERTa config dict (``transformers.RobertaConfig``'s defaults for
    absent fields: BERT's, with a 50,265-token vocabulary and ``<pad>`` = 1; the released
    checkpoints set 514 positions, one token type and eps 1e-5 themselves)."""
    return bert.config_from_hf(hf, model_class, vocab_size=50265, pad_token_id=1, family="RoBERTa")
