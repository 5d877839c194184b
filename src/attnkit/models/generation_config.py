"""A generative model's decoding defaults: Hugging Face's ``generation_config.json``.

``model.generation_config`` holds the settings ``generate`` uses for every argument the call
leaves at ``None`` (``"config"`` for the special tokens), as in Hugging Face: an argument given
to the call wins, then the generation config, then attnkit's default (greedy, 20 new tokens,
one beam; :mod:`attnkit.generation.config`). ``from_pretrained`` reads ``generation_config.json``
(or, without one, the legacy generation fields of ``config.json``, as ``transformers`` does)
and ``save_pretrained`` writes it back. OPUS-MT checkpoints, for example, set ``num_beams``,
``max_length`` and ``bad_words_ids=[[pad]]`` (the padding token is never generated) there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from attnkit.errors import InputError
from attnkit.models.config import Config

GENERATION_CONFIG_NAME = "generation_config.json"

# Hugging Face generation settings attnkit's generate does not apply, with the values at which
# they change nothing; a checkpoint that sets another value is loaded with a warning.
UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0, "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "forced_bos_token_id": None, "sequence_bias": None, "force_words_ids": None,
    "exponential_decay_length_penalty": None, "guidance_scale": None, "stop_strings": None, "max_time": None,
    "penalty_alpha": None, "top_h": None, "dola_layers": None, "constraints": None, "watermarking_config": None,
    "token_healing": False, "forced_decoder_ids": None, "return_dict_in_generate": False, "output_scores": False,
    "output_logits": False,
}


_NOT_KEPT = ("model_type", "transformers_version", "_from_model_config")  # written by whoever saves


def _count(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# The allowed values of the numeric settings, as (check, description): checked on the config's
# fields (None = unset) and on the values generate resolves from its arguments.
RANGES: dict[str, tuple[Any, str]] = {
    **{name: (_count(1), "an int >= 1") for name in ("max_new_tokens", "max_length", "num_beams", "num_return_sequences")},
    **{name: (_count(0), "an int >= 0") for name in ("min_new_tokens", "min_length", "no_repeat_ngram_size", "top_k")},
    "repetition_penalty": (lambda v: _number(v) and v > 0, "> 0 (1.0 = off)"),
    "temperature": (lambda v: _number(v) and v >= 0, ">= 0"),
    "top_p": (lambda v: _number(v) and 0 < v <= 1, "in (0, 1]"),
    "min_p": (lambda v: _number(v) and 0 <= v <= 1, "in [0, 1]"),
    "typical_p": (lambda v: _number(v) and 0 < v <= 1, "in (0, 1]"),
    **{name: (lambda v: _number(v) and 0 <= v < 1, "in [0, 1)") for name in ("epsilon_cutoff", "eta_cutoff")},
}


@dataclass(frozen=True)
class GenerationConfig(Config):
    """Decoding defaults; ``None`` = not set (``generate``'s own default applies).

    Fields have Hugging Face's names and meanings: ``max_length`` counts the prompt for
    decoder-only models and the start token for encoder-decoder ones (``max_new_tokens`` wins
    when both are set), and so does ``min_length`` (``min_new_tokens`` wins);
    ``renormalize_logits`` re-normalises beam-search scores after tokens are removed.
    ``other`` keeps what a checkpoint's file holds besides (``bos_token_id``, settings attnkit
    does not apply), so that saving writes it back. ``to_dict``/``from_dict`` round-trip attnkit's layout;
    ``from_hf``/``to_hf`` read and write Hugging Face's file.
    """

    model_type = "generation"

    max_new_tokens: int | None = None
    max_length: int | None = None
    min_new_tokens: int | None = None
    min_length: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    epsilon_cutoff: float | None = None
    eta_cutoff: float | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | Literal["never"] | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    forced_eos_token_id: int | tuple[int, ...] | None = None
    decoder_start_token_id: int | None = None
    bad_words_ids: tuple[tuple[int, ...], ...] | None = None
    suppress_tokens: tuple[int, ...] | None = None
    begin_suppress_tokens: tuple[int, ...] | None = None
    renormalize_logits: bool | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    num_return_sequences: int | None = None
    other: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if self.bad_words_ids is not None:  # tuples all the way down, like the other list fields
            object.__setattr__(self, "bad_words_ids", tuple(tuple(w) for w in self.bad_words_ids))

    def validate(self) -> None:
        for name, (ok, allowed) in RANGES.items():
            self.require(getattr(self, name) is None or ok(getattr(self, name)), name, f"must be None or {allowed}")
        self.require(self.bad_words_ids is None or all(len(w) for w in self.bad_words_ids), "bad_words_ids",
                     "must hold non-empty lists of token ids ([[id, ...], ...])")
        for name in ("eos_token_id", "pad_token_id", "forced_eos_token_id", "decoder_start_token_id", "suppress_tokens",
                     "begin_suppress_tokens"):
            self.require(all(i >= 0 for i in _ids(getattr(self, name))), name, "must hold token ids >= 0")
        self.require(all(i >= 0 for w in self.bad_words_ids or () for i in w), "bad_words_ids",
                     "must hold token ids >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if d["bad_words_ids"] is not None:
            d["bad_words_ids"] = [list(w) for w in d["bad_words_ids"]]
        return d

    def to_hf(self) -> dict[str, Any]:
        """Hugging Face's ``generation_config.json``: the fields that are set, and ``other``."""
        d = self.to_dict()
        d.pop("model_type")
        return {**d.pop("other"), **{k: v for k, v in d.items() if v is not None}}

    @classmethod
    def from_hf(cls, d: dict[str, Any], source: str, legacy: bool = False) -> GenerationConfig:
        """The fields attnkit applies, from a Hugging Face generation config (or, with
        ``legacy``, from the generation fields of a ``config.json``, which hold no special
        tokens for decoding: the model config has those). Warns about settings that would
        change Hugging Face's output and that attnkit does not apply."""
        fields = set(cls.field_names()) - {"other"}
        if legacy:  # a model config: keep only its generation settings, and nothing to write back
            fields -= {"eos_token_id", "pad_token_id", "forced_eos_token_id", "decoder_start_token_id"}
        ignored = [k for k, default in UNSUPPORTED_DEFAULTS.items() if d.get(k, default) not in (default, None)]
        d = {k: v for k, v in d.items() if v is not None}
        other = {} if legacy else {k: v for k, v in d.items() if k not in fields and k not in _NOT_KEPT}
        if ignored:
            warnings.warn(f"{source} sets {', '.join(ignored)}, which attnkit's generate does not apply: its output "
                          "can differ from Hugging Face's", stacklevel=3)
        return cls(**{k: v for k, v in d.items() if k in fields}, other=other)


def _ids(value) -> tuple[int, ...]:
    return () if value is None else (value,) if isinstance(value, int) else tuple(value)


_EMPTY = GenerationConfig()


def generation_config(model) -> GenerationConfig:
    """``model.generation_config``, or an empty one for a model without it."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return _EMPTY
    if isinstance(config, dict):
        raise InputError("model.generation_config must be an attnkit.GenerationConfig, got a dict; "
                         "use attnkit.GenerationConfig.from_dict(...)")
    return config
