import json
import os

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers

import attnkit.data.lm as lm
from attnkit.data import LMDataset, stdlib_corpus_files, token_dtype
from attnkit.errors import DataError
from attnkit.tokenizers import Tokenizer


@pytest.fixture(scope="module")
def files():
    return stdlib_corpus_files(max_files=60)


@pytest.fixture(scope="module")
def tok(files):
    return Tokenizer.train_bpe(files, vocab_size=500)


@pytest.fixture(scope="module")
def ds(files, tok, tmp_path_factory):
    return LMDataset.build(files, tok, tmp_path_factory.mktemp("lm"), val_fraction=0.1, show_progress=False)


def _reference_tokens(tok, files):
    """Each file encoded whole, on its own, followed by eos: what the token file must hold."""
    out = []
    for f in files:
        out += tok.encode(f.read_text(encoding="utf-8"), add_special_tokens=False) + [tok.eos_token_id]
    return np.array(out)


def test_token_files_hold_each_document_then_eos_split_by_file(ds, tok, files):
    """Val: whole files that fit in val_fraction of the bytes, then the end of train makes up the rest."""
    val_files = [f for f in files if str(f) in ds.meta["val_files"]]
    train_files = [f for f in files if f not in val_files]
    assert val_files and train_files
    sizes = {f: f.stat().st_size for f in files}
    assert sum(sizes[f] for f in val_files) <= 0.1 * sum(sizes.values())
    train_stream, val_whole = _reference_tokens(tok, train_files), _reference_tokens(tok, val_files)
    n_total = len(train_stream) + len(val_whole)
    n_tail = int(0.1 * n_total) - len(val_whole)
    np.testing.assert_array_equal(ds.tokens("train"), train_stream[: len(train_stream) - max(n_tail, 0)])
    np.testing.assert_array_equal(ds.tokens("val"), np.concatenate([val_whole, train_stream[len(train_stream) - max(n_tail, 0):]]))
    assert ds.num_tokens("val") == max(int(0.1 * n_total), len(val_whole))


