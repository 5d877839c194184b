"""Records from JSON-lines, CSV and TSV files (the labelled-text formats of the fine-tuning
tasks): :func:`read_records` parses them, :func:`read_text_fields` picks named text fields.
A malformed line, a missing field or an empty text is a :class:`DataError` naming the file
and line."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from attnkit.errors import DataError

RECORD_SUFFIXES = (".jsonl", ".csv", ".tsv")


def read_records(path: str | os.PathLike, suffixes: Sequence[str] = RECORD_SUFFIXES) -> list[tuple[int, dict]]:
    """``[(line number, record), ...]``: one JSON object per line of a ``.jsonl`` file (blank
    lines skipped), or one row per line of a ``.csv``/``.tsv`` file under its header row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    kind = path.suffix.lower()
    if kind not in suffixes:
        raise DataError(f"{path}: expected a {', '.join(suffixes[:-1])} or {suffixes[-1]} file")
    with path.open(encoding="utf-8-sig", newline="") as f:
        if kind != ".jsonl":
            reader = csv.DictReader(f, delimiter="," if kind == ".csv" else "\t")
            return [(line_no, row) for line_no, row in enumerate(reader, start=2)]
        rows = []
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object per line")
            rows.append((line_no, row))
        return rows


def read_text_fields(path: str | os.PathLike, fields: Sequence[str | None]) -> list[tuple[str | None, ...]]:
    """Per record, the values of ``fields`` as strings (integers, such as label ids, are turned
    into strings; a field named None gives None), from a file :func:`read_records` reads."""
    out = []
    for line_no, row in read_records(path):
        values = []
        for name in fields:
            if name is None:
                values.append(None)
                continue
            value = row.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{path}:{line_no}: field {name!r} is missing or empty")
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise DataError(f"{path}:{line_no}: field {name!r} must be a string (or an integer label), "
                                f"got {value!r}")
            values.append(str(value))
        out.append(tuple(values))
    if not out:
        raise DataError(f"{path} holds no examples")
    return out
