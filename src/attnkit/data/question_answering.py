"""Extractive question answering data: SQuAD-format JSON (Rajpurkar et al. 2016;
``data[].paragraphs[].qas[]`` with ``answers`` ``{"text", "answer_start"}``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from attnkit.errors import DataError


class Question(NamedTuple):
    question: str
    context: str
    answer: str  # the first gold answer's text: the training target
    start: int  # where it starts in the context (characters)
    answers: tuple[str, ...]  # every gold answer's text


def read_squad(path: str | Path) -> list[Question]:
    """Every answerable question of a SQuAD-format file: its first answer (the training target)
    and every gold answer's text (exact match and F1 take the best of them, as SQuAD's
    evaluation does); an answer whose ``answer_start`` does not point at its ``text`` in the
    context is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))["data"]
        out = []
        for article in data:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    if qa.get("is_impossible") or not qa["answers"]:
                        continue
                    for answer in qa["answers"]:
                        text, start = answer["text"], answer["answer_start"]
                        if not isinstance(start, int) or context[start:start + len(text)] != text:
                            raise DataError(f"{path}: question {qa.get('id', qa['question'])!r}: answer_start {start} "
                                            f"does not point at {text!r} in its context")
                    first = qa["answers"][0]
                    out.append(Question(qa["question"], context, first["text"], first["answer_start"],
                                        tuple(a["text"] for a in qa["answers"])))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not SQuAD-format JSON ({type(e).__name__}: {e})") from None
    if not out:
        raise DataError(f"{path} holds no answerable questions")
    return out
