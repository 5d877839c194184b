"""Shared behaviour of model configs: frozen dataclasses with typed, validated fields,
``to_dict``/``from_dict``, a JSON round trip and named presets.

A family's config subclasses :class:`Config`, sets ``model_type``, declares fields with
defaults, and checks ranges in ``validate``. Types are checked here, once, from the
annotations: a wrong type or an unknown field is a :class:`~attnkit.ConfigError` that names the
field and what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

from attnkit.errors import ConfigError


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class of every model config."""

    model_type: ClassVar[str] = ""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            tp = hints[f.name]
            if not _type_ok(value, tp):
                raise ConfigError(
                    f"{type(self).__name__}.{f.name} must be {_describe(tp)}, got {value!r} ({type(value).__name__})"
                )
            if tp is float and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Range and consistency checks; subclasses raise :class:`ConfigError` via :meth:`require`."""

    def require(self, condition: bool, field: str, message: str) -> None:
        """Raise ``ConfigError`` naming ``field`` unless ``condition``."""
        if not condition:
            raise ConfigError(f"{type(self).__name__}.{field}: {message}, got {getattr(self, field)!r}")

    def require_positive(self, *fields: str) -> None:
        """Each of ``fields`` is > 0 (sizes, counts, epsilons)."""
        for field in fields:
            self.require(getattr(self, field) > 0, field, "must be positive")

    def require_fraction(self, *fields: str) -> None:
        """Each of ``fields`` is in [0, 1) (dropout rates, smoothing, betas)."""
        for field in fields:
            self.require(0.0 <= getattr(self, field) < 1.0, field, "must be in [0, 1)")

    def require_token_ids(self, *fields: str) -> None:
        """Each of ``fields`` is None or a token id of the config's ``vocab_size``."""
        for field in fields:
            v = getattr(self, field)
            self.require(v is None or 0 <= v < self.vocab_size, field, f"must be None or in [0, {self.vocab_size})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, with ``model_type`` first."""
        d = {"model_type": self.model_type}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from a dict; unknown fields are an error listing the valid ones."""
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__} must be built from a dict, got {type(d).__name__}")
        d = dict(d)
        mt = d.pop("model_type", cls.model_type)
        if mt != cls.model_type:
            raise ConfigError(f"{cls.__name__} expects model_type {cls.model_type!r}, got {mt!r}")
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {cls.field_names()}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_json(Path(path).read_text())

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} field(s) {unknown}; valid fields: {self.field_names()}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def presets(cls) -> list[str]:
        from attnkit.models.presets import PRESETS

        return sorted(PRESETS.get(cls.model_type, {}))

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """A named configuration (``GPTConfig.from_preset("gpt2")``), optionally with overrides."""
        from attnkit.models.presets import PRESETS

        table = PRESETS.get(cls.model_type, {})
        if name not in table:
            raise ConfigError(f"unknown {cls.model_type} preset {name!r}; known presets: {sorted(table)}")
        return cls.from_dict(copy.deepcopy({**table[name], **overrides}))  # no dict shared with the table
