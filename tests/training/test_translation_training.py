"""Training the Transformer the paper's way: the translation recipe (joint BPE, token-count
batches, eq. 3 schedule), checkpoint averaging, and the translate / evaluate / average commands."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import attnkit
from attnkit import CheckpointError
from attnkit.cli import app
from attnkit.data.translation import TranslationDataSource
from attnkit.generation.translation import translate
from attnkit.models.transformer import Transformer, TransformerConfig
from attnkit.tokenizers import Tokenizer
from attnkit.training import TrainConfig, Trainer, load_recipe
from attnkit.training.averaging import average_checkpoints

TINY = dict(vocab_size=40, n_positions=32, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1)

RECIPE = """
task = "translation"
[model]
family = "Transformer"
preset = "transformer-tiny"
config = { n_positions = 64, d_model = 16, d_ff = 32, n_heads = 2, n_encoder_layers = 1, n_decoder_layers = 1 }
[tokenizer]
vocab_size = 300
special_tokens = ["<pad>", "<s>", "</s>", "<unk>"]
[data]
train = "numbers"
valid = "{valid}"
max_tokens = 256
[train]
max_steps = 4
lr = 1.0
schedule = "inverse_sqrt"
warmup_steps = 2
weight_decay = 0.0
beta2 = 0.98
eps = 1e-9
grad_clip = 0.0
eval_every = 4
save_every = 2
keep_last = 2
progress = false
device = "cpu"
"""


# -- checkpoint averaging ----------------------------------------------------------------------

def test_average_checkpoints_is_the_elementwise_mean(tmp_path):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = Transformer(TransformerConfig(**TINY))
        model.generation_config = attnkit.GenerationConfig(num_beams=4, length_penalty=0.6)
        model.save_pretrained(tmp_path / f"c{seed}")
        models.append(model)
    (tmp_path / "c2" / "tokenizer.json").write_text("{}")
    average_checkpoints([tmp_path / f"c{i}" for i in range(3)], tmp_path / "avg")
    averaged = attnkit.from_pretrained(tmp_path / "avg")
    for name, p in averaged.state_dict().items():
        expected = torch.stack([m.state_dict()[name] for m in models]).mean(0)
        torch.testing.assert_close(p, expected, atol=1e-6, rtol=1e-6)
    assert (tmp_path / "avg" / "tokenizer.json").read_text() == "{}"
    assert (averaged.generation_config.num_beams, averaged.generation_config.length_penalty) == (4, 0.6)
    (tmp_path / "c1" / "generation_config.json").write_text('{"num_beams": 2}')
    with pytest.raises(CheckpointError, match="only checkpoints with the same generation config"):
        average_checkpoints([tmp_path / f"c{i}" for i in range(3)], tmp_path / "avg2")
    for i in range(3):  # averaged again into avg by checkpoints without one: the old file goes
        (tmp_path / f"c{i}" / "generation_config.json").unlink()
    average_checkpoints([tmp_path / f"c{i}" for i in range(3)], tmp_path / "avg")
    assert attnkit.from_pretrained(tmp_path / "avg").generation_config.num_beams is None


def test_averaging_different_models_or_into_an_input_is_an_error(tmp_path):
    Transformer(TransformerConfig(**TINY)).save_pretrained(tmp_path / "a")
    Transformer(TransformerConfig(**{**TINY, "d_ff": 64})).save_pretrained(tmp_path / "b")
    with pytest.raises(CheckpointError, match="differs"):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "avg")
    with pytest.raises(CheckpointError, match="is one of the checkpoints"):
        average_checkpoints([tmp_path / "a"], tmp_path / "a")
    with pytest.raises(CheckpointError, match="not a model directory"):
        average_checkpoints([tmp_path / "a", tmp_path / "nothing"], tmp_path / "avg")
    Transformer(TransformerConfig(**TINY)).save_pretrained(tmp_path / "c")
    (tmp_path / "a" / "tokenizer.json").write_text('{"vocab": 1}')
    (tmp_path / "c" / "tokenizer.json").write_text('{"vocab": 2}')
    with pytest.raises(CheckpointError, match=r"c/tokenizer.json differs from .*a/tokenizer.json; only checkpoints "
                                              "with the same tokenizer"):
        average_checkpoints([tmp_path / "a", tmp_path / "c"], tmp_path / "avg")


# -- learning a tiny parallel corpus -----------------------------------------------------------

def test_trainer_learns_to_translate_a_small_parallel_set(tmp_path):
    """Label-smoothed training with token-count batches, then beam-4 decoding, recovers the
    reordering (German units before tens) on the training pairs."""
    pairs = [("twenty-one", "einundzwanzig"), ("thirty-two", "zweiunddreißig"), ("twenty-three", "dreiundzwanzig"),
             ("thirty-one", "einunddreißig"), ("twenty-two", "zweiundzwanzig"), ("thirty-three", "dreiunddreißig")]
    tok = Tokenizer.train_bpe(["\n".join(s for s, _ in pairs), "\n".join(t for _, t in pairs)], vocab_size=300,
                              special_tokens=("<pad>", "<s>", "</s>", "<unk>"))
    config = TransformerConfig(vocab_size=tok.vocab_size, n_positions=32, d_model=32, n_heads=4, d_ff=64,
                               n_encoder_layers=1, n_decoder_layers=1, dropout=0.0, label_smoothing=0.1,
                               pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = Transformer(config)
    source = TranslationDataSource(pairs, pairs, tok, max_tokens=64)
    train = TrainConfig(max_steps=60, lr=1e-2, schedule="constant", warmup_steps=10, weight_decay=0.0,
                        grad_clip=1.0, eval_every=0, save_every=0, progress=False, device="cpu")
    Trainer(model, source, train, tmp_path / "run").train()
    model.eval()
    assert translate(model, tok, [s for s, _ in pairs]) == [t for _, t in pairs]


# -- the recipe and the commands ---------------------------------------------------------------

def test_translation_recipe_trains_with_the_paper_schedule_and_the_commands_work(tmp_path):
    valid = tmp_path / "valid.tsv"
    valid.write_text("three hundred twenty-one\tdreihunderteinundzwanzig\nfive\tfünf\n", encoding="utf-8")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.replace("{valid}", str(valid)))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output

    model = attnkit.from_pretrained(tmp_path / "run" / "checkpoints" / "step-4")
    tok = Tokenizer.from_pretrained(tmp_path / "run" / "checkpoints" / "step-4")
    assert isinstance(model, Transformer) and model.config.vocab_size == tok.vocab_size
    assert (model.config.pad_token_id, model.config.eos_token_id, model.config.decoder_start_token_id) == (
        tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r]
    eq3 = [16**-0.5 * min(s**-0.5, s * 2**-1.5) for s in range(1, 5)]  # Vaswani et al. 2017, eq. 3
    assert lrs == pytest.approx(eq3)

    result = runner.invoke(app, ["average", str(tmp_path / "run"), "--last", "2", "--out", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    steps = [attnkit.from_pretrained(tmp_path / "run" / "checkpoints" / f"step-{s}") for s in (2, 4)]
    averaged = attnkit.from_pretrained(tmp_path / "avg")
    torch.testing.assert_close(averaged.lm_head.weight, (steps[0].lm_head.weight + steps[1].lm_head.weight) / 2)

    result = runner.invoke(app, ["translate", str(tmp_path / "avg"), "five", "three hundred twenty-one"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == translate(averaged, tok, ["five", "three hundred twenty-one"])

    result = runner.invoke(app, ["evaluate", str(tmp_path / "avg"), "--data", str(valid), "--metric", "bleu",
                                 "--metric", "chrf", "--tokenize", "char"])
    assert result.exit_code == 0, result.output
    assert "bleu (tokenize=char):" in result.output and "chrf:" in result.output

    result = runner.invoke(app, ["evaluate", str(tmp_path / "avg"), "--data", str(valid), "--metric", "rouge",
                                 "--output", str(tmp_path / "out.txt")])
    assert result.exit_code == 0, result.output
    from attnkit.metrics import rouge

    hypotheses = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    expected = rouge(hypotheses, ["dreihunderteinundzwanzig", "fünf"])
    assert [line for line in result.output.splitlines() if line.startswith("rouge")] == [
        f"{kind}: {value:.2f}" for kind, value in expected.items()]

    result = runner.invoke(app, ["translate", str(tmp_path / "avg"), ""])
    assert result.exit_code == 1 and "empty" in result.output
    # evaluate checks its options before decoding anything
    for args, message in ((["--tokenize", "foo"], "unknown BLEU tokenizer 'foo'"),
                          (["--metric", "chrf", "--metric", "ter"], "unknown metric 'ter'"),
                          (["--output", str(tmp_path / "no" / "out.txt")], "does not exist"),
                          (["--output", str(tmp_path)], "is a directory")):
        result = runner.invoke(app, ["evaluate", str(tmp_path / "avg"), "--data", str(valid), *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)


def test_translate_numbers_recipe_uses_the_papers_training_settings():
    recipe = load_recipe(Path(__file__).parents[2] / "recipes" / "translate-numbers.toml")
    config = recipe.model.model_config(vocab_size=512)
    assert isinstance(recipe.model.model_class()(config), Transformer)
    assert (config.pre_norm, config.label_smoothing, config.share_embeddings, config.scale_embedding) == (
        False, 0.1, True, True)
    t = recipe.train
    assert (t.schedule, t.beta1, t.beta2, t.eps, t.weight_decay) == ("inverse_sqrt", 0.9, 0.98, 1e-9, 0.0)
    assert recipe.data.train == "numbers" and recipe.tokenizer.special_tokens == ("<pad>", "<s>", "</s>", "<unk>")
