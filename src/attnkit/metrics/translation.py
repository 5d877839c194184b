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
from attnkit.metrics.pairs import check_pairs

METRICS = ("bleu", "chrf")


def check_options(metrics: Sequence[str], tokenize: str = "13a") -> None:
    """Raise :class:`InputError` for an unknown metric or BLEU tokenizer (before any decoding)."""
    import sacrebleu

    for metric in metrics:
        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if tokenize not in sacrebleu.BLEU.TOKENIZERS:
        raise InputError(f"unknown BLEU tokenizer {tokenize!r}; sacrebleu has {sorted(sacrebleu.BLEU.TOKENIZERS)}")


def bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """Corpus BLEU in [0, 100] of detokenised ``hypotheses`` against one reference each."""
    import sacrebleu

    hypotheses, references = check_pairs(hypotheses, references)
    check_options(["bleu"], tokenize)
    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (character n-gram F-score, β = 2) in [0, 100]."""
    import sacrebleu

    hypotheses, references = check_pairs(hypotheses, references)
    return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def score(metric: str, hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """``metric`` (one of :data:`METRICS`) of ``hypotheses`` against ``references``."""
    check_options([metric], tokenize)
    return bleu(hypotheses, references, tokenize) if metric == "bleu" else chrf(hypotheses, references)
