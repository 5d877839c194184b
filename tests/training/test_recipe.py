"""Recipes: TOML sections as typed configs, typed ``--set`` overrides, errors that name the field."""

import pytest

from attnkit.errors import ConfigError
from attnkit.training.recipe import load_recipe, parse_value, recipe_to_dict
from attnkit.training.trainer import TrainConfig


def write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_demo_recipe_has_the_documented_fields(tiny_lm):
    recipe = load_recipe(tiny_lm.recipe)
    for field in ("max_steps", "batch_size", "lr", "seed", "save_every", "eval_every"):
        assert isinstance(getattr(recipe.train, field), (int, float))
    assert recipe.model.family == "GPT" and recipe.data.path == "stdlib" and recipe.tokenizer.kind == "byte_bpe"
    config = recipe.model.model_config(vocab_size=recipe.tokenizer.vocab_size)
    assert (config.d_model, config.n_layers) == (recipe.model.config["d_model"], recipe.model.config["n_layers"])


def test_set_overrides_parse_typed_values(tiny_lm):
    recipe = load_recipe(tiny_lm.recipe, ["train.max_steps=3", "train.lr=1e-3", "train.compile=true",
                                          "train.device=cpu", "data.path=123", "model.config.n_layers=1",
                                          "tokenizer.special_tokens=['<eos>']", "data.max_files=7"])
    t = recipe.train
    assert (t.max_steps, t.lr, t.compile, t.device) == (3, 0.001, True, "cpu")
    assert type(t.max_steps) is int and type(t.lr) is float
    assert recipe.data.path == "123" and recipe.data.max_files == 7
    assert recipe.tokenizer.special_tokens == ("<eos>",)
    assert recipe.model.model_config().n_layers == 1


def test_parse_value_follows_toml():
    assert parse_value("3") == 3 and parse_value("3.0") == 3.0 and parse_value("1_000") == 1000
    assert parse_value("false") is False and parse_value('"x y"') == "x y" and parse_value("[1, 2]") == [1, 2]
    assert parse_value("runs/out") == "runs/out"


def test_unknown_field_in_file_names_it_and_lists_valid_ones(tmp_path):
    path = write(tmp_path, "[train]\nmax_step = 3\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(path)
    assert "train.max_step" in str(e.value) and str(path) in str(e.value)
    assert all(f in str(e.value) for f in TrainConfig.field_names())


def test_unknown_field_in_set_names_it_and_lists_valid_ones(tiny_lm):
    with pytest.raises(ConfigError, match=r"train\.max_step'.*valid \[train\] fields: max_steps, batch_size"):
        load_recipe(tiny_lm.recipe, ["train.max_step=3"])


@pytest.mark.parametrize("override,field", [("train.max_steps=abc", "train.max_steps must be int"),
                                            ("train.lr=fast", "train.lr must be float"),
                                            ("train.compile=3", "train.compile must be bool"),
                                            ("train.precision=fp8", "train.precision must be one of")])
def test_ill_typed_value_is_an_error_naming_the_field(tiny_lm, override, field):
    with pytest.raises(ConfigError, match=field):
        load_recipe(tiny_lm.recipe, [override])


def test_out_of_range_value_is_an_error_naming_the_field(tiny_lm):
    with pytest.raises(ConfigError, match="max_steps"):
        load_recipe(tiny_lm.recipe, ["train.max_steps=0"])


def test_unknown_model_config_field_lists_the_model_fields(tiny_lm):
    recipe = load_recipe(tiny_lm.recipe, ["model.config.n_layer=2"])
    with pytest.raises(ConfigError, match=r"model\.config.*n_layer.*valid fields.*n_layers"):
        recipe.model.model_config()


def test_unknown_section_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section.*'trian'.*valid sections: model, tokenizer, data, train"):
        load_recipe(write(tmp_path, "[trian]\nlr = 1.0\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(write(tmp_path, "[train\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="section.field=value"):
        load_recipe(write(tmp_path, ""), ["max_steps=3"])


def test_recipe_round_trips_to_a_plain_dict(tiny_lm):
    d = recipe_to_dict(load_recipe(tiny_lm.recipe, ["train.max_steps=3"]))
    assert d["train"]["max_steps"] == 3 and "model_type" not in d["train"]
    assert TrainConfig.from_dict(d["train"]) == load_recipe(tiny_lm.recipe, ["train.max_steps=3"]).train


def test_data_exclude_and_bounds_select_files_in_path_order(tmp_path):
    from attnkit.errors import DataError
    from attnkit.training.lm import DataSection

    for name, size in [("a.py", 10), ("b/skip.py", 10), ("c.py", 10), ("d.py", 10)]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x" * size)
    names = lambda section: [f.relative_to(tmp_path).as_posix() for f in section.files()]  # noqa: E731
    assert names(DataSection(path=str(tmp_path), exclude=("b/*",))) == ["a.py", "c.py", "d.py"]
    assert names(DataSection(path=str(tmp_path), exclude=("b/*",), max_bytes=25)) == ["a.py", "c.py"]
    assert names(DataSection(path=str(tmp_path), max_files=2)) == ["a.py", "b/skip.py"]
    with pytest.raises(DataError, match="no file left"):
        DataSection(path=str(tmp_path), exclude=("*",)).files()


def test_stdlib_recipe_corpus_leaves_out_codec_tables_and_tests(tiny_lm):
    files = load_recipe(tiny_lm.recipe).data.files()
    assert files and not [f for f in files if "encodings" in f.parts or "test" in f.parts]
    assert sum(f.stat().st_size for f in files) <= 4_000_000


def test_translation_recipe_starts_from_the_translation_defaults(tmp_path):
    from attnkit.training.translation import Recipe

    recipe = load_recipe(write(tmp_path, 'task = "translation"\n[train]\nmax_steps = 10\n'))
    defaults = Recipe()
    assert recipe.model == defaults.model and recipe.model.family == "Transformer"
    assert recipe.train.schedule == "inverse_sqrt" and recipe.train.max_steps == 10
    assert recipe.tokenizer.special_tokens == ("<pad>", "<s>", "</s>", "<unk>")
    # a field the file sets replaces the default; the others stay
    recipe = load_recipe(write(tmp_path, 'task = "translation"\n[train]\nschedule = "cosine"\n'))
    assert recipe.train.schedule == "cosine" and recipe.train.warmup_steps == defaults.train.warmup_steps


@pytest.mark.parametrize("task", ["[1]", "{ a = 1 }", "3"])
def test_a_task_that_is_not_a_name_is_a_config_error(tmp_path, task):
    with pytest.raises(ConfigError, match="unknown task"):
        load_recipe(write(tmp_path, f"task = {task}\n"))


@pytest.mark.parametrize("field,value", [("min_lr_ratio", -1.0), ("min_lr_ratio", 5.0), ("beta1", 2.0),
                                         ("beta2", -0.1), ("eps", 0.0)])
def test_optimizer_and_schedule_ranges_are_checked(field, value):
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["max_files", "max_bytes"])
def test_data_bounds_must_be_positive(field):
    from attnkit.training.lm import DataSection

    with pytest.raises(ConfigError, match=f"DataSection.{field}"):
        DataSection(**{field: -1})


@pytest.mark.parametrize("override", ["model.config.n_layer=2", "model.preset=gpt-nope", "model.family=Nope"])
def test_a_bad_model_config_fails_before_the_run_writes_anything(tiny_lm, tmp_path, override):
    from attnkit.training.recipe import run_recipe

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="model"):
        run_recipe(tiny_lm.recipe, out, [*tiny_lm.overrides, override])
    assert not out.exists()
