"""Language-model data: text tokenized once into memory-mapped token files.

``LMDataset.build`` streams the corpus file by file (in bounded chunks, encoded in
parallel batches), appends the tokens to ``train.bin`` / ``val.bin`` and writes
``meta.json`` last, so a directory with a ``meta.json`` is complete. Training draws random
contiguous blocks from the memmap (nanoGPT's scheme), so corpora larger than RAM work.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from attnkit.data.corpus import CHUNK_CHARS, find_text_files, read_text_chunks
from attnkit.errors import DataError

if TYPE_CHECKING:
    from attnkit.tokenizers import Tokenizer

META_FILE = "meta.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class LMDataset:
    """Token files ``train.bin`` / ``val.bin`` of a directory built by :meth:`build`.

    ``meta`` holds ``vocab_size``, ``dtype``, ``train_tokens``, ``val_tokens``, the source
    files and their fingerprint. Documents are separated by the tokenizer's eos token.
    """

    def __init__(self, directory: Path, meta: dict):
        self.directory = directory
        self.meta = meta
        self.vocab_size = meta["vocab_size"]
        self.dtype = np.dtype(meta["dtype"])
        self._tokens = {}
        for split in SPLITS:
            n = meta[f"{split}_tokens"]
            path = directory / f"{split}.bin"
            # np.memmap cannot map an empty file; an empty split is an empty array.
            self._tokens[split] = np.memmap(path, dtype=self.dtype, mode="r", shape=(n,)) if n else np.zeros(0, self.dtype)

    def num_tokens(self, split: str) -> int:
        return len(self._split(split))

    def tokens(self, split: str) -> np.ndarray:
        """The whole split as a read-only (memory-mapped) 1-d array of token ids."""
        return self._split(split)

    def _split(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self._tokens[split]

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, sources, tokenizer: Tokenizer, out_dir: str | os.PathLike, val_fraction: float = 0.05,
              pattern: str = "*", overwrite: bool = False, show_progress: bool = True,
              chunk_chars: int = CHUNK_CHARS) -> LMDataset:
        """Tokenize ``sources`` (a file, a directory, or a list of them) into ``out_dir``.

        About ``val_fraction`` of the tokens go to val: whole files where they fit (picked by a
        fixed seed), and what they leave short (a single file: all of it) from the end of train.
        If ``out_dir`` already holds a dataset of the same files (paths, sizes, mtimes),
        tokenizer and split, it is reused without tokenizing; a different dataset there is a
        ``DataError`` unless ``overwrite=True``.
        """
        if not 0 <= val_fraction < 1:
            raise DataError(f"val_fraction={val_fraction} must be in [0, 1)")
        out_dir = Path(out_dir)
        # A data directory may contain out_dir itself: never read our own token files back.
        files = [f for f in find_text_files(sources, pattern) if out_dir.resolve() not in f.resolve().parents]
        if not files:
            raise DataError(f"no data files in {sources} outside the output directory {out_dir}")
        meta = {
            "format": FORMAT_VERSION,
            "vocab_size": tokenizer.vocab_size,
            "dtype": token_dtype(tokenizer.vocab_size).name,
            "eos_token_id": tokenizer.eos_token_id,
            "tokenizer": tokenizer.fingerprint(),
            "val_fraction": val_fraction,
            "sources": _fingerprint(files),
            "num_files": len(files),
        }
        meta_path = out_dir / META_FILE
        if meta_path.exists():
            old = _read_meta(meta_path)
            changed = [k for k in meta if old.get(k) != meta[k]]
            if not changed:
                return cls.load(out_dir)
            if not overwrite:
                raise DataError(f"{meta_path} describes a different dataset (differs in: {', '.join(changed)}); "
                                "use another out_dir, delete it, or pass overwrite=True")
            meta_path.unlink()  # the old token files are no longer described by any meta
        out_dir.mkdir(parents=True, exist_ok=True)

        val_files = _pick_val_files(files, val_fraction)
        try:
            counts = _tokenize_files(files, val_files, tokenizer, out_dir, meta["dtype"], chunk_chars, show_progress)
            # What whole files could not supply (all of it for a single file) comes from the end of train.
            missing = int(val_fraction * (counts["train"] + counts["val"])) - counts["val"]
            if missing > 0:
                counts = _move_tail_to_val(out_dir, np.dtype(meta["dtype"]), counts, missing)
        except BaseException:
            for split in SPLITS:
                (out_dir / f"{split}.bin.tmp").unlink(missing_ok=True)
            raise
        for split in SPLITS:
            os.replace(out_dir / f"{split}.bin.tmp", out_dir / f"{split}.bin")
        meta.update({"train_tokens": counts["train"], "val_tokens": counts["val"],
                     "files": [str(f) for f in files], "val_files": sorted(str(f) for f in val_files)})
        tmp = out_dir / f"{META_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, meta_path)  # written last: its presence means the build finished
        return cls(out_dir, meta)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LMDataset:
        """Open a dataset built by :meth:`build` (checks the token files against meta.json)."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise DataError(f"{meta_path} does not exist; build the dataset with LMDataset.build first")
        meta = _read_meta(meta_path)
        for key in ("vocab_size", "dtype", "train_tokens", "val_tokens"):
            if key not in meta:
                raise DataError(f"{meta_path} is missing {key!r}; rebuild the dataset")
        try:
            dtype = np.dtype(meta["dtype"])
        except TypeError:
            raise DataError(f"{meta_path} has an unknown dtype {meta['dtype']!r}") from None
        if dtype != token_dtype(meta["vocab_size"]):
            raise DataError(f"{meta_path}: dtype {dtype.name} does not match vocab_size {meta['vocab_size']}")
        for split in SPLITS:
            path = directory / f"{split}.bin"
            expected = meta[f"{split}_tokens"] * dtype.itemsize
            actual = path.stat().st_size if path.is_file() else None
            if actual != expected:
                raise DataError(f"{path} has {actual} bytes but {meta_path} says {meta[f'{split}_tokens']} "
                                f"{dtype.name} tokens ({expected} bytes); rebuild the dataset")
        return cls(directory, meta)

    # ------------------------------------------------------------------ batches

    def get_batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator | None = None,
                  rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Random contiguous blocks: ``x`` (batch_size // world_size, block_size) int64 and
        ``y`` the same blocks shifted one token ahead (the next-token targets).

        The offsets of the whole global batch are drawn from ``generator`` and this rank takes
        its contiguous slice of rows, so all state lives in the generator: the same generator
        state gives the same global batch for any ``world_size``, and the ranks' slices
        concatenated in rank order are the ``world_size=1`` batch.
        """
        data = self._split(split)
        if batch_size < 1 or block_size < 1:
            raise DataError(f"batch_size={batch_size} and block_size={block_size} must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank={rank} is not in [0, world_size={world_size})")
        if batch_size % world_size:
            raise DataError(f"batch_size={batch_size} is not divisible by world_size={world_size}")
        if len(data) < block_size + 1:
            raise DataError(f"the {split} split of {self.directory} has {len(data)} tokens, but block_size="
                            f"{block_size} needs at least {block_size + 1}; use more data or a smaller block_size")
        starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        per_rank = batch_size // world_size
        rows = [data[i : i + block_size + 1] for i in starts[rank * per_rank : (rank + 1) * per_rank].tolist()]
        blocks = torch.from_numpy(np.stack(rows).astype(np.int64))  # (b, block_size + 1)
        return blocks[:, :-1], blocks[:, 1:]


# ---------------------------------------------------------------------- helpers


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is corrupt (not JSON: {e}); delete the directory and rebuild") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise DataError(f"{path} is not an attnkit LM dataset (format {FORMAT_VERSION}); delete it and rebuild")
    return meta


def _fingerprint(files: list[Path]) -> str:
    """Changes when any file is added, removed, renamed, resized or touched."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _pick_val_files(files: list[Path], val_fraction: float) -> set[Path]:
    """Whole files for validation, in an order fixed by a seed, each taken only if it fits in
    what is left of ``val_fraction`` of the bytes (the rest comes from the end of train)."""
    if val_fraction == 0 or len(files) < 2:
        return set()
    order = list(range(len(files)))
    random.Random(0).shuffle(order)
    sizes = [f.stat().st_size for f in files]
    budget, val = val_fraction * sum(sizes), set()
    for i in order[:-1]:  # at least one file stays in train
        if sizes[i] <= budget:
            val.add(files[i])
            budget -= sizes[i]
    return val


def _tokenize_files(files, val_files, tokenizer, out_dir: Path, dtype: str, chunk_chars: int,
                    show_progress: bool) -> dict[str, int]:
    """Append each file's tokens, then eos, to its split's ``.bin.tmp``. Chunks are encoded in
    parallel batches of about ``4 * chunk_chars`` characters: all the text held at once. Text
    that spells a special token (``<|endoftext|>`` in a source file) is encoded as text: only
    the eos written here separates documents."""
    if tokenizer.eos_token_id is None and len(files) > 1:
        raise DataError(f"the tokenizer has no eos token to separate the {len(files)} documents; give it one "
                        "(e.g. '<|endoftext|>' in its special tokens) or build from a single file")
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    backend = tokenizer.backend
    as_text, backend.encode_special_tokens = backend.encode_special_tokens, True
    try:
        return _write_tokens(files, val_files, tokenizer, out_dir, dtype, chunk_chars, show_progress, eos)
    finally:
        backend.encode_special_tokens = as_text


def _write_tokens(files, val_files, tokenizer, out_dir, dtype, chunk_chars, show_progress, eos) -> dict[str, int]:
    counts = dict.fromkeys(SPLITS, 0)
    bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="tokenizing",
               disable=not show_progress)
    with open(out_dir / "train.bin.tmp", "wb") as train, open(out_dir / "val.bin.tmp", "wb") as val, bar:
        sinks = {"train": train, "val": val}

        def write(batch):
            ids = tokenizer.encode_batch([text for _, text, _ in batch], add_special_tokens=False)
            for (split, _, file_done), chunk_ids in zip(batch, ids):
                chunk_ids = chunk_ids + eos if file_done else chunk_ids
                sinks[split].write(np.asarray(chunk_ids, dtype=dtype).tobytes())
                counts[split] += len(chunk_ids)
                bar.update(file_done)

        batch, batch_chars = [], 0
        for item in _file_chunks(files, val_files, chunk_chars):
            batch.append(item)
            batch_chars += len(item[1])
            if batch_chars >= 4 * chunk_chars:
                write(batch)
                batch, batch_chars = [], 0
        write(batch)
    return counts


