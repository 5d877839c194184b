"""ROUGE against overlaps counted by hand from Lin (2004)'s definitions."""

import pytest

from attnkit import InputError
from attnkit.metrics import rouge

pytest.importorskip("rouge_score")


def test_rouge_n_and_l_are_the_overlap_f_measures():
    # hypothesis "the cat sat on the mat", reference "the cat is on the mat" (6 words each):
    # unigrams in common: the x2, cat, on, mat = 5 -> P = R = 5/6; bigrams: "the cat", "on the",
    # "the mat" = 3 of 5 -> 3/5; the longest common subsequence "the cat on the mat" = 5 words -> 5/6
    got = rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    assert got == pytest.approx({"rouge1": 500 / 6, "rouge2": 60.0, "rougeL": 500 / 6, "rougeLsum": 500 / 6})


def test_precision_and_recall_differ_when_lengths_do():
    # hypothesis "a b" (2 words) vs reference "a b c d" (4): P = 1, R = 1/2, F = 2/3; bigram "a b": P = 1, R = 1/3
    got = rouge(["a b"], ["a b c d"], rouge_types=("rouge1", "rouge2"), use_stemmer=False)
    assert got["rouge1"] == pytest.approx(100 * 2 / 3) and got["rouge2"] == pytest.approx(100 * 2 * (1 / 3) / (4 / 3))


def test_the_mean_over_examples_and_stemming():
    assert rouge(["x y", "p q"], ["x y", "r s"], rouge_types=("rouge1",))["rouge1"] == pytest.approx(50.0)
    # the Porter stemmer maps "cats"/"cat" and "running"/"run" together
    assert rouge(["cats running"], ["cat run"], rouge_types=("rouge1",))["rouge1"] == pytest.approx(100.0)
    assert rouge(["cats running"], ["cat run"], rouge_types=("rouge1",), use_stemmer=False)["rouge1"] == 0.0


def test_rouge_lsum_splits_sentences_on_newlines():
    # summary-level LCS (union LCS per reference sentence): the sentence order no longer matters
    hyp, ref = "c d\na b", "a b\nc d"
    assert rouge([hyp], [ref], rouge_types=("rougeLsum",))["rougeLsum"] == pytest.approx(100.0)
    assert rouge([hyp], [ref], rouge_types=("rougeL",))["rougeL"] == pytest.approx(50.0)


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="2 hypotheses but 1 references"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(InputError, match="unknown ROUGE types"):
        rouge(["a"], ["a"], rouge_types=("bleu",))
    with pytest.raises(InputError, match="lists of strings"):
        rouge("a", "a")
