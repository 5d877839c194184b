"""Word and character error rates against edit distances counted by hand."""

import pytest

from attnkit import InputError
from attnkit.metrics import cer, wer


def test_wer_counts_substitutions_deletions_and_insertions_over_reference_words():
    # "sat" -> "sit" (substitution), "the" deleted: 2 errors / 6 words; then 1 insertion / 3 words
    assert wer(["the cat sit on mat"], ["the cat sat on the mat"]) == pytest.approx(2 / 6)
    assert wer(["a b c d"], ["a b c"]) == pytest.approx(1 / 3)
    # corpus-level: errors summed over sentences over all reference words (3 / 9, not the mean of 1/3 and 1/3)
    assert wer(["the cat sit on mat", "a b c d"], ["the cat sat on the mat", "a b c"]) == pytest.approx(3 / 9)
    assert wer(["one two"], ["one two"]) == 0.0
    assert wer(["x y z w"], ["a"]) == pytest.approx(4.0)  # insertions can take it past 1


def test_cer_counts_characters():
    assert cer(["abd"], ["abc"]) == pytest.approx(1 / 3)
    assert cer(["forty seven"], ["forty-seven"]) == pytest.approx(1 / 11)


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="2 hypotheses but 1 references"):
        wer(["a", "b"], ["a"])
    with pytest.raises(InputError, match="non-empty text"):
        wer(["a"], [" "])
    with pytest.raises(InputError, match="lists of strings"):
        cer("abc", "abd")
