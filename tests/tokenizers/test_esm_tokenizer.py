"""ESM's protein tokenizer against Hugging Face's ``EsmTokenizer`` on the same vocabulary."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.errors import ConfigError
from attnkit.tokenizers import ESM_VOCAB, Tokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("esm_vocab")
    (directory / "vocab.txt").write_text("\n".join(ESM_VOCAB))
    return transformers.EsmTokenizer(str(directory / "vocab.txt"))


TEXTS = ["MKTAYIAKQR", "MJJK", "mktay", "M K T\tA\n", "MK<mask>TA", "A.B-Z<null_1>XUO", "", "<cls>MK<eos>",
         "MK<MASK>", "AJ<mask>J", "<mask><mask>", "<null_1", "ÄM*"]


def test_vocabulary_is_transformers_default_esm2_vocabulary(hf_tokenizer):
    from transformers.models.esm.configuration_esm import get_default_vocab_list

    tok = Tokenizer.esm()
    assert tuple(get_default_vocab_list()) == ESM_VOCAB and tok.vocab_size == 33
    assert (tok.cls_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == \
        (hf_tokenizer.cls_token_id, hf_tokenizer.pad_token_id, hf_tokenizer.eos_token_id, hf_tokenizer.unk_token_id,
         hf_tokenizer.mask_token_id) == (0, 1, 2, 3, 32)


@pytest.mark.parametrize("text", TEXTS)
def test_encode_and_decode_equal_transformers(hf_tokenizer, text):
    tok = Tokenizer.esm()
    ids = hf_tokenizer(text)["input_ids"]
    assert tok.encode(text) == ids
    assert tok.encode(text, add_special_tokens=False) == hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == hf_tokenizer.decode(ids)
    assert tok.decode(ids, skip_special_tokens=True) == hf_tokenizer.decode(ids, skip_special_tokens=True)


def test_unknown_letters_are_one_unk_per_run_as_in_transformers(hf_tokenizer):
    tok = Tokenizer.esm()
    assert tok.encode("MJJK") == [0, 20, 3, 15, 2]  # "JJ" is one <unk>
    assert tok.encode("mk") == [0, 3, 2]  # lower case is not a residue


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([*ESM_VOCAB, "J", "a", " ", "\n", "<", ">", "1"]), max_size=20).map("".join))
def test_any_mix_of_tokens_and_other_characters_encodes_as_transformers(hf_tokenizer, text):
    assert Tokenizer.esm().encode(text) == hf_tokenizer(text)["input_ids"]


def test_padded_batches_and_pairs_equal_transformers(hf_tokenizer):
    tok = Tokenizer.esm()
    texts = ["MKTAYIAK", "MK", "GAV"]
    ours, ref = tok(texts), hf_tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], ref["input_ids"]) and torch.equal(ours["attention_mask"], ref["attention_mask"])
    assert tok(["MK"], ["AY"])["input_ids"].tolist() == [hf_tokenizer("MK", "AY")["input_ids"]]


def test_saved_tokenizer_loads_in_transformers_with_same_encodings(tmp_path, hf_tokenizer):
    Tokenizer.esm().save_pretrained(tmp_path)
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert fast(text)["input_ids"] == hf_tokenizer(text)["input_ids"], text


def test_transformers_esm_tokenizer_directory_loads(tmp_path, hf_tokenizer):
    """The facebook/esm2_* checkpoints ship a ``vocab.txt`` and no ``tokenizer.json``."""
    hf_tokenizer.save_pretrained(tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "EsmTokenizer"
    tok = Tokenizer.from_pretrained(tmp_path)
    assert tok.fingerprint() == Tokenizer.esm().fingerprint()


def test_vocabulary_without_the_special_tokens_is_refused():
    with pytest.raises(ConfigError, match="<mask>"):
        Tokenizer.esm([t for t in ESM_VOCAB if t != "<mask>"])
