"""missing_packages names what a metric needs before a run trains for it, and the tasks use it:
a requested metric whose package is missing stops the run before anything is written."""

import importlib.util

import pytest

from attnkit import ConfigError
from attnkit.metrics import PACKAGES, missing_packages
from attnkit.training import run_recipe


@pytest.fixture
def without(monkeypatch):
    """Pretend the given modules are not installed."""
    real = importlib.util.find_spec

    def hide(*modules):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))

    return hide


def test_missing_packages_gives_pip_names(without):
    assert set(PACKAGES) >= {"bleu", "chrf", "rouge", "wer", "cer", "accuracy", "f1", "entity_scores"}
    without("rouge_score", "sklearn")
    assert missing_packages(["rouge", "f1", "accuracy"]) == ["rouge-score", "scikit-learn"]
    assert missing_packages([]) == []


def test_a_translation_run_asking_for_a_metric_it_cannot_compute_stops_first(without, tmp_path):
    without("rouge_score")
    recipe = tmp_path / "r.toml"
    recipe.write_text('task = "translation"\n[data]\nmetrics = ["rouge"]\n[train]\ndevice = "cpu"\n')
    with pytest.raises(ConfigError, match=r"data.metrics \['rouge'\] need rouge-score: pip install rouge-score"):
        run_recipe(recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_classification_run_asking_for_f1_without_scikit_learn_stops_first(without, tmp_path):
    without("sklearn")
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'task = "classification"\n[model]\npreset = "bert-tiny"\n[tokenizer]\nkind = "char"\n'
                      f'[data]\ntrain = "{tmp_path / "t.jsonl"}"\nf1_average = "macro"\n[train]\ndevice = "cpu"\n')
    with pytest.raises(ConfigError, match="data.f1_average needs scikit-learn"):
        run_recipe(recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_token_classification_run_without_seqeval_drops_only_the_entity_scores(without, tmp_path):
    import json

    without("seqeval")
    (tmp_path / "t.conll").write_text("Anna B-PER\nlives O\nhere O\n\nOslo B-LOC\nis O\ncold O\n\n" * 4)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'task = "token_classification"\n[model]\npreset = "bert-tiny"\n[tokenizer]\nkind = "char"\n'
                      f'special_tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]\n[data]\ntrain = "{tmp_path / "t.conll"}"\n'
                      '[train]\ndevice = "cpu"\nmax_steps = 2\neval_every = 2\nsave_every = 2\nbatch_size = 2\n'
                      'progress = false\n')
    with pytest.warns(UserWarning, match="entity-level precision, recall and F1 are not reported: pip install seqeval"):
        run_recipe(recipe, tmp_path / "out")
    evals = [r for r in map(json.loads, (tmp_path / "out" / "metrics.jsonl").read_text().splitlines())
             if "eval_loss" in r]
    assert evals and "eval_accuracy" in evals[-1] and "eval_f1" not in evals[-1]
