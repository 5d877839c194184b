"""attnkit.metrics: task metrics wrapping the standard packages (sacrebleu, rouge-score, jiwer,
scikit-learn, seqeval), never re-implemented; SQuAD's exact match and F1 follow its official script."""

from attnkit.metrics.classification import accuracy, answer_f1, entity_scores, exact_match, f1, normalize_answer
from attnkit.metrics.speech import cer, wer
from attnkit.metrics.summarization import rouge
from attnkit.metrics.translation import bleu, chrf

__all__ = ["accuracy", "answer_f1", "bleu", "cer", "chrf", "entity_scores", "exact_match", "f1", "normalize_answer", "rouge", "wer"]
