"""attnkit.metrics: task metrics wrapping the standard packages (sacrebleu, ...), never re-implemented."""

from attnkit.metrics.translation import bleu, chrf

__all__ = ["bleu", "chrf"]