@pytest.mark.parametrize("sizes,fraction", [((1000, 1000), 0.01), ((2400, 1000, 360), 0.1)])
def test_few_files_still_give_about_val_fraction(tok, tmp_path, sizes, fraction):
    """Whole files would overshoot (one of two equal files is half the data): the end of train is used instead."""
    for i, n in enumerate(sizes):
        (tmp_path / f"{i}.txt").write_text("hello world\n" * (n // 12))
    ds = LMDataset.build(tmp_path, tok, tmp_path / "out", val_fraction=fraction, show_progress=False)
    total = ds.num_tokens("train") + ds.num_tokens("val")
    assert ds.num_tokens("val") == int(fraction * total)


def test_text_spelling_a_special_token_is_text_and_only_eos_separates_documents(tok, tmp_path):
    (tmp_path / "a.txt").write_text("x = '<|endoftext|>' + '<pad>'\n")
    (tmp_path / "b.txt").write_text("y = 1\n")
    ds = LMDataset.build(tmp_path, tok, tmp_path / "out", val_fraction=0, show_progress=False)
    ids = ds.tokens("train").tolist()
    assert ids.count(tok.eos_token_id) == 2 and tok.pad_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=False) == "x = '<|endoftext|>' + '<pad>'\n<|endoftext|>y = 1\n<|endoftext|>"


def test_documents_cannot_be_joined_without_an_eos_token(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("some text\n")
    no_eos = Tokenizer.train_char([tmp_path / "a.txt"], special_tokens=["<pad>", "<unk>"])
    with pytest.raises(DataError, match="no eos token to separate the 2 documents"):
        LMDataset.build(tmp_path, no_eos, tmp_path / "out", show_progress=False)


def test_meta_records_counts_and_dtype(ds, tok):
    meta = json.loads((ds.directory / "meta.json").read_text())
    assert meta["vocab_size"] == tok.vocab_size and meta["dtype"] == "uint16"
    for split in ("train", "val"):
        assert (ds.directory / f"{split}.bin").stat().st_size == 2 * meta[f"{split}_tokens"]
        assert ds.num_tokens(split) == meta[f"{split}_tokens"]
    assert not list(ds.directory.glob("*.tmp"))


def test_split_is_deterministic(files, tok, ds, tmp_path):
    again = LMDataset.build(files, tok, tmp_path, val_fraction=0.1, show_progress=False)
    assert again.meta["val_files"] == ds.meta["val_files"]
    assert (tmp_path / "train.bin").read_bytes() == (ds.directory / "train.bin").read_bytes()


def test_memmap_dtype_follows_vocab_size(tmp_path):
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    # a word-level vocabulary of 70,000 ids: ids above 65535 must survive the round trip
    words = {f"w{i}": i for i in range(70_000)}
    backend = Backend(models.WordLevel(words, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big = Tokenizer(backend, {"eos": None})
    (tmp_path / "a.txt").write_text("w69999 w65536 w1 w65535\n" * 3)
    ds = LMDataset.build(tmp_path / "a.txt", big, tmp_path / "out", val_fraction=0, show_progress=False)
    assert ds.meta["dtype"] == "uint32" and ds.tokens("train").dtype == np.uint32
    assert ds.tokens("train").tolist() == [69999, 65536, 1, 65535] * 3


def test_get_batch_blocks_are_contiguous_and_shifted(ds):
    tokens = ds.tokens("train")
    windows = np.lib.stride_tricks.sliding_window_view(tokens, 33)
    g = torch.Generator().manual_seed(1)
    x, y = ds.get_batch("train", 8, 32, generator=g)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        block = np.concatenate([row_x, row_y[-1:]])
        assert (windows == block).all(axis=1).any()  # a contiguous slice of the token file


def test_get_batch_is_a_function_of_the_generator_state(ds):
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    x1, _ = ds.get_batch("train", 4, 16, generator=g)
    x2, _ = ds.get_batch("train", 4, 16, generator=g)
    assert not torch.equal(x1, x2)
    g.set_state(state)
    assert torch.equal(ds.get_batch("train", 4, 16, generator=g)[0], x1)
    assert torch.equal(ds.get_batch("train", 4, 16, generator=g)[0], x2)


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_concatenate_to_the_single_process_batch(ds, world_size):
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    x, y = ds.get_batch("val", 8, 16, generator=g)
    after_single = g.get_state()
    xs, ys = [], []
    for rank in range(world_size):
        g.set_state(state)
        xr, yr = ds.get_batch("val", 8, 16, generator=g, rank=rank, world_size=world_size)
        assert xr.shape == (8 // world_size, 16)
        assert torch.equal(g.get_state(), after_single)  # every rank advances the generator alike
        xs.append(xr)
        ys.append(yr)
    assert torch.equal(torch.cat(xs), x) and torch.equal(torch.cat(ys), y)


def test_get_batch_errors(ds, tmp_path):
    with pytest.raises(DataError, match="not divisible by world_size=3"):
        ds.get_batch("train", 8, 16, world_size=3)
    with pytest.raises(DataError, match="rank=2"):
        ds.get_batch("train", 8, 16, rank=2, world_size=2)
    with pytest.raises(DataError, match="unknown split 'test'"):
        ds.get_batch("test", 8, 16)
    n = ds.num_tokens("val")
    with pytest.raises(DataError, match=f"val split .* has {n} tokens, but block_size={n} needs at least {n + 1}"):
        ds.get_batch("val", 2, n)
    x, y = ds.get_batch("val", 2, n - 1)  # the largest block that fits: the whole split, x and y shifted by one
    assert x.tolist() == [ds.tokens("val")[:-1].tolist()] * 2 and y.tolist() == [ds.tokens("val")[1:].tolist()] * 2


def test_rebuild_with_same_inputs_reuses_the_token_files(files, tok, tmp_path, monkeypatch):
    calls = []
    real = lm._tokenize_files
    monkeypatch.setattr(lm, "_tokenize_files", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = LMDataset.build(files[:10], tok, tmp_path, show_progress=False)
    mtime = (tmp_path / "train.bin").stat().st_mtime_ns
    second = LMDataset.build(files[:10], tok, tmp_path, show_progress=False)
    assert len(calls) == 1 and (tmp_path / "train.bin").stat().st_mtime_ns == mtime
    assert second.meta == first.meta
    assert LMDataset.load(tmp_path).meta == first.meta


def test_changed_inputs_are_not_silently_reused(files, tok, tmp_path):
    LMDataset.build(files[:10], tok, tmp_path, show_progress=False)
    with pytest.raises(DataError, match=r"meta.json describes a different dataset \(differs in: .*sources"):
        LMDataset.build(files[:11], tok, tmp_path, show_progress=False)
    with pytest.raises(DataError, match="differs in: .*tokenizer"):
        LMDataset.build(files[:10], Tokenizer.train_char(files[:2]), tmp_path, show_progress=False)
    rebuilt = LMDataset.build(files[:11], tok, tmp_path, overwrite=True, show_progress=False)
    assert rebuilt.meta["num_files"] == 11 and LMDataset.load(tmp_path).meta["num_files"] == 11


def test_build_streams_in_bounded_chunks_with_identical_tokens(files, tok, ds, tmp_path, monkeypatch):
    """With an artificial 2 kB memory budget the build never encodes more than a few chunks at
    once, yet writes exactly the tokens of encoding each file whole."""
    seen = []
    real = Tokenizer.encode_batch
    monkeypatch.setattr(Tokenizer, "encode_batch", lambda self, texts, **k: seen.append(texts) or real(self, texts, **k))
    small = LMDataset.build(files, tok, tmp_path, val_fraction=0.1, chunk_chars=2048, show_progress=False)
    biggest_file = max(len(f.read_text(encoding="utf-8")) for f in files)
    assert biggest_file > 20 * 2048  # the corpus really is larger than the budget
    longest_line = max(len(line) for f in files for line in f.read_text(encoding="utf-8").splitlines())
    assert max(sum(map(len, batch)) for batch in seen) <= 4 * 2048 + 2048 + longest_line
    for split in ("train", "val"):
        np.testing.assert_array_equal(small.tokens(split), ds.tokens(split))


def test_single_file_is_split_by_tokens(tok, files, tmp_path):
    text = files[5].read_text(encoding="utf-8")
    (tmp_path / "one.py").write_text(text, encoding="utf-8")
    ds = LMDataset.build(tmp_path / "one.py", tok, tmp_path / "out", val_fraction=0.25, show_progress=False)
    whole = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    n_val = int(len(whole) * 0.25)
    assert ds.tokens("train").tolist() == whole[: len(whole) - n_val]
    assert ds.tokens("val").tolist() == whole[len(whole) - n_val :]
    assert (tmp_path / "out" / "train.bin").stat().st_size == 2 * (len(whole) - n_val)


def test_directory_source_and_output_inside_it(tok, tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("gamma\n")
    (tmp_path / "empty.txt").write_text("")  # skipped inside a directory
    (tmp_path / ".hidden").write_text("secret\n")
    ds = LMDataset.build(tmp_path, tok, tmp_path / "cache", val_fraction=0, show_progress=False)
    assert ds.meta["files"] == [str(tmp_path / "a.txt"), str(tmp_path / "sub" / "b.txt")]
    again = LMDataset.build(tmp_path, tok, tmp_path / "cache", val_fraction=0, show_progress=False)
    assert again.meta == ds.meta  # the cache's own files are not read as data
    with pytest.raises(DataError, match="val split .* has 0 tokens"):
        ds.get_batch("val", 1, 4)


# ---------------------------------------------------------------- bad input


def test_missing_path(tok, tmp_path):
    with pytest.raises(DataError, match=f"data path {tmp_path / 'nope.txt'} does not exist"):
        LMDataset.build(tmp_path / "nope.txt", tok, tmp_path / "out")


def test_empty_file_and_empty_directory(tok, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=f"data file {tmp_path / 'empty.txt'} is empty"):
        LMDataset.build(tmp_path / "empty.txt", tok, tmp_path / "out")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match=f"data directory {tmp_path / 'd'} has no non-empty files"):
        LMDataset.build(tmp_path / "d", tok, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_directory_with_no_matching_files(tok, tmp_path):
    (tmp_path / "notes.txt").write_text("text\n")
    with pytest.raises(DataError, match=rf"{tmp_path} has no non-empty files matching '\*.py'"):
        LMDataset.build(tmp_path, tok, tmp_path / "out", pattern="*.py")


def test_non_utf8_file(tok, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (tmp_path / "good.txt").write_text("fine\n" * 1000)
    with pytest.raises(DataError, match="latin1.txt is not UTF-8"):
        LMDataset.build([tmp_path / "good.txt", tmp_path / "latin1.txt"], tok, tmp_path / "out", chunk_chars=64)
    assert list((tmp_path / "out").iterdir()) == []  # no half-written token files left behind


def test_corrupt_or_mismatched_meta(files, tok, tmp_path):
    LMDataset.build(files[:3], tok, tmp_path, show_progress=False)
    meta_path = tmp_path / "meta.json"
    good = meta_path.read_text()
    meta_path.write_text(good[: len(good) // 2])
    for action in (lambda: LMDataset.load(tmp_path), lambda: LMDataset.build(files[:3], tok, tmp_path)):
        with pytest.raises(DataError, match=f"{meta_path} is corrupt"):
            action()
    meta = json.loads(good)
    meta["train_tokens"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"{tmp_path / 'train.bin'} has .* bytes but {meta_path} says"):
        LMDataset.load(tmp_path)
    meta = json.loads(good)
    meta["dtype"] = "uint32"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="dtype uint32 does not match vocab_size 500"):
        LMDataset.load(tmp_path)
    os.remove(meta_path)
    with pytest.raises(DataError, match=f"{meta_path} does not exist"):
        LMDataset.load(tmp_path)


def test_bad_val_fraction(files, tok, tmp_path):
    with pytest.raises(DataError, match="val_fraction=1"):
        LMDataset.build(files[:3], tok, tmp_path, val_fraction=1)
