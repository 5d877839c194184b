"""Fine-tuning a classifier from a recipe (``task = "classification"``): labelled texts from
JSONL, CSV or TSV files, a head on a pretrained encoder (``model.pretrained``: a BERT or ESM-2
checkpoint, its tokenizer alongside) or a model trained from scratch, and the Trainer, which
reports ``eval_accuracy`` next to ``eval_loss``.

::

    task = "classification"
    [model]
    family = "BertForSequenceClassification"
    pretrained = "path/to/bert-or-minilm"      # or a hub id; omit to train from a preset
    [data]
    train = "train.jsonl"                      # {"text": "...", "label": "pos"} per line
    valid = "valid.jsonl"                      # or leave out: valid_fraction of train is held out

``OUT/checkpoints/step-N/`` are model directories with ``tokenizer.json`` and the label names
in ``config.json`` (``id2label``), for ``attnkit.from_pretrained`` and ``transformers``.
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from attnkit.data.classification import Example, read_examples
from attnkit.errors import ConfigError, DataError
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.lm import TokenizerSection, prepare_tokenizer
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.trainer import TrainConfig, Trainer



@dataclasses.dataclass(frozen=True)
class ClassifierModelSection(ModelSection):
    """``[model]``: a sequence-classification class, and ``pretrained``: a checkpoint (directory
    or hub id) whose encoder it starts from (its config wins over ``preset``; ``config``
    overrides still apply, e.g. ``dropout``)."""

    family: str = "BertForSequenceClassification"

    def validate(self) -> None:
        self.require(self.family.endswith("ForSequenceClassification"), "family",
                     "must be a sequence classifier ({Bert,Roberta,DistilBert,Esm}ForSequenceClassification)")


@dataclasses.dataclass(frozen=True)
class ClassifierTokenizerSection(TokenizerSection):
    """``[tokenizer]``: by default the pretrained checkpoint's own (``kind = "pretrained"``,
    ``path`` defaulting to ``model.pretrained``); a model from scratch trains one as the LM task does."""

    kind: str = "pretrained"
    special_tokens: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")

    def validate(self) -> None:
        self.require(self.kind in ("byte_bpe", "char", "pretrained"), "kind", "must be 'byte_bpe', 'char' or 'pretrained'")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` files of labelled texts: ``.jsonl`` (one object per line),
    ``.csv`` or ``.tsv`` (a header row naming the columns). ``text_pair_field`` names a second
    text (sentence-pair tasks); ``max_length`` truncates the tokens; without ``valid``,
    ``valid_fraction`` of the training rows (drawn with ``train.seed``) are held out.
    ``f1_average`` adds ``eval_f1`` at each evaluation (``binary``: F1 of the second label
    name in sorted order, e.g. ``pos`` of ``neg``/``pos``)."""

    train: str = ""
    valid: str | None = None
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    max_length: int = 128
    valid_fraction: float = 0.1
    f1_average: str | None = None

    def validate(self) -> None:
        self.require(self.max_length > 1, "max_length", "must be > 1")
        self.require(0.0 < self.valid_fraction < 1.0, "valid_fraction", "must be in (0, 1)")
        self.require(self.f1_average in (None, "binary", "micro", "macro", "weighted"), "f1_average",
                     "must be 'binary', 'micro', 'macro' or 'weighted' (or left out: no F1)")


# [train] defaults of the fine-tuning tasks: a small learning rate for a pretrained encoder
FINE_TUNING = TrainConfig(lr=5e-5, schedule="cosine", warmup_steps=20, weight_decay=0.01, batch_size=16, max_steps=300,
                          eval_every=50)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A classification recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: ClassifierModelSection = ClassifierModelSection()
    tokenizer: ClassifierTokenizerSection = ClassifierTokenizerSection()
    data: DataSection = DataSection()
    train: TrainConfig = FINE_TUNING


