"""Labelled text for the classification tasks: texts (and sentence pairs) with a label from
JSONL, CSV or TSV files (:func:`read_examples`), and sentences with a label per word from
CoNLL-style or JSONL files (:func:`read_sentences`). Malformed input is a :class:`DataError`
naming the file and line."""

from __future__ import annotations

from pathlib import Path

from attnkit.data.records import read_records, read_text_fields
from attnkit.errors import DataError

Example = tuple[str, str | None, str]  # text, optional second text, label
Sentence = tuple[list[str], list[str]]  # words, labels


def read_examples(path: str | Path, text_field: str, label_field: str, pair_field: str | None = None) -> list[Example]:
    """``[(text, pair or None, label), ...]`` from a JSONL, CSV or TSV file
    (:func:`attnkit.data.records.read_text_fields`)."""
    return read_text_fields(path, (text_field, pair_field, label_field))


def read_sentences(path: str | Path, tokens_field: str = "tokens", tags_field: str = "tags") -> list[Sentence]:
    """Labelled sentences from a JSONL or CoNLL-style file; malformed lines are a
    :class:`DataError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    sentences: list[Sentence] = []
    if path.suffix.lower() == ".jsonl":
        for n, row in read_records(path):
            words, tags = row.get(tokens_field), row.get(tags_field)
            if not (isinstance(words, list) and isinstance(tags, list) and words and len(words) == len(tags)
                    and all(isinstance(x, str) and x.strip() for x in words + tags)):
                raise DataError(f"{path}:{n}: expected non-empty lists {tokens_field!r} and {tags_field!r} of "
                                "strings, one tag per token")
            sentences.append((words, tags))
    else:
        words, tags = [], []
        for n, line in enumerate([*path.read_text(encoding="utf-8-sig").splitlines(), ""], start=1):
            if not line.strip() or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append((words, tags))
                words, tags = [], []
                continue
            parts = line.split()
            if len(parts) < 2:
                raise DataError(f"{path}:{n}: expected 'word label' (whitespace-separated), got {line!r}")
            words.append(parts[0])
            tags.append(parts[-1])
    if not sentences:
        raise DataError(f"{path} holds no sentences")
    return sentences
