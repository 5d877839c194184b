"""Parallel data for machine translation: readers, the built-in number-words task, and a
data source that forms batches by token count (Vaswani et al. 2017 §5.1).

Readers return ``[(source, target), ...]`` string pairs from a TSV file (``source<TAB>target``
per line), two line-aligned files, or a JSON-lines file with a source and a target field. Bad input is a :class:`DataError` naming the file
and line: a line without exactly one tab, an empty source or target line (or pass
``skip_empty=True`` to drop such pairs), and source/target files of different line counts.

The built-in task translates numbers written as English words into German words with
``num2words`` ("three hundred twenty-one" -> "dreihunderteinundzwanzig"): German puts units
before tens, so attention has to learn a reordering. Splits are disjoint sets of numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from attnkit.errors import DataError

Pair = tuple[str, str]
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------- readers

def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first line
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 ({e})") from None
    # Lines end at \n (or \r\n) only: str.splitlines would also split inside a line at U+2028,
    # U+0085 or a form feed, and shift every later pair.
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _check_pairs(pairs: list[tuple[str, str, str]], skip_empty: bool) -> list[Pair]:
    """``(where, source, target)`` -> pairs; empty sides are an error unless ``skip_empty``."""
    out = []
    for where, src, tgt in pairs:
        side = "source" if not src.strip() else "target" if not tgt.strip() else None
        if side is None:
            out.append((src.strip(), tgt.strip()))
        elif not skip_empty:
            raise DataError(f"{where}: empty {side} line; remove the pair or pass skip_empty=True to drop empty pairs")
    if not out:
        raise DataError("no sentence pairs found (every pair was empty or the input has no lines)")
    return out


def read_tsv(path: str | os.PathLike, skip_empty: bool = False) -> list[Pair]:
    """Pairs from a UTF-8 file of ``source<TAB>target`` lines (blank lines are skipped)."""
    path = Path(path)
    rows = []
    for i, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{path}:{i}: expected 'source<TAB>target' (2 tab-separated fields), got {len(fields)}")
        rows.append((f"{path}:{i}", *fields))
    return _check_pairs(rows, skip_empty)


def read_parallel(source: str | os.PathLike, target: str | os.PathLike | None = None,
                  skip_empty: bool = False) -> list[Pair]:
    """Sentence pairs from a TSV file (``target=None``) or two line-aligned text files.

    Line ``i`` of ``source`` translates to line ``i`` of ``target``; the files must have the
    same number of lines. Empty lines are an error unless ``skip_empty`` drops their pairs.
    """
    if target is None:
        return read_tsv(source, skip_empty)
    src_path, tgt_path = Path(source), Path(target)
    src, tgt = _read_lines(src_path), _read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"source file {src_path} has {len(src)} lines but target file {tgt_path} has {len(tgt)}; "
                        "parallel files must be line-aligned")
    rows = [(f"{src_path}:{i} / {tgt_path}:{i}", s, t) for i, (s, t) in enumerate(zip(src, tgt), start=1)]
    return _check_pairs(rows, skip_empty)


# ---------------------------------------------------------------------- built-in task

def english_number(n: int) -> str:
    """``321 -> "three hundred twenty-one"`` (American style: no "and", no commas)."""
    from num2words import num2words

    return num2words(n, lang="en").replace(",", "").replace(" and ", " ")


def german_number(n: int) -> str:
    """``321 -> "dreihunderteinundzwanzig"``."""
    from num2words import num2words

    return num2words(n, lang="de")


def number_splits(max_number: int = 9999, n_valid: int = 500, n_test: int = 500, seed: int = 0) -> dict[str, list[int]]:
    """Disjoint random sets of the numbers ``0 .. max_number`` for train, valid and test."""
    if n_valid + n_test >= max_number + 1:
        raise DataError(f"n_valid + n_test ({n_valid + n_test}) leaves no training numbers out of {max_number + 1}")
    order = torch.randperm(max_number + 1, generator=torch.Generator().manual_seed(seed)).tolist()
    return {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}


def number_pairs(split: str, max_number: int = 9999, n_valid: int = 500, n_test: int = 500, seed: int = 0) -> list[Pair]:
    """The built-in English -> German number-words pairs of one split (works offline)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [(english_number(n), german_number(n)) for n in number_splits(max_number, n_valid, n_test, seed)[split]]


def read_jsonl_pairs(path: str | os.PathLike, source_field: str = "source", target_field: str = "target",
                     skip_empty: bool = False) -> list[Pair]:
    """Pairs from a JSON-lines file, one object per line (``{"document": ..., "summary": ...}``
    with ``source_field="document", target_field="summary"``); texts may span several lines."""
    from attnkit.data.records import read_records

    rows = []
    for line_no, record in read_records(path, (".jsonl",)):
        src, tgt = record.get(source_field), record.get(target_field)
        if not isinstance(src, str) or not isinstance(tgt, str):
            raise DataError(f"{path}:{line_no}: fields {source_field!r} and {target_field!r} must be strings")
        rows.append((f"{path}:{line_no}", src, tgt))
    return _check_pairs(rows, skip_empty)


def load_pairs(spec: str, split: str = "test", skip_empty: bool = False, source_field: str = "source",
               target_field: str = "target") -> list[Pair]:
    """Pairs named by a data spec: ``"numbers"`` (the built-in task, ``split`` chosen), a TSV
    file, a ``.jsonl`` file (texts under ``source_field`` and ``target_field``), or
    ``"SOURCE_FILE,TARGET_FILE"``."""
    if spec == "numbers":
        return number_pairs(split)
    if "," in spec:
        src, tgt = spec.split(",", 1)
        return read_parallel(src, tgt, skip_empty)
    if spec.lower().endswith(".jsonl"):
        return read_jsonl_pairs(spec, source_field, target_field, skip_empty)
    return read_parallel(spec, skip_empty=skip_empty)


