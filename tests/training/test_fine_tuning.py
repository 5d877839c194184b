"""Fine-tuning from a checkpoint with the lm and translation tasks (``model.pretrained``): the run
starts from the checkpoint's weights (its first loss is the checkpoint's, far below a new
model's) with the checkpoint's own tokenizer; the translation task fine-tunes T5 with a task
prefix, reads JSON lines, and reports scores of decoded validation sources."""

import json

import pytest

import attnkit
from attnkit import ConfigError
from attnkit.data.translation import load_pairs
from attnkit.generation.translation import translate
from attnkit.metrics import chrf, rouge
from attnkit.tokenizers import Tokenizer
from attnkit.training import run_recipe


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def first_loss(out):
    return next(r["loss"] for r in records(out) if "loss" in r)


def test_a_language_model_fine_tunes_from_its_checkpoint_with_its_tokenizer(tiny_lm, tmp_path):
    run_recipe(tiny_lm.recipe, tmp_path / "base", [*tiny_lm.overrides, "train.max_steps=60", "train.save_every=60",
                                                   "train.eval_every=0", "train.lr=3e-3"])
    checkpoint = tmp_path / "base" / "checkpoints" / "step-60"
    base_losses = [r["loss"] for r in records(tmp_path / "base") if "loss" in r]
    tuned = tmp_path / "tuned"
    recipe = tmp_path / "tune.toml"
    recipe.write_text(f'task = "lm"\n[model]\npretrained = "{checkpoint}"\nconfig = {{ dropout = 0.1 }}\n'
                      f'[tokenizer]\nvocab_size = 50\n[data]\npath = "{tiny_lm.corpus}"\n')
    run_recipe(recipe, tuned, ["train.batch_size=4", "train.max_steps=2", "train.eval_every=0", "train.save_every=2",
                               "train.progress=false", "train.device=cpu", "train.lr=1e-5"])
    # the checkpoint's tokenizer, not a new one (vocab_size=50 is not used)
    assert (tuned / "tokenizer" / "tokenizer.json").read_text() == (checkpoint / "tokenizer.json").read_text()
    assert first_loss(tuned) < base_losses[0] - 1.0  # a new model starts near ln(V)
    assert abs(first_loss(tuned) - base_losses[-1]) < 0.5
    model = attnkit.from_pretrained(tuned / "checkpoints" / "step-2")
    assert model.config.n_layers == 2 and model.config.dropout == 0.1


SWAPS = [(f"{a} {b}", f"{b} {a}") for a in ("one", "two", "three", "four", "five") for b in ("red", "blue", "green")]
HELD_OUT = SWAPS[::4]  # pairs of words never seen together in training


def t5_recipe(tmp_path, name: str, body: str, train: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'''task = "translation"
[model]
family = "T5"
{body}
[tokenizer]
kind = "char"
special_tokens = ["<pad>", "</s>", "<unk>"]
[data]
train = "{tmp_path / 'train.jsonl'}"
valid = "{tmp_path / 'valid.tsv'}"
source_field = "document"
target_field = "summary"
max_tokens = 512
[train]
progress = false
device = "cpu"
warmup_steps = 10
schedule = "constant"
{train}
''')
    return path


def test_t5_fine_tunes_with_a_task_prefix_and_reports_decoded_scores(tmp_path):
    """A tiny T5 learns to swap two words (JSON-lines data), reporting chrF and ROUGE of its greedy
    output on held-out pairs at each evaluation; then a run from that checkpoint with a task prefix starts where
    it ended, with its tokenizer."""
    with (tmp_path / "train.jsonl").open("w") as f:
        for source, target in [p for p in SWAPS if p not in HELD_OUT] * 8:
            f.write(json.dumps({"document": source, "summary": target}) + "\n")
    (tmp_path / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in HELD_OUT))
    base = tmp_path / "base"
    run_recipe(t5_recipe(tmp_path, "base", 'preset = "t5-tiny"\nconfig = { dropout = 0.0 }',
                         "max_steps = 150\nlr = 3e-3\neval_every = 150\nsave_every = 150"), base,
               ['data.metrics=["chrf", "rouge"]'])
    result = [r for r in records(base) if "eval_chrf" in r][-1]
    checkpoint = base / "checkpoints" / "step-150"
    model, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    assert isinstance(model, attnkit.T5)
    pairs = load_pairs(str(tmp_path / "valid.tsv"))
    hypotheses = translate(model, tok, [s for s, _ in pairs], num_beams=1)
    assert result["eval_chrf"] == pytest.approx(chrf(hypotheses, [t for _, t in pairs]))
    expected = rouge(hypotheses, [t for _, t in pairs])
    assert {k: result[f"eval_{k}"] for k in expected} == pytest.approx(expected)
    print("held-out swaps:", hypotheses, result)
    assert result["eval_chrf"] > 50  # it has learned something of the swap
    # data.metric_examples: only the first pairs are decoded for the scores
    from attnkit.training.translation import TextToTextDataSource

    source = TextToTextDataSource(pairs, pairs, tok, 512, None, ("chrf",), metric_examples=2)
    assert source.task_metrics(model) == {"chrf": pytest.approx(chrf(hypotheses[:2], [t for _, t in pairs[:2]]))}

    tuned = tmp_path / "tuned"
    run_recipe(t5_recipe(tmp_path, "tuned", f'pretrained = "{checkpoint}"', "max_steps = 1\nlr = 1e-4\neval_every = 0\n"
                                                                             "save_every = 1"), tuned,
               ['data.source_prefix=swap: '])
    assert (tuned / "tokenizer" / "tokenizer.json").read_text() == (checkpoint / "tokenizer.json").read_text()
    base_losses = [r["loss"] for r in records(base) if "loss" in r]
    assert first_loss(tuned) < base_losses[0] - 1.0 and isinstance(attnkit.from_pretrained(tuned / "checkpoints" / "step-1"),
                                                                   attnkit.T5)


def test_fine_tuning_mistakes_are_config_errors(tiny_lm, tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.kind = 'pretrained' needs tokenizer.path or model.pretrained"):
        run_recipe(tiny_lm.recipe, tmp_path / "a", [*tiny_lm.overrides, "tokenizer.kind=pretrained"])
    run_recipe(tiny_lm.recipe, tmp_path / "base", [*tiny_lm.overrides, "train.max_steps=1", "train.save_every=1"])
    checkpoint = tmp_path / "base" / "checkpoints" / "step-1"
    with pytest.raises(ConfigError, match=r"model.config: \['n_layer'\] are not GPTConfig fields"):
        run_recipe(tiny_lm.recipe, tmp_path / "b", [*tiny_lm.overrides, f"model.pretrained={checkpoint}",
                                                    "model.config.n_layer=3"])
    # the recipe's own architecture (3 layers of width 128) does not fit the 2 x 32 checkpoint
    with pytest.raises(ConfigError, match=r"model.config with model.pretrained: GPT config changes .* would change "
                                          r"the model's tensors \(decoder.layers.0"):
        run_recipe(tiny_lm.recipe, tmp_path / "b", [f"data.path={tiny_lm.corpus}", f"model.pretrained={checkpoint}",
                                                    "train.device=cpu"])
    recipe = tmp_path / "c.toml"
    recipe.write_text(f'task = "translation"\n[model]\nfamily = "GPT"\npretrained = "{checkpoint}"\n')
    with pytest.raises(ConfigError, match="task 'translation' needs an encoder-decoder model"):
        run_recipe(recipe, tmp_path / "c", ["train.device=cpu"])
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