class ClassificationDataSource:
    """Random batches of tokenised examples ``(ids, token_type_ids, label)``, padded to their
    longest row; validation batches in file order. Batches are ``{"input_ids",
    "attention_mask", "labels"}`` (plus ``token_type_ids`` for sentence pairs). A label is a
    class id, a list of one per token (token classification; -100 pads), or a dict of named
    targets that replace ``labels`` (question answering: ``start_positions``, ``end_positions``).
    ``reports_accuracy``: the Trainer adds ``eval_accuracy`` (argmax of the logits vs labels).
    ``task_metrics(model)`` predicts the validation set once more for the scores that need every
    prediction: ``f1`` with ``f1_average`` (scikit-learn's ``binary``, of the second label, or
    ``micro``/``macro``/``weighted``), and, with ``entity_scores``, the entity-level
    ``precision``/``recall``/``f1`` of the predicted B-/I- tags (seqeval) under ``label_names``."""

    def __init__(self, train: list, valid: list, pad_token_id: int, batch_size: int, pairs: bool,
                 reports_accuracy: bool = True, label_names: tuple[str, ...] = (), f1_average: str | None = None,
                 entity_scores: bool = False):
        self.train, self.valid, self.pad, self.batch_size, self.pairs = train, valid, pad_token_id, batch_size, pairs
        self.reports_accuracy, self.label_names = reports_accuracy, label_names
        self.f1_average, self.entity_scores = f1_average, entity_scores

    def task_metrics(self, model) -> dict[str, float]:
        if self.f1_average is None and not self.entity_scores:
            return {}
        return self.scores(model, accuracy=False)

    def predictions(self, model) -> tuple[list[list[int]], list[list[int]]]:
        """Per validation example, the model's predicted label ids at its labelled positions
        (one for a text, one per labelled token) and the gold ones."""
        from attnkit.models.base import eval_mode

        predicted, gold = [], []
        with eval_mode(model), torch.no_grad():
            for batch in self.eval_batches():
                labels = batch.pop("labels")
                guesses = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.argmax(-1).cpu()
                for guess, label in zip(guesses.reshape(len(labels), -1), labels.reshape(len(labels), -1)):
                    keep = label != -100
                    predicted.append(guess[keep].tolist())
                    gold.append(label[keep].tolist())
        return predicted, gold

    def scores(self, model, accuracy: bool = True) -> dict[str, float]:
        """The validation set's ``accuracy`` (over labelled positions) and ``f1`` (``f1_average``),
        or with ``entity_scores`` the entity-level ``precision``, ``recall`` and ``f1``."""
        from attnkit import metrics

        predicted, gold = self.predictions(model)
        flat_predicted, flat_gold = [i for row in predicted for i in row], [i for row in gold for i in row]
        out = {"accuracy": metrics.accuracy(flat_predicted, flat_gold)} if accuracy else {}
        if self.entity_scores:
            names = self.label_names
            out.update(metrics.entity_scores([[names[i] for i in row] for row in predicted],
                                             [[names[i] for i in row] for row in gold]))
        elif self.f1_average is not None:
            out["f1"] = metrics.f1(flat_predicted, flat_gold, average=self.f1_average)
        return out

    def _collate(self, rows: list) -> dict[str, torch.Tensor]:
        T = max(len(ids) for ids, _, _ in rows)
        batch = {"input_ids": torch.full((len(rows), T), self.pad), "attention_mask": torch.zeros(len(rows), T, dtype=torch.long)}
        if isinstance(rows[0][2], list):  # a label per token
            batch["labels"] = torch.full((len(rows), T), -100)
            for i, (_, _, labels) in enumerate(rows):
                batch["labels"][i, : len(labels)] = torch.tensor(labels)
        elif isinstance(rows[0][2], dict):  # named targets (question answering's start and end positions)
            batch.update({k: torch.tensor([target[k] for _, _, target in rows]) for k in rows[0][2]})
        else:
            batch["labels"] = torch.tensor([label for _, _, label in rows])
        if self.pairs:
            batch["token_type_ids"] = torch.zeros(len(rows), T, dtype=torch.long)
        for i, (ids, types, _) in enumerate(rows):
            batch["input_ids"][i, : len(ids)] = torch.tensor(ids)
            batch["attention_mask"][i, : len(ids)] = 1
            if self.pairs:
                batch["token_type_ids"][i, : len(ids)] = torch.tensor(types)
        return batch

    def next_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        if self.batch_size % world_size:
            raise ConfigError(f"train.batch_size={self.batch_size} must divide over {world_size} processes")
        picks = torch.randint(len(self.train), (self.batch_size,), generator=generator).tolist()  # the global batch
        per_rank = self.batch_size // world_size
        return self._collate([self.train[i] for i in picks[rank * per_rank:(rank + 1) * per_rank]])

    def eval_batches(self, rank: int = 0, world_size: int = 1):
        mine = self.valid[rank::world_size]
        for start in range(0, len(mine), self.batch_size):
            yield self._collate(mine[start:start + self.batch_size])


