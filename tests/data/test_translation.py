"""Parallel data: readers and their errors, the built-in number-words task, token-count batches,
and the joint BPE tokenizer over both languages."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import DataError
from attnkit.data.translation import (
    TranslationDataSource,
    english_number,
    german_number,
    load_pairs,
    number_pairs,
    number_splits,
    read_parallel,
    token_batches,
)
from attnkit.tokenizers import Tokenizer

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@pytest.fixture(scope="module")
def tokenizer():
    train = number_pairs("train", max_number=999, n_valid=50, n_test=50)
    sides = ["\n".join(s for s, _ in train), "\n".join(t for _, t in train)]
    return Tokenizer.train_bpe(sides, vocab_size=300, special_tokens=SPECIALS)


# -- built-in task ------------------------------------------------------------------------------

def test_number_words_in_english_and_german():
    assert english_number(321) == "three hundred twenty-one"
    assert german_number(321) == "dreihunderteinundzwanzig"
    assert (english_number(1999), german_number(1999)) == ("one thousand nine hundred ninety-nine",
                                                            "eintausendneunhundertneunundneunzig")


def test_splits_are_disjoint_sets_of_numbers_covering_the_range():
    splits = number_splits(max_number=9999, n_valid=500, n_test=500, seed=0)
    sets = {k: set(v) for k, v in splits.items()}
    assert [len(sets[k]) for k in ("train", "valid", "test")] == [9000, 500, 500]
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"] or sets["valid"] & sets["test"])
    assert sets["train"] | sets["valid"] | sets["test"] == set(range(10000))
    test_sources = {s for s, _ in number_pairs("test")}
    assert not test_sources & {s for s, _ in number_pairs("train")}  # no sentence leaks either


def test_unknown_split_is_an_error():
    with pytest.raises(DataError, match="split"):
        number_pairs("dev")


# -- readers -----------------------------------------------------------------------------------

def test_tsv_and_two_aligned_files_give_the_same_pairs(tmp_path):
    pairs = [("one", "eins"), ("twenty-one", "einundzwanzig"), ("Grüße ß", "greetings")]
    (tmp_path / "d.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    (tmp_path / "d.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "d.de").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    assert read_parallel(tmp_path / "d.tsv") == pairs
    assert read_parallel(tmp_path / "d.en", tmp_path / "d.de") == pairs
    assert load_pairs(f"{tmp_path / 'd.en'},{tmp_path / 'd.de'}") == pairs


def test_lines_end_at_newlines_only_and_a_byte_order_mark_is_dropped(tmp_path):
    """U+2028, U+0085 and form feeds inside a line are text, not line ends (str.splitlines would split)."""
    (tmp_path / "s.txt").write_text("\ufeffone\u2028two\r\nthree\x85four\nfive\x0csix\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("\ufeffeins\nzwei\ndrei\n", encoding="utf-8")
    assert read_parallel(tmp_path / "s.txt", tmp_path / "t.txt") == [
        ("one\u2028two", "eins"), ("three\x85four", "zwei"), ("five\x0csix", "drei")]
    (tmp_path / "d.tsv").write_text("\ufeffa\x0cb\tc\n", encoding="utf-8")
    assert read_parallel(tmp_path / "d.tsv") == [("a\x0cb", "c")]


def test_mismatched_line_counts_are_an_error(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(DataError, match=r"3 lines .* has 2"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_empty_source_line_is_an_error_naming_the_line_unless_skipped(tmp_path):
    (tmp_path / "a.en").write_text("one\n\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n")
    with pytest.raises(DataError, match=r"a\.en:2 .*empty source line"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")
    assert read_parallel(tmp_path / "a.en", tmp_path / "a.de", skip_empty=True) == [("one", "eins"), ("three", "drei")]
    (tmp_path / "b.tsv").write_text("one\teins\ntwo\t \n")
    with pytest.raises(DataError, match=r"b\.tsv:2: empty target line"):
        read_parallel(tmp_path / "b.tsv")


def test_tsv_line_without_a_tab_is_an_error(tmp_path):
    (tmp_path / "c.tsv").write_text("one\teins\ntwo zwei\n")
    with pytest.raises(DataError, match=r"c\.tsv:2: expected 'source<TAB>target'"):
        read_parallel(tmp_path / "c.tsv")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_parallel(tmp_path / "nope.tsv")


# -- joint tokenizer ---------------------------------------------------------------------------

def test_joint_bpe_encodes_both_languages_and_never_produces_unknown_tokens(tokenizer):
    """Byte-level BPE: characters never seen in training (the documented behaviour for
    out-of-vocabulary input) still encode losslessly; no <unk> is ever emitted."""
    for text in ["three hundred twenty-one", "dreihunderteinundzwanzig", "fünfundneunzig", "Straße 😀 ЖЖ"]:
        ids = tokenizer.encode(text)
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    # the merges learned from both sides compress both sides
    assert len(tokenizer.encode("dreihunderteinundzwanzig")) < len("dreihunderteinundzwanzig") / 2
    assert len(tokenizer.encode("three hundred twenty-one")) < len("three hundred twenty-one") / 2


# -- token-count batches -----------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=200), st.integers(40, 300))
def test_token_batches_cover_every_example_once_within_the_budget(lengths, max_tokens):
    batches = token_batches(lengths, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= max_tokens


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_validation_batches_give_every_rank_rows_and_every_pair_once(tokenizer, world_size):
    train = number_pairs("train", max_number=999, n_valid=50, n_test=50)
    valid = number_pairs("valid", max_number=999, n_valid=50, n_test=50)
    source = TranslationDataSource(train, valid, tokenizer, max_tokens=40)
    assert min(len(b) for b in source.valid_batches) < 3  # some batches are too small to split over 3 ranks
    seen = []
    for rank in range(world_size):
        for batch in source.eval_batches(rank, world_size):
            assert batch["input_ids"].shape[0] >= 1
            seen += [tuple(row[row != -100].tolist()) for row in batch["labels"]]
    every = [tuple(t) for _, t in source.valid]
    assert sorted(seen) == sorted(every)


def test_training_batches_respect_the_token_budget_and_end_with_eos(tokenizer):
    train = number_pairs("train", max_number=999, n_valid=50, n_test=50)
    valid = number_pairs("valid", max_number=999, n_valid=50, n_test=50)
    source = TranslationDataSource(train, valid, tokenizer, max_tokens=300)
    g = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(20):
        b = source.next_batch(g)
        B, S = b["input_ids"].shape
        T = b["labels"].shape[1]
        assert B * max(S, T) <= 300
        sizes.add(B)
        lengths = b["attention_mask"].sum(1)
        assert (b["input_ids"][torch.arange(B), lengths - 1] == tokenizer.eos_token_id).all()
        label_len = (b["labels"] != -100).sum(1)
        assert (b["labels"][torch.arange(B), label_len - 1] == tokenizer.eos_token_id).all()
    assert len(sizes) > 1  # the sentence count adapts to the length
    first = source.next_batch(torch.Generator().manual_seed(3))
    ranks = [source.next_batch(torch.Generator().manual_seed(3), rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat([ranks[0]["labels"], ranks[1]["labels"]]),
                       torch.cat([first["labels"][0::2], first["labels"][1::2]]))
    seen = sum(len(b["labels"]) for b in source.eval_batches())
    assert seen == len(valid)


def test_pairs_longer_than_the_model_are_an_error(tokenizer):
    long = [("one " * 40, "eins")]
    with pytest.raises(DataError, match="n_positions"):
        TranslationDataSource(long, long, tokenizer, max_tokens=1000, max_positions=32)
