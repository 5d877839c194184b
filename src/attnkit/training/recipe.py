"""Recipes: a run described in TOML (model, tokenizer, data, optimiser, schedule, steps).

A recipe file has one table per section; ``task`` (top level, default ``"lm"``) picks the
module that defines the sections and runs them (:data:`TASKS`)::

    task = "lm"
    [model]                       # attnkit class + preset + config overrides
    family = "GPT"
    preset = "gpt-small"
    config = { n_layers = 4 }
    [tokenizer]
    kind = "byte_bpe"
    vocab_size = 2048
    [data]
    path = "stdlib"
    [train]                       # attnkit.training.TrainConfig
    max_steps = 500

``--set train.lr=1e-3`` overrides any field; values are parsed as TOML literals (``3``,
``1e-3``, ``true``, ``"text"``, ``[1, 2]``), bare words as strings. Unknown or ill-typed
fields are a :class:`~attnkit.ConfigError` naming the field and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import typing
from pathlib import Path
from typing import Any

from attnkit.errors import ConfigError, InputError
from attnkit.models.config import Config, _describe, _type_ok

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# recipe ``task`` -> module defining ``Recipe`` (its sections) and ``run(recipe, out_dir, resume)``
TASKS: dict[str, str] = {
    "lm": "attnkit.training.lm",
    "translation": "attnkit.training.translation",
    "classification": "attnkit.training.classification",
    "speech": "attnkit.training.speech",
    "token_classification": "attnkit.training.token_classification",
    "question_answering": "attnkit.training.question_answering",
    "image_classification": "attnkit.training.image_classification",
    "image_text": "attnkit.training.image_text",
}


@dataclasses.dataclass(frozen=True)
class ModelSection(Config):
    """``[model]``: an attnkit model class (``family``), a preset of it, and config overrides;
    or ``pretrained``, a checkpoint directory or hub id to start from (fine-tuning: the
    checkpoint's config replaces ``preset``, and ``config`` may only change settings that keep
    the checkpoint's tensors, such as ``dropout``). ``lora`` (``r``, ``alpha``, ``dropout``,
    ``targets``, ``trainable``, ``dora``: :func:`attnkit.nn.add_lora`'s arguments) trains low-rank
    adapters instead of the whole model."""

    family: str = "GPT"
    preset: str | None = None
    config: dict = dataclasses.field(default_factory=dict)
    pretrained: str | None = None
    lora: dict = dataclasses.field(default_factory=dict)

    def model_class(self):
        import attnkit

        cls = getattr(attnkit, self.family, None)
        if not (isinstance(cls, type) and hasattr(cls, "config_class")):
            raise ConfigError(f"model.family {self.family!r} is not an attnkit model class (e.g. 'GPT')")
        return cls

    def model_config(self, **fixed):
        """The model config: the preset (or defaults), then ``config`` overrides, then ``fixed``
        (values a task takes from its data, such as special token ids: those the family's config
        has, since T5 has no ``bos_token_id``)."""
        config_class = self.model_class().config_class
        names = set(config_class.field_names())
        fields = {**self.config, **{k: v for k, v in fixed.items() if k in names}}
        try:
            if self.preset is not None:
                return config_class.from_preset(self.preset, **fields)
            return config_class.from_dict(fields)
        except ConfigError as e:
            raise ConfigError(f"model.config: {e}") from None

    def build(self, tokenizer=None, fields: dict | None = None, **new):
        """The model, in train mode: ``pretrained`` loaded by ``family``'s ``from_pretrained``
        with the ``config`` overrides and ``fields`` (a classifier's labels), else a new model
        of :meth:`model_config` with ``fields`` and ``new`` (what a new model takes from the
        data: ``vocab_size``, special token ids). A ``tokenizer`` with more tokens than the
        model's vocabulary is a :class:`ConfigError`."""
        cls, fields = self.model_class(), fields or {}
        if self.pretrained is not None:
            unknown = sorted(set(self.config) - set(cls.config_class.field_names()))
            if unknown:
                raise ConfigError(f"model.config: {unknown} are not {cls.config_class.__name__} fields")
            model = cls.from_pretrained(self.pretrained, **fields).train()
            if self.config:
                try:
                    model = model.with_config(**self.config)
                except ConfigError as e:
                    raise ConfigError(f"model.config with model.pretrained: {e}") from None
        else:
            model = cls(self.model_config(**fields, **new))
        if self.lora:
            from attnkit.nn.lora import add_lora

            unknown = sorted(set(self.lora) - {"r", "alpha", "dropout", "targets", "trainable", "dora"})
            if unknown:
                raise ConfigError(f"model.lora: unknown field {unknown[0]!r}; valid: r, alpha, dropout, targets, "
                                  "trainable, dora")
            try:
                add_lora(model, **self.lora)
            except InputError as e:
                raise ConfigError(f"model.lora: {e}") from None
        if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                              f"{model.config.vocab_size} (vocab_size): use the checkpoint's own tokenizer")
        return model


def parse_value(text: str) -> Any:
    """A ``--set`` value as a TOML literal (``3``, ``1e-3``, ``true``, ``[1, 2]``); otherwise the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _section_types(recipe_class) -> dict[str, type[Config]]:
    hints = typing.get_type_hints(recipe_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(recipe_class)}


def build_section(default: Config, name: str, table: Any, source: str) -> Config:
    """A section from a TOML table: ``default`` (the task's defaults for it) with the table's
    fields replaced; errors name ``source``, the dotted field and the valid fields."""
    cls = type(default)
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table, got {table!r}")
    valid = cls.field_names()
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(f"{source}: unknown field {', '.join(f'{name}.{k}' for k in unknown)}; "
                          f"valid [{name}] fields: {', '.join(valid)}")
    hints = typing.get_type_hints(cls)
    for key, value in table.items():
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"{source}: {name}.{key} must be {_describe(hints[key])}, got {value!r} "
                              f"({type(value).__name__})")
    try:
        return default.replace(**table)
    except ConfigError as e:
        raise ConfigError(f"{source}: [{name}] {e}") from None


def apply_overrides(tables: dict, overrides: list[str], sections: dict[str, type[Config]]) -> dict:
    """Set ``section.field=value`` (``model.config.x=value`` for model-config fields) in ``tables``."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. train.max_steps=100")
        section, field = parts[0], parts[1]
        if section not in sections:
            raise ConfigError(f"--set {key}: unknown section {section!r}; valid sections: {', '.join(sections)}")
        cls = sections[section]
        if field not in cls.field_names():
            raise ConfigError(f"--set {key}: unknown field {key!r}; valid [{section}] fields: "
                              f"{', '.join(cls.field_names())}")
        tp = typing.get_type_hints(cls)[field]
        if len(parts) > 2 and not (tp is dict or typing.get_origin(tp) is dict):
            raise ConfigError(f"--set {key}: {section}.{field} is not a table")
        value = parse_value(text)
        if len(parts) == 2 and not _type_ok(value, tp) and _type_ok(text, tp):
            value = text  # e.g. data.path=123 is the string "123"
        table = tables.setdefault(section, {})
        for p in parts[1:-1]:
            table = table.setdefault(p, {})
        table[parts[-1]] = value
    return tables


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """Read a recipe file, apply ``--set`` overrides, and build its typed sections.

    Returns the task module's ``Recipe`` dataclass (``recipe.task`` names the task).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file {path} does not exist")
    try:
        tables = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe file {path} is not valid TOML: {e}") from None
    task = tables.pop("task", "lm")
    if not isinstance(task, str) or task not in TASKS:
        raise ConfigError(f"{path}: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    recipe_class = importlib.import_module(TASKS[task]).Recipe
    sections = _section_types(recipe_class)
    unknown = sorted(set(tables) - set(sections))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; valid sections: {', '.join(sections)} (and task)")
    apply_overrides(tables, list(overrides), sections)
    defaults = recipe_class()  # the task's own defaults (translation: a Transformer, inverse_sqrt)
    return recipe_class(**{name: build_section(getattr(defaults, name), name, tables.get(name, {}), str(path))
                           for name in sections})


def recipe_to_dict(recipe) -> dict:
    """Plain dict of a recipe's sections (what ``trainer_state.json`` records)."""
    out = {}
    for f in dataclasses.fields(recipe):
        d = getattr(recipe, f.name).to_dict()
        d.pop("model_type", None)
        out[f.name] = d
    return out


def run_recipe(path: str | Path, out_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), resume: bool = False):
    """Load the recipe and run its task into ``out_dir`` (``attnkit train``). Returns the Trainer."""
    recipe = load_recipe(path, overrides)
    task = tomllib.loads(Path(path).read_text()).get("task", "lm")
    return importlib.import_module(TASKS[task]).run(recipe, out_dir, resume=resume)
