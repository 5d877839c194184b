"""Speech-recognition metrics: word and character error rates, computed by jiwer, never
re-implemented. Both are (substitutions + deletions + insertions) / reference length, summed
over the corpus, so they can exceed 1 when a hypothesis has many insertions."""

from __future__ import annotations

from collections.abc import Sequence

from attnkit.errors import InputError
from attnkit.metrics.pairs import check_pairs


def _checked(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    hypotheses, references = check_pairs(hypotheses, references)
    if any(not r.strip() for r in references):
        raise InputError("every reference must be a non-empty text (the error rate divides by its length)")
    return hypotheses, references


def wer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus word error rate of ``hypotheses`` against one reference each (words split on whitespace)."""
    import jiwer

    hypotheses, references = _checked(hypotheses, references)
    return float(jiwer.wer(references, hypotheses))


def cer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus character error rate (spaces count as characters)."""
    import jiwer

    hypotheses, references = _checked(hypotheses, references)
    return float(jiwer.cer(references, hypotheses))
