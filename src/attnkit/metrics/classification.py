"""Classification, named-entity and extractive question-answering metrics.

``accuracy`` and ``f1`` are scikit-learn's (``sklearn.metrics``), ``entity_scores`` seqeval's
(entity-level precision, recall and F1 of B-/I- tag sequences, as CoNLL's conlleval counts
them), never re-implemented.
``exact_match`` and ``answer_f1`` are SQuAD's (Rajpurkar et al. 2016, the official v1.1
evaluation script): answers are compared after lower-casing and removing punctuation, the
articles a/an/the and extra whitespace; F1 is over the bag of remaining words; with several
gold answers a prediction gets its best score. They are written out here because the script
is not a package; each step cites the script's.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

from attnkit.errors import InputError
from attnkit.metrics.pairs import check_pairs

AVERAGES = ("binary", "micro", "macro", "weighted")


def _sklearn_metrics():
    try:
        from sklearn import metrics
    except ImportError:
        raise ImportError("accuracy and F1 come from scikit-learn: pip install scikit-learn") from None
    return metrics


def accuracy(predictions: Sequence, references: Sequence) -> float:
    """The fraction of predictions equal to their reference label (ids or names), in [0, 1]."""
    predictions, references = check_pairs(predictions, references, "predictions")
    return float(_sklearn_metrics().accuracy_score(references, predictions))


def f1(predictions: Sequence, references: Sequence, average: str = "macro", pos_label=1) -> float:
    """F1 in [0, 1]: ``"binary"`` (of ``pos_label``), ``"micro"`` (over all decisions: accuracy
    for single-label tasks), ``"macro"`` (the unweighted mean over classes), or ``"weighted"``
    (by each class's count). A class never predicted nor present scores 0, as scikit-learn's
    ``zero_division=0``."""
    if average not in AVERAGES:
        raise InputError(f"average must be one of {AVERAGES}, got {average!r}")
    predictions, references = check_pairs(predictions, references, "predictions")
    return float(_sklearn_metrics().f1_score(references, predictions, average=average,
                                             pos_label=pos_label, zero_division=0))


def entity_scores(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level ``{"precision", "recall", "f1"}`` in [0, 1] of predicted tag sequences
    (``["B-PER", "I-PER", "O", ...]`` per sentence) against the gold ones, by seqeval: an
    entity counts only when its type and both ends are right."""
    try:
        from seqeval import metrics
    except ImportError:
        raise ImportError("entity scores come from seqeval: pip install seqeval") from None
    predictions, references = check_pairs(predictions, references, "predictions")
    for i, (p, r) in enumerate(zip(predictions, references)):
        if isinstance(p, str) or isinstance(r, str) or len(p) != len(r):
            raise InputError(f"sentence {i}: predictions and references must be lists of tags of the same length")
    predictions, references = [list(p) for p in predictions], [list(r) for r in references]
    return {name: float(score(references, predictions, zero_division=0)) for name, score in
            (("precision", metrics.precision_score), ("recall", metrics.recall_score), ("f1", metrics.f1_score))}


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's ``normalize_answer``: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _answer_f1(prediction: str, gold: str) -> float:
    """SQuAD v1.1's ``f1_score``: F1 of the normalised words, counted with multiplicity."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _golds(reference, index: int) -> list[str]:
    golds = [reference] if isinstance(reference, str) else list(reference)
    if not golds or not all(isinstance(g, str) for g in golds):
        raise InputError(f"reference {index} must be an answer or a non-empty list of answers (strings)")
    return golds


def exact_match(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """SQuAD exact match in [0, 100]: the share of predictions whose normalised text equals a
    normalised gold answer (each reference is an answer or a list of acceptable ones)."""
    predictions, references = check_pairs(predictions, references, "predictions")
    hits = [max(float(normalize_answer(p) == normalize_answer(g)) for g in _golds(r, i))
            for i, (p, r) in enumerate(zip(predictions, references))]
    return 100.0 * sum(hits) / len(hits)


def answer_f1(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """SQuAD F1 in [0, 100]: per question the best word-overlap F1 against its gold answers, averaged."""
    predictions, references = check_pairs(predictions, references, "predictions")
    scores = [max(_answer_f1(p, g) for g in _golds(r, i)) for i, (p, r) in enumerate(zip(predictions, references))]
    return 100.0 * sum(scores) / len(scores)
