"""Fine-tuning a token classifier from a recipe (``task = "token_classification"``: named
entities, part-of-speech tags, per-residue classes): sentences of labelled words from CoNLL-style
files (one ``word<whitespace>label`` per line, a blank line between sentences) or JSONL
(``{"tokens": [...], "tags": [...]}``), a ``...ForTokenClassification`` head on a pretrained
encoder or from a preset, and the Trainer (``eval_accuracy`` over the labelled tokens; with
B-/I- tags also the entity-level ``eval_precision``, ``eval_recall`` and ``eval_f1`` of seqeval,
as CoNLL's conlleval counts entities).

Each word's first sub-word token carries its label and the rest are ignored (-100), as
Hugging Face's token-classification examples do; the labels are the training file's in sorted
order, saved as the checkpoint's label names, so :func:`attnkit.classify_tokens` reads them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from attnkit.data.classification import Sentence, read_sentences
from attnkit.models.config import Config
from attnkit.training.classification import (FINE_TUNING, ClassifierModelSection, ClassifierTokenizerSection,
                                             fine_tune)
from attnkit.training.trainer import TrainConfig, Trainer



@dataclasses.dataclass(frozen=True)
class TokenClassifierModelSection(ClassifierModelSection):
    """``[model]``: a token classification class and an optional ``pretrained`` checkpoint."""

    family: str = "BertForTokenClassification"

    def validate(self) -> None:
        self.require(self.family.endswith("ForTokenClassification"), "family",
                     "must be a token classifier ({Bert,Roberta,DistilBert,Esm}ForTokenClassification)")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` files (``.jsonl`` with ``tokens_field``/``tags_field``
    lists, anything else CoNLL-style; the label is a line's last column); without ``valid``,
    ``valid_fraction`` of the training sentences are held out. ``max_length`` truncates tokens."""

    train: str = ""
    valid: str | None = None
    tokens_field: str = "tokens"
    tags_field: str = "tags"
    max_length: int = 128
    valid_fraction: float = 0.1

    def validate(self) -> None:
        self.require(self.max_length > 2, "max_length", "must be > 2")
        self.require(0.0 < self.valid_fraction < 1.0, "valid_fraction", "must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A token classification recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: TokenClassifierModelSection = TokenClassifierModelSection()
    tokenizer: ClassifierTokenizerSection = ClassifierTokenizerSection()
    data: DataSection = DataSection()
    train: TrainConfig = FINE_TUNING


def encode_sentences(sentences: list[Sentence], tokenizer, labels: dict[str, int], max_length: int) -> list:
    """``[(ids, token_type_ids, token labels), ...]``: each word's first sub-word token labelled,
    the others and the special tokens -100, cut to ``max_length`` tokens (the last kept token is
    the closing special token when the tokenizer adds one)."""
    rows = []
    for words, tags in sentences:
        enc = tokenizer.backend.encode(words, is_pretokenized=True)
        ids, word_ids = enc.ids, enc.word_ids
        if len(ids) > max_length:
            ids, word_ids = ids[: max_length - 1] + ids[-1:], word_ids[: max_length - 1] + word_ids[-1:]
        previous, token_labels = None, []
        for w in word_ids:
            token_labels.append(-100 if w is None or w == previous else labels[tags[w]])
            previous = w
        rows.append((ids, [0] * len(ids), token_labels))
    return rows


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Fine-tune (or train) the recipe's token classifier into ``out_dir``; returns the Trainer."""
    d = recipe.data
    return fine_tune(recipe, out_dir, resume, "token_classification",
                     read=lambda path: read_sentences(path, d.tokens_field, d.tags_field),
                     labels_of=lambda sentence: sentence[1], encode=encode_sentences,
                     corpus=lambda sentences: ["\n".join(" ".join(words) for words, _ in sentences)],
                     entity_scores=True)
