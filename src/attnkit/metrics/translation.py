"""Machine-translation metrics: BLEU (Papineni et al. 2002) and chrF (Popović 2015), computed by
sacrebleu (Post 2018) on detokenised text, never re-implemented.

``tokenize`` is sacrebleu's tokenizer for BLEU: ``"13a"`` (the WMT default) for ordinary
text, ``"char"`` for outputs without word boundaries, such as German number compounds
("dreihunderteinundzwanzig" is one word, so word 4-grams do not exist and word BLEU is 0 even
for perfect output).
"""

from __future__ import annotations

from collections.abc import Sequence

from attnkit.errors import InputError

METRICS = ("bleu", "chrf")


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise InputError(f"got {len(hypotheses)} hypotheses but {len(references)} references; they must pair up")
    if not hypotheses:
        raise InputError("no hypotheses to score")


def bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """Corpus BLEU in [0, 100] of detokenised ``hypotheses`` against one reference each."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (character n-gram F-score, β = 2) in [0, 100]."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def score(metric: str, hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """``metric`` (one of :data:`METRICS`) of ``hypotheses`` against ``references``."""
    if metric == "bleu":
        return bleu(hypotheses, references, tokenize)
    if metric == "chrf":
        return chrf(hypotheses, references)
    raise InputError(f"unknown metric {metric!r}; expected one of {METRICS}")
