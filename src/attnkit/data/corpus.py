"""Text corpora on disk: finding the files, reading them in bounded chunks, and the built-in
corpus (the Python standard library's own source code, present wherever attnkit runs)."""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from attnkit.errors import DataError

CHUNK_CHARS = 1 << 20  # read files ~1M characters at a time, so no file need fit in RAM

# Cut only at a line end that follows a non-space character: there, the byte-level (GPT-2)
# regex, BERT's and whitespace pre-tokenizers all end a pre-token, and they match without
# look-behind, so tokenizing the pieces gives exactly the tokens of the whole text. (Cutting
# *after* the newline would not: GPT-2 groups "\n" with the indentation that follows.)
_SAFE_CUT = re.compile(r"(?<=\S)(?=\r?\n)")


def find_text_files(paths: str | os.PathLike | Iterable[str | os.PathLike], pattern: str = "*") -> list[Path]:
    """The files named by ``paths``: files as given, directories searched recursively.

    Inside a directory, files matching ``pattern`` are taken in sorted order, skipping hidden
    and empty ones. A missing path, an empty named file, or a directory with no matching
    non-empty file is a ``DataError`` naming it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_file():
            if path.stat().st_size == 0:
                raise DataError(f"data file {path} is empty")
            files.append(path)
        elif path.is_dir():
            found = sorted(
                p for p in path.rglob(pattern)
                if p.is_file() and p.stat().st_size > 0
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(f"data directory {path} has no non-empty files matching {pattern!r}")
            files.extend(found)
        else:
            raise DataError(f"data path {path} does not exist")
    if not files:
        raise DataError("no data files given")
    return files


def read_text_chunks(path: str | os.PathLike, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """The text of a UTF-8 file in pieces of about ``chunk_chars`` characters.

    Pieces end just before a line break that follows a non-space character, so tokenizing the
    pieces one by one gives the same tokens as tokenizing the whole file (for pre-tokenizers
    that split on whitespace, which all of ours do). Invalid UTF-8 is a ``DataError``.
    """
    buffer = ""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            while block := f.read(chunk_chars):
                buffer += block
                cut = _last_safe_cut(buffer)
                if cut:
                    yield buffer[:cut]
                    buffer = buffer[cut:]
    except UnicodeDecodeError as e:
        raise DataError(f"data file {path} is not UTF-8 text ({e.reason}: byte {e.object[e.start:e.end]!r}); "
                        "convert it to UTF-8 or leave it out") from None
    if buffer:
        yield buffer


def _last_safe_cut(text: str) -> int:
    last = None
    for last in _SAFE_CUT.finditer(text):
        pass
    return last.start() if last else 0


def stdlib_corpus_files(max_files: int | None = None, max_bytes: int | None = None) -> list[Path]:
    """The ``*.py`` files of the Python standard library (``sysconfig.get_paths()["stdlib"]``).

    Sorted by path, so the same Python gives the same corpus. Installed packages
    (``site-packages``), empty files and files that are not UTF-8 (a few encoding tests) are
    left out. ``max_files`` / ``max_bytes`` keep the leading files within that count / total size.
    About 1,800 files and 30 MB on CPython 3.11.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if "site-packages" in parts or "dist-packages" in parts or not path.is_file():
            continue
        size = path.stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            break
        if size == 0:
            continue
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
        total += size
        if max_files is not None and len(files) >= max_files:
            break
    if not files:
        raise DataError(f"no standard-library source files found under {root} (max_bytes={max_bytes})")
    return files
