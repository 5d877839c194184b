"""How ``generate`` resolves its arguments: the call's, else the model's generation config
(:class:`~attnkit.models.generation_config.GenerationConfig`), else the defaults below."""

from __future__ import annotations

from typing import Any

from attnkit.errors import InputError
from attnkit.models.generation_config import generation_config

# generate's own defaults, for what neither the call nor the generation config sets
DEFAULTS: dict[str, Any] = {"max_new_tokens": 20, "min_new_tokens": 0, "do_sample": False, "temperature": 1.0,
                            "top_k": 50, "top_p": None, "num_beams": 1, "length_penalty": 1.0, "early_stopping": False,
                            "renormalize_logits": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                            "num_return_sequences": 1}


def resolve(model, prompt_length: int, **args) -> dict[str, Any]:
    """The value of each of ``generate``'s arguments in ``args`` (keys of :data:`DEFAULTS`):
    the call's unless None, else the generation config's, else the default. ``max_new_tokens``
    may come from the config's ``max_length``, counted as Hugging Face counts it."""
    config = generation_config(model)
    # max_length and min_length count the prompt (decoder-only) or the decoder's start token (encoder-decoder)
    used = 1 if hasattr(model, "decoder_start_ids") else prompt_length
    out = {}
    for name, value in args.items():
        if value is None:
            value = getattr(config, name)
        if value is None and name == "max_new_tokens" and config.max_length is not None:
            value = config.max_length - used
            if value < 1:
                raise InputError(f"generation_config.max_length={config.max_length} leaves no room for new tokens after "
                                 f"{used} prompt token(s); pass max_new_tokens")
        if value is None and name == "min_new_tokens" and config.min_length is not None:
            value = max(config.min_length - used, 0)
        out[name] = DEFAULTS[name] if value is None else value
    return out
