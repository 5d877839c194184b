"""Fine-tuning extractive question answering from a recipe (``task = "question_answering"``,
Devlin et al. 2019 §4.2): SQuAD-format JSON (``data[].paragraphs[].qas[]`` with ``answers``
``{"text", "answer_start"}``), a ``BertForQuestionAnswering`` head on a pretrained encoder, and the
Trainer. Each question is paired with windows of its context
(:func:`attnkit.pipelines.question_windows`); a window that holds the whole first answer is
trained to point at its first and last tokens, the others are left out. Each evaluation also
answers the validation questions with :func:`attnkit.answer_question` and reports SQuAD's
``eval_exact_match`` and ``eval_f1``.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import torch

from attnkit.data.question_answering import Question, read_squad
from attnkit.errors import ConfigError, DataError
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.classification import (FINE_TUNING, ClassificationDataSource, ClassifierModelSection,
                                             ClassifierTokenizerSection)
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.lm import prepare_tokenizer
from attnkit.training.recipe import recipe_to_dict
from attnkit.training.trainer import TrainConfig, Trainer

@dataclasses.dataclass(frozen=True)
class QAModelSection(ClassifierModelSection):
    """``[model]``: ``BertForQuestionAnswering`` and the ``pretrained`` checkpoint it starts from."""

    family: str = "BertForQuestionAnswering"

    def validate(self) -> None:
        self.require(self.family.endswith("ForQuestionAnswering"), "family", "must be {Bert,Roberta,DistilBert}ForQuestionAnswering")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: SQuAD-format ``train``/``valid`` JSON files; ``max_seq_len`` tokens per window,
    ``doc_stride`` context tokens shared by consecutive windows; ``score_questions``: the first
    so many validation questions are answered at each evaluation for ``eval_exact_match`` and
    ``eval_f1`` (answering is one forward pass per window, so a whole SQuAD dev set takes minutes)."""

    train: str = ""
    valid: str = ""
    max_seq_len: int = 384
    doc_stride: int = 128
    score_questions: int | None = 1000  # validation questions answered for exact match / F1 (None: all)

    def validate(self) -> None:
        self.require_positive("max_seq_len", "doc_stride")
        self.require(self.score_questions is None or self.score_questions >= 0, "score_questions",
                     "must be >= 0 (0: no exact match / F1) or None (every validation question)")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A question answering recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: QAModelSection = QAModelSection()
    tokenizer: ClassifierTokenizerSection = ClassifierTokenizerSection()
    data: DataSection = DataSection()
    train: TrainConfig = FINE_TUNING


class QuestionAnsweringDataSource(ClassificationDataSource):
    """Windows with start/end targets (:class:`ClassificationDataSource`), and
    ``task_metrics(model)``: SQuAD's exact match and F1 (:mod:`attnkit.metrics`) of
    :func:`attnkit.answer_question` over the validation questions, which the Trainer reports as
    ``eval_exact_match`` and ``eval_f1``."""

    def __init__(self, train: list, valid: list, questions: list[Question], tokenizer, batch_size: int,
                 max_seq_len: int, doc_stride: int):
        super().__init__(train, valid, tokenizer.pad_token_id or 0, batch_size, pairs=True, reports_accuracy=False)
        self.questions, self.tokenizer, self.max_seq_len, self.doc_stride = questions, tokenizer, max_seq_len, doc_stride

    def task_metrics(self, model) -> dict[str, float]:
        if not self.questions:
            return {}
        from attnkit.metrics import answer_f1, exact_match
        from attnkit.pipelines import answer_question

        with torch.no_grad():
            answers = [answer_question(model, self.tokenizer, q, c, max_seq_len=self.max_seq_len,
                                       doc_stride=self.doc_stride)["answer"] for q, c, *_ in self.questions]
        gold = [q.answers for q in self.questions]
        return {"exact_match": exact_match(answers, gold), "f1": answer_f1(answers, gold)}


OUTSIDE = 1 << 30  # a position past any window: the loss ignores it


def encode_questions(questions: list[Question], tokenizer, max_seq_len: int, doc_stride: int,
                     keep_unanswered: bool = False) -> list:
    """``[(ids, token_type_ids, {"start_positions", "end_positions"}), ...]``, one per window
    that holds the answer (and, with ``keep_unanswered``, one per window that does not, its
    positions ``OUTSIDE``: they add no loss)."""
    from attnkit.pipelines import question_windows

    rows = []
    for question, context, text, start, *_ in questions:
        end = start + len(text)
        for enc in question_windows(tokenizer, question, context, max_seq_len, doc_stride):
            first = last = None
            for i, (seq, (a, b)) in enumerate(zip(enc.sequence_ids, enc.offsets)):
                if seq != 1:
                    continue
                if first is None and a <= start < b:
                    first = i
                if a < end <= b:
                    last = i
            if first is not None and last is not None:
                rows.append((enc.ids, enc.type_ids, {"start_positions": first, "end_positions": last}))
            elif keep_unanswered:
                rows.append((enc.ids, enc.type_ids, {"start_positions": OUTSIDE, "end_positions": OUTSIDE}))
    return rows


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Fine-tune the recipe's QA model into ``out_dir``; returns the finished Trainer."""
    out = Path(out_dir)
    d, m = recipe.data, recipe.model
    if not d.train.strip() or not d.valid.strip():
        raise ConfigError("data.train and data.valid are required: SQuAD-format JSON files")
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    train, valid = read_squad(d.train), read_squad(d.valid)
    barrier(info)
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        tokenizer = prepare_tokenizer(recipe, out, info, last, ["\n".join(q.question + "\n" + q.context for q in train)])
        torch.manual_seed(recipe.train.seed)  # the same new head on every rank
        model = m.build(tokenizer, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
        max_seq_len = min(d.max_seq_len, model.config.n_positions)
        train_rows = encode_questions(train, tokenizer, max_seq_len, d.doc_stride)
        if not train_rows:
            raise DataError(f"{d.train}: no answer fits in a window of max_seq_len={max_seq_len} tokens")
        valid_rows = encode_questions(valid, tokenizer, max_seq_len, d.doc_stride, keep_unanswered=True)
        scored = valid if d.score_questions is None else valid[:d.score_questions]
        source = QuestionAnsweringDataSource(train_rows, valid_rows, scored, tokenizer, recipe.train.batch_size,
                                             max_seq_len, d.doc_stride)
        trainer = Trainer(model, source, recipe.train, out, tokenizer=tokenizer, resume=last or False, dist=info,
                          run_info={"task": "question_answering", "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
