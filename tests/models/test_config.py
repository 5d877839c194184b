"""The shared Config base: typed validation from annotations, dict/JSON round trips, presets."""

import dataclasses
from typing import Literal

import pytest

from attnkit import GPTConfig
from attnkit.errors import AttnkitError, ConfigError
from attnkit.models.config import Config


@dataclasses.dataclass(frozen=True)
class ToyConfig(Config):
    model_type = "toy"

    width: int = 8
    rate: float = 0.5
    kind: Literal["a", "b"] = "a"
    name: str | None = None
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (1, "x")
    flag: bool = False

    def validate(self):
        self.require(self.width > 0, "width", "must be positive")


def test_defaults_validate_and_int_is_accepted_for_float():
    c = ToyConfig(rate=1)
    assert c.rate == 1.0 and isinstance(c.rate, float)


@pytest.mark.parametrize("field,value,expected", [
    ("width", 2.5, "ToyConfig.width must be int"),
    ("width", True, "ToyConfig.width must be int"),  # bool is not an int here
    ("rate", "0.1", "ToyConfig.rate must be float"),
    ("kind", "c", "ToyConfig.kind must be one of 'a', 'b'"),
    ("name", 3, "ToyConfig.name must be"),
    ("sizes", (1, "2"), "ToyConfig.sizes must be"),
    ("pair", (1, 2), "ToyConfig.pair must be"),
    ("flag", 1, "ToyConfig.flag must be bool"),
])
def test_wrong_types_name_the_field(field, value, expected):
    with pytest.raises(ConfigError, match=expected):
        ToyConfig(**{field: value})


def test_range_check_names_field_and_value():
    with pytest.raises(ConfigError, match=r"ToyConfig\.width: must be positive, got -1"):
        ToyConfig(width=-1)


def test_lists_become_tuples_and_round_trip_through_json():
    c = ToyConfig.from_dict({"sizes": [3, 4], "pair": [2, "y"], "name": "n"})
    assert c.sizes == (3, 4) and c.pair == (2, "y")
    d = c.to_dict()
    assert list(d)[0] == "model_type" and d["model_type"] == "toy"
    assert ToyConfig.from_json(c.to_json()) == c


def test_from_dict_refuses_unknown_fields_and_other_model_types():
    with pytest.raises(ConfigError, match=r"unknown ToyConfig field\(s\) \['depth'\]; valid fields: \['width'"):
        ToyConfig.from_dict({"depth": 3})
    with pytest.raises(ConfigError, match="expects model_type 'toy', got 'gpt2'"):
        ToyConfig.from_dict({"model_type": "gpt2"})
    with pytest.raises(ConfigError, match="built from a dict"):
        ToyConfig.from_dict([("width", 3)])
    with pytest.raises(ConfigError, match="not valid JSON"):
        ToyConfig.from_json("{width: 3")


def test_configs_are_frozen_and_replace_revalidates():
    c = ToyConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.width = 3
    assert c.replace(width=3).width == 3
    with pytest.raises(ConfigError, match="must be positive"):
        c.replace(width=0)
    with pytest.raises(ConfigError, match="unknown ToyConfig field"):
        c.replace(depth=1)


def test_presets_are_listed_and_overridable():
    assert {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt-tiny"} <= set(GPTConfig.presets())
    cfg = GPTConfig.from_preset("gpt2", n_layers=2)
    assert (cfg.n_layers, cfg.d_model, cfg.vocab_size) == (2, 768, 50257)
    assert ToyConfig.presets() == []
    with pytest.raises(ConfigError, match="known presets: \\[\\]"):
        ToyConfig.from_preset("x")


def test_config_errors_are_attnkit_and_value_errors():
    with pytest.raises(AttnkitError):
        GPTConfig(dropout=1.5)
    with pytest.raises(ValueError, match=r"GPTConfig\.dropout: must be in \[0, 1\)"):
        GPTConfig(dropout=1.5)
