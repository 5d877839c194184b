"""Accuracy and F1 against counts by hand, and SQuAD's exact match and F1 against the official
script's definitions (normalisation, bag-of-words overlap, best over gold answers)."""

import pytest

from attnkit import InputError
from attnkit.metrics import accuracy, answer_f1, exact_match, f1, normalize_answer

pytest.importorskip("sklearn")


def test_accuracy_and_f1_by_hand():
    refs = ["cat", "cat", "dog", "dog", "owl"]
    preds = ["cat", "dog", "dog", "dog", "cat"]
    assert accuracy(preds, refs) == pytest.approx(3 / 5)
    # per class: cat P=1/2 R=1/2 F=1/2; dog P=2/3 R=1 F=4/5; owl never predicted: F=0
    assert f1(preds, refs, average="macro") == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert f1(preds, refs, average="weighted") == pytest.approx((2 * 0.5 + 2 * 0.8 + 0) / 5)
    assert f1(preds, refs, average="micro") == pytest.approx(3 / 5)  # single-label: equals accuracy
    # binary F1 of class 1: TP=2, FP=1, FN=1 -> 2/3
    assert f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0], average="binary") == pytest.approx(2 / 3)


def test_squad_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The  Eiffel-Tower, in Paris! ") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_match_and_f1_take_the_best_gold_answer():
    preds = ["the Eiffel Tower", "Paris France", "1889"]
    refs = [["Eiffel Tower", "tower"], "Paris", ["in 1887", "1888"]]
    assert exact_match(preds, refs) == pytest.approx(100 / 3)  # only the first matches (after normalisation)
    # F1: 1; "paris france" vs "paris": P=1/2 R=1 -> 2/3; "1889" shares no word with either gold: 0
    assert answer_f1(preds, refs) == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)
    # words count with multiplicity: "x x y" vs "y y" have one word in common: P=1/3, R=1/2
    assert answer_f1(["x x y"], ["y y"]) == pytest.approx(100 * 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="2 predictions but 1 references"):
        accuracy([1, 2], [1])
    with pytest.raises(InputError, match="average must be one of"):
        f1([1], [1], average="samples")
    with pytest.raises(InputError, match="reference 0 must be an answer or a non-empty list"):
        exact_match(["x"], [[]])
    with pytest.raises(InputError, match="no predictions"):
        answer_f1([], [])


def test_entity_scores_count_whole_entities():
    pytest.importorskip("seqeval")
    from attnkit.metrics import entity_scores

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O"]]
    # sentence 1: the person right, the place typed ORG; sentence 2: the place cut short (one token)
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-LOC", "O", "O"]]
    # 3 entities predicted, 3 gold, 1 exactly right: P = R = F1 = 1/3 (token accuracy would be 5/7)
    assert entity_scores(predicted, gold) == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})
    # one more predicted entity that is wrong: P = 1/4, R = 1/3
    predicted[1][2] = "B-PER"
    got = entity_scores(predicted, gold)
    assert got["precision"] == pytest.approx(1 / 4) and got["recall"] == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="sentence 0: .* same length"):
        entity_scores([["O"]], [["O", "O"]])
