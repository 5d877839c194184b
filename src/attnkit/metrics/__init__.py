"""attnkit.metrics: task metrics wrapping the standard packages (sacrebleu, jiwer), never re-implemented."""

from attnkit.metrics.speech import cer, wer
from attnkit.metrics.translation import bleu, chrf

__all__ = ["bleu", "cer", "chrf", "wer"]
