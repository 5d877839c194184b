"""Speech-recognition metrics: word and character error rates, computed by jiwer, never
re-implemented. Both are (substitutions + deletions + insertions) / reference length, summed
over the corpus, so they can exceed 1 when a hypothesis has many insertions."""

from __future__ import annotations

from collections.abc import Sequence

from attnkit.errors import InputError


def _checked(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise InputError("pass lists of strings (one hypothesis per reference), not single strings")
    if len(hypotheses) != len(references):
        raise InputError(f"got {len(hypotheses)} hypotheses but {len(references)} references; they must pair up")
    if not references or any(not r.strip() for r in references):
        raise InputError("every reference must be a non-empty text (the error rate divides by its length)")
    return list(hypotheses), list(references)


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
