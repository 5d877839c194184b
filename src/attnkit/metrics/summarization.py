"""Summarization metrics: ROUGE (Lin 2004), computed by Google's ``rouge-score`` package (the
implementation of the original Perl script's definitions), never re-implemented.

``rouge1``/``rouge2`` are unigram/bigram overlap, ``rougeL`` the longest common subsequence of
the whole text, ``rougeLsum`` the summary-level LCS over sentences (one per line, as
``rouge-score`` expects). Each score is the F-measure averaged over the examples, in [0, 100].
"""

from __future__ import annotations

from collections.abc import Sequence

from attnkit.errors import InputError
from attnkit.metrics.pairs import check_pairs

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge(hypotheses: Sequence[str], references: Sequence[str], rouge_types: Sequence[str] = ROUGE_TYPES,
          use_stemmer: bool = True) -> dict[str, float]:
    """Mean ROUGE F-measures ``{type: score in [0, 100]}`` of ``hypotheses`` against one
    reference each. ``use_stemmer`` applies the Porter stemmer to both sides (as most published
    results do); ``rouge_types`` also accepts ``rouge3`` ... ``rouge9``."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ImportError("ROUGE needs Google's rouge-score: pip install 'attnkit[summarization]'") from None
    hypotheses, references = check_pairs(hypotheses, references)
    valid = set(ROUGE_TYPES) | {f"rouge{n}" for n in range(3, 10)}
    unknown = [t for t in rouge_types if t not in valid]
    if unknown or not rouge_types:
        raise InputError(f"unknown ROUGE types {unknown}; expected some of {ROUGE_TYPES} (or rouge3 .. rouge9)")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
    totals = dict.fromkeys(rouge_types, 0.0)
    for hypothesis, reference in zip(hypotheses, references):
        for name, score in scorer.score(reference, hypothesis).items():  # score(target, prediction)
            totals[name] += score.fmeasure
    return {name: 100.0 * total / len(hypotheses) for name, total in totals.items()}
