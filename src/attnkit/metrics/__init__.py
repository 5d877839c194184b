"""attnkit.metrics: task metrics wrapping the standard packages (sacrebleu, rouge-score, jiwer,
scikit-learn, seqeval), never re-implemented; SQuAD's exact match and F1 follow its official script."""

from attnkit.metrics.classification import accuracy, answer_f1, entity_scores, exact_match, f1, normalize_answer
from attnkit.metrics.speech import cer, wer
from attnkit.metrics.summarization import rouge
from attnkit.metrics.translation import bleu, chrf

TEXT_METRICS = ("bleu", "chrf", "rouge")  # scores of generated text against references (attnkit evaluate, data.metrics)
# metric -> the module it is computed by, and that module's pip name
PACKAGES = {"bleu": ("sacrebleu", "sacrebleu"), "chrf": ("sacrebleu", "sacrebleu"), "rouge": ("rouge_score", "rouge-score"),
            "wer": ("jiwer", "jiwer"), "cer": ("jiwer", "jiwer"), "accuracy": ("sklearn", "scikit-learn"),
            "f1": ("sklearn", "scikit-learn"), "entity_scores": ("seqeval", "seqeval")}


def missing_packages(metrics) -> list[str]:
    """The pip names of the packages ``metrics`` (names in :data:`PACKAGES`) need that are not
    installed, so that a run can refuse before it trains rather than fail at its first evaluation."""
    import importlib.util

    return sorted({pip for module, pip in (PACKAGES[m] for m in metrics) if importlib.util.find_spec(module) is None})


def require_packages(metrics, what: str, error: type[Exception]) -> None:
    """Raise ``error("<what> <packages>: pip install <packages>")`` when ``metrics`` need packages
    that are not installed; ``what`` names the option asking for them (``"data.metrics ['rouge'] need"``)."""
    missing = missing_packages(metrics)
    if missing:
        raise error(f"{what} {', '.join(missing)}: pip install {' '.join(missing)}")


__all__ = ["PACKAGES", "TEXT_METRICS", "missing_packages", "require_packages", "accuracy", "answer_f1", "bleu", "cer", "chrf", "entity_scores", "exact_match", "f1", "normalize_answer", "rouge", "wer"]