def _file_chunks(files, val_files, chunk_chars: int):
    """``(split, text, file size if this is the file's last chunk else 0)`` for every chunk."""
    for f in files:
        split = "val" if f in val_files else "train"
        chunks = read_text_chunks(f, chunk_chars)
        chunk = next(chunks, None)
        while chunk is not None:
            following = next(chunks, None)
            yield split, chunk, (f.stat().st_size if following is None else 0)
            chunk = following


def _move_tail_to_val(out_dir: Path, dtype: np.dtype, counts: dict[str, int], n_val: int) -> dict[str, int]:
    """Move the last ``n_val`` train tokens to the end of val, in pieces."""
    n = counts["train"]
    n_val = min(n_val, n - 1)  # train keeps at least one token
    if n_val <= 0:
        return counts
    train_tmp, val_tmp = out_dir / "train.bin.tmp", out_dir / "val.bin.tmp"
    tokens = np.memmap(train_tmp, dtype=dtype, mode="r", shape=(n,))
    with open(val_tmp, "ab") as sink:
        for start in range(n - n_val, n, CHUNK_CHARS):
            sink.write(tokens[start : min(start + CHUNK_CHARS, n)].tobytes())
    del tokens
    os.truncate(train_tmp, (n - n_val) * dtype.itemsize)
    return {"train": n - n_val, "val": counts["val"] + n_val}