# ---------------------------------------------------------------------- batching

def encode_pairs(pairs: Sequence[Pair], tokenizer, max_positions: int | None = None) -> list[tuple[list[int], list[int]]]:
    """Token ids of each pair, both sides ending in the tokenizer's EOS token.

    A side longer than ``max_positions`` is a :class:`DataError` naming the pair: filter the
    data or give the model more positions (never silently truncated).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token; train it with special_tokens including '</s>'")
    src = tokenizer.encode_batch([s for s, _ in pairs], add_special_tokens=False)
    tgt = tokenizer.encode_batch([t for _, t in pairs], add_special_tokens=False)
    out = []
    for i, (s, t) in enumerate(zip(src, tgt)):
        s, t = s + [eos], t + [eos]
        if max_positions is not None and max(len(s), len(t)) > max_positions:
            raise DataError(f"pair {i} ({pairs[i][0][:40]!r}) is {len(s)} source / {len(t)} target tokens, more than "
                            f"the model's {max_positions} positions; drop long pairs or raise n_positions")
        out.append((s, t))
    return out


def collate_pairs(examples: Sequence[tuple[list[int], list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` ``(B, S)`` and ``labels`` ``(B, T)`` (-100 = padding)."""
    B = len(examples)
    S, T = max(len(s) for s, _ in examples), max(len(t) for _, t in examples)
    input_ids = torch.full((B, S), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(B, S, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(examples):
        input_ids[i, : len(s)] = torch.tensor(s)
        attention_mask[i, : len(s)] = 1
        labels[i, : len(t)] = torch.tensor(t)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def token_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group example indices, sorted by length, into batches whose padded size
    ``n · max_length`` stays within ``max_tokens``. Deterministic (used for evaluation)."""
    if max_tokens < max(lengths, default=0):
        raise DataError(f"max_tokens={max_tokens} is smaller than the longest example ({max(lengths)} tokens)")
    batches, current, longest = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda j: (lengths[j], j)):
        longest_if_added = max(longest, lengths[i])
        if current and (len(current) + 1) * longest_if_added > max_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


class TranslationDataSource:
    """Trainer data source for parallel data, batched by token count (§5.1: "each training
    batch contained a set of sentence pairs containing approximately 25000 source tokens and
    25000 target tokens").

    A training batch is drawn from the Trainer's generator: pick an example, take its length
    ``L = max(source, target tokens)``, and sample ``max_tokens // L`` pairs of that length
    (widening to shorter lengths if too few), so padding is small and the padded size never
    exceeds ``max_tokens``. Validation batches are fixed length-sorted groups.

    Batches are ``{"input_ids", "attention_mask", "labels"}`` for ``Transformer.forward``.
    """

    def __init__(self, train: Sequence[Pair], valid: Sequence[Pair], tokenizer, max_tokens: int = 4096,
                 max_positions: int | None = None):
        if tokenizer.pad_token_id is None:
            raise DataError("the tokenizer has no pad token; train it with special_tokens including '<pad>'")
        self.pad = tokenizer.pad_token_id
        self.max_tokens = max_tokens
        self.train = encode_pairs(train, tokenizer, max_positions)
        self.valid = encode_pairs(valid, tokenizer, max_positions)
        lengths = torch.tensor([max(len(s), len(t)) for s, t in self.train])
        if max_tokens < int(lengths.max()):
            raise DataError(f"max_tokens={max_tokens} is smaller than the longest training pair ({int(lengths.max())} tokens)")
        self.lengths = lengths
        self.order = torch.sort(lengths, stable=True).indices  # example indices by length
        self.ends = torch.searchsorted(lengths[self.order], torch.arange(int(lengths.max()) + 1), right=True)
        self.valid_batches = token_batches([max(len(s), len(t)) for s, t in self.valid], max_tokens)

    def _rows(self, batch: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
        return {k: v[rank::world_size] for k, v in batch.items()}

    def next_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """The next training batch (this rank's rows of the global batch)."""
        anchor = int(torch.randint(len(self.train), (1,), generator=generator))
        L = int(self.lengths[anchor])
        n = max(self.max_tokens // L, world_size)
        # order[first:end] are the examples of length L; widen to shorter ones when fewer than n.
        first, end = int(self.ends[L - 1]), int(self.ends[L])
        pool = self.order[max(0, min(first, end - n)):end]
        pick = pool[torch.randperm(len(pool), generator=generator)[:n]]
        return self._rows(collate_pairs([self.train[i] for i in pick.tolist()], self.pad), rank, world_size)

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> Iterable[dict[str, torch.Tensor]]:
        """The validation set in fixed token-count batches. Under ``world_size`` processes a batch
        with fewer rows than processes (long sentences) is merged with the next ones, so that
        every process has rows of every batch (each still about ``max_tokens`` padded tokens)."""
        batches: list[list[int]] = []
        for idx in self.valid_batches:
            if batches and len(batches[-1]) < world_size:
                batches[-1] = batches[-1] + idx
            else:
                batches.append(list(idx))
        if len(batches) > 1 and len(batches[-1]) < world_size:
            last = batches.pop()
            batches[-1] = batches[-1] + last
        if batches and len(batches[-1]) < world_size:
            raise DataError(f"the validation set has {len(self.valid)} pairs, fewer than the {world_size} processes")
        for idx in batches:
            yield self._rows(collate_pairs([self.valid[i] for i in idx], self.pad), rank, world_size)
