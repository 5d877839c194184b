"""The one input check every metric makes: predictions and references that pair up."""

from __future__ import annotations

from collections.abc import Sequence

from attnkit.errors import InputError


def check_pairs(predictions: Sequence, references: Sequence, name: str = "hypotheses") -> tuple[list, list]:
    """``(list(predictions), list(references))``; single strings, lists of different lengths or
    empty lists are an :class:`InputError` (``name`` is what the predictions are called)."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise InputError(f"pass lists of strings (one of the {name} per reference), not single strings")
    if len(predictions) != len(references):
        raise InputError(f"got {len(predictions)} {name} but {len(references)} references; they must pair up")
    if not predictions:
        raise InputError(f"no {name} to score")
    return list(predictions), list(references)
