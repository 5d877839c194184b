"""BLEU and chrF through sacrebleu, checked against the formulas of Papineni et al. 2002 and
Popović 2015 on hand-countable examples."""

import math

import pytest

from attnkit import InputError
from attnkit.metrics import bleu, chrf
from attnkit.metrics.translation import score


def test_bleu_matches_papineni_formula_on_a_hand_counted_sentence():
    hyp, ref = "the cat sat on the mat", "the cat sat on a mat"
    # clipped n-gram precisions: 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; equal lengths, BP = 1
    expected = 100 * math.exp(sum(math.log(p) for p in (5 / 6, 3 / 5, 2 / 4, 1 / 3)) / 4)
    assert bleu([hyp], [ref]) == pytest.approx(expected, abs=1e-6)


def test_bleu_brevity_penalty():
    hyp, ref = "a b c d e", "a b c d e f g h"
    assert bleu([hyp], [ref]) == pytest.approx(100 * math.exp(1 - 8 / 5), abs=1e-6)  # precisions all 1


def test_one_word_compounds_need_character_bleu():
    """German number words are single compounds: word 4-grams do not exist, so word BLEU is 0
    even for a perfect output; character BLEU measures them."""
    refs = ["dreihunderteinundzwanzig", "fünf", "zwölftausend"]
    assert bleu(refs, refs) == 0.0
    assert bleu(refs, refs, tokenize="char") == pytest.approx(100.0)
    assert bleu(["dreihunderteinundzwanzig", "fünf", "elftausend"], refs, tokenize="char") < 100.0


def test_chrf_of_identical_text_is_100_and_of_disjoint_text_is_0():
    assert chrf(["dreihunderteinundzwanzig"], ["dreihunderteinundzwanzig"]) == pytest.approx(100.0)
    assert chrf(["xyz"], ["abc"]) == 0.0


def test_chrf_matches_the_formula_for_character_unigrams_only():
    """With identical text except one changed character, chrF (n = 1..6, β = 2) averages the
    n-gram precisions and recalls; check one value by hand for a 4-character string."""
    # hyp "abcd" vs ref "abce": n=1: 3/4, n=2: 2/3, n=3: 1/2, n=4: 0/1; n=5,6: no n-grams (skipped)
    p = r = (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4
    expected = 100 * (1 + 4) * p * r / (4 * p + r)
    assert chrf(["abcd"], ["abce"]) == pytest.approx(expected, abs=0.01)


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="pair up"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(InputError, match="no hypotheses"):
        chrf([], [])
    with pytest.raises(InputError, match="unknown metric"):
        score("meteor", ["a"], ["a"])
