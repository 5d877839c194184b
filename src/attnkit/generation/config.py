"""How ``generate`` resolves its arguments: the call's, else the model's generation config
(:class:`~attnkit.models.generation_config.GenerationConfig`), else the defaults below."""

from __future__ import annotations

from typing import Any

from attnkit.errors import InputError
from attnkit.models.generation_config import generation_config

# generate's own defaults, for what neither the call nor the generation config sets
DEFAULTS: dict[str, Any] = {"max_new_tokens": 20, "min_new_tokens": 0, "do_sample": False, "temperature": 1.0,
                            "top_k": 50, "top_p": None, "min_p": None, "typical_p": None, "epsilon_cutoff": None,
                            "eta_cutoff": None, "num_beams": 1, "length_penalty": 1.0,
                            "early_stopping": False,
                            "renormalize_logits": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                            "num_return_sequences": 1}


# the settings counted as totals by Hugging Face's max_length / min_length
_TOTALS = {"max_new_tokens": "max_length", "min_new_tokens": "min_length"}


def resolve(model, prompt_length: int, max_length: int | None = None, min_length: int | None = None,
            **args) -> dict[str, Any]:
    """The value of each of ``generate``'s arguments in ``args`` (keys of :data:`DEFAULTS`):
    the call's unless None, else the generation config's, else the default. ``max_new_tokens``
    may also come from a ``max_length`` (the call's, else the config's), counted as Hugging Face
    counts it, and ``min_new_tokens`` from a ``min_length``; as in Hugging Face, a
    ``max_new_tokens`` from the call or the config wins over either ``max_length``.
    ``prompt_length``: the tokens those totals count before the new ones (the prompt of a
    decoder-only model; the decoder's start token or prompt of an encoder-decoder one)."""
    config = generation_config(model)
    used = prompt_length
    call_totals = {"max_length": max_length, "min_length": min_length}

    def new_tokens(name: str, total, source: str) -> int:
        field = _TOTALS[name]
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise InputError(f"{source}{field} must be an int >= 0, got {total!r}")
        if name == "min_new_tokens":
            return max(total - used, 0)
        if total - used < 1:
            raise InputError(f"{source}{field}={total} leaves no room for new tokens after {used} prompt token(s); "
                             "pass max_new_tokens")
        return total - used

    out = {}
    for name, value in args.items():
        if value is None:
            value = getattr(config, name)
        field = _TOTALS.get(name)
        if value is None and field and call_totals[field] is not None:
            value = new_tokens(name, call_totals[field], "")
        elif value is None and field and getattr(config, field) is not None:
            value = new_tokens(name, getattr(config, field), "generation_config.")
        out[name] = DEFAULTS[name] if value is None else value
    return out