def encode_examples(examples: list[Example], tokenizer, labels: dict[str, int], max_length: int) -> list:
    """``[(ids, token_type_ids, label id), ...]``, each cut to ``max_length`` tokens."""
    texts = [t for t, _, _ in examples]
    pairs = [p for _, p, _ in examples] if examples[0][1] is not None else None
    enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_length)
    lengths = enc["attention_mask"].sum(1).tolist()
    return [(enc["input_ids"][i, :n].tolist(), enc["token_type_ids"][i, :n].tolist(), labels[label])
            for i, (n, (_, _, label)) in enumerate(zip(lengths, examples))]


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Fine-tune (or train) the recipe's classifier into ``out_dir``; returns the finished Trainer."""
    d = recipe.data
    return fine_tune(recipe, out_dir, resume, "classification",
                     read=lambda path: read_examples(path, d.text_field, d.label_field, d.text_pair_field),
                     labels_of=lambda example: [example[2]], encode=encode_examples,
                     corpus=lambda examples: [t for t, _, _ in examples], pairs=d.text_pair_field is not None,
                     f1_average=d.f1_average)


def hold_out(recipe, read) -> tuple[list, list]:
    """``(train, valid)``: ``read(data.train)`` and ``read(data.valid)``, or, without
    ``data.valid``, ``data.valid_fraction`` of the training examples held out (drawn with
    ``train.seed``)."""
    d = recipe.data
    train = read(d.train)
    if d.valid is not None:
        return train, read(d.valid)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.train.seed)).tolist()
    n_valid = max(1, round(d.valid_fraction * len(train)))
    return [train[i] for i in order[n_valid:]], [train[i] for i in order[:n_valid]]


def split_labelled(recipe, task: str, read, labels_of) -> tuple[list, list, tuple[str, ...]]:
    """``(train, valid, label names)``: the examples of :func:`hold_out`; the label names sorted
    (``labels_of(example)`` lists an example's). One label only, or validation labels never seen
    in training, are a :class:`DataError`."""
    d = recipe.data
    if not d.train.strip():
        raise ConfigError(f"data.train is required: the labelled examples for task {task!r}")
    train, valid = hold_out(recipe, read)
    label_names = tuple(sorted({label for example in train for label in labels_of(example)}))
    if len(label_names) < 2:
        raise DataError(f"{d.train}: found a single label {label_names}; a classifier needs at least two")
    unknown = sorted({label for example in valid for label in labels_of(example)} - set(label_names))
    if unknown:
        raise DataError(f"{d.valid}: labels {unknown[:5]} do not occur in the training data (labels: {list(label_names)})")
    return train, valid, label_names


def fine_tune(recipe, out_dir: str | Path, resume: bool, task: str, read, labels_of, encode, corpus,
              pairs: bool = False, f1_average: str | None = None, entity_scores: bool = False) -> Trainer:
    """What the text classification tasks share: the examples and labels of
    :func:`split_labelled`; the tokenizer (the pretrained checkpoint's by
    default, else trained on ``corpus(examples)``); a new head on ``model.pretrained`` or a model
    from a preset; rows from ``encode(examples, tokenizer, label ids, max_length)``; the Trainer
    (with ``eval_f1`` for ``f1_average``, entity scores for ``entity_scores`` and B-/I- tags)."""
    from attnkit.metrics import missing_packages, require_packages

    out = Path(out_dir)
    d, m = recipe.data, recipe.model
    if f1_average is not None:
        require_packages(["f1"], "data.f1_average needs", ConfigError)
    if entity_scores and missing_packages(["entity_scores"]):
        warnings.warn("entity-level precision, recall and F1 are not reported: pip install seqeval", stacklevel=2)
        entity_scores = False
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    train, valid, label_names = split_labelled(recipe, task, read, labels_of)
    barrier(info)
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        tokenizer = prepare_tokenizer(recipe, out, info, last, corpus(train))
        torch.manual_seed(recipe.train.seed)  # the same new head on every rank
        model = m.build(tokenizer, dict(num_labels=len(label_names), label_names=label_names),
                        vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
        labels = {name: i for i, name in enumerate(label_names)}
        max_length = min(d.max_length, getattr(model.config, "n_positions", d.max_length))
        source = ClassificationDataSource(encode(train, tokenizer, labels, max_length),
                                          encode(valid, tokenizer, labels, max_length),
                                          tokenizer.pad_token_id or 0, recipe.train.batch_size, pairs=pairs,
                                          label_names=label_names, f1_average=f1_average,
                                          entity_scores=entity_scores and any(n[:2] in ("B-", "I-") for n in label_names))
        trainer = Trainer(model, source, recipe.train, out, tokenizer=tokenizer, resume=last or False, dist=info,
                          run_info={"task": task, "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
