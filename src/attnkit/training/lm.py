"""Language-model training from a recipe: tokenizer, memory-mapped token data, model, Trainer.

``OUT/`` holds ``recipe.json``, ``tokenizer/`` (trained once), ``data/`` (token files, reused
on resume), ``metrics.jsonl`` and ``checkpoints/step-N/`` (each a full model directory with
its ``tokenizer.json``, so ``attnkit generate OUT`` works).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import torch

from attnkit.errors import ConfigError, DataError
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.sources import LMDataSource
from attnkit.training.trainer import TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class TokenizerSection(Config):
    """``[tokenizer]``: train a byte-level BPE or character tokenizer on the data, or load one
    (``kind = "pretrained"``, from ``path``). With ``model.pretrained`` the tokenizer is always
    loaded (from ``path``, by default the checkpoint itself): a new vocabulary would not fit the
    checkpoint's embeddings."""

    kind: Literal["byte_bpe", "char", "pretrained"] = "byte_bpe"
    vocab_size: int = 4096
    path: str | None = None
    special_tokens: tuple[str, ...] = ("<|endoftext|>", "<pad>")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``path`` is a text file, a folder, or ``"stdlib"`` (the standard library's source).

    ``exclude`` drops files whose path (relative to the folder) matches a glob pattern; then
    ``max_files``/``max_bytes`` keep the first files (sorted by path) up to that count / size.
    ``block_size`` defaults to the model's context.
    """

    path: str = "stdlib"
    exclude: tuple[str, ...] = ()
    max_files: int | None = None
    max_bytes: int | None = None
    val_fraction: float = 0.05
    block_size: int | None = None

    def validate(self) -> None:
        self.require(self.path.strip() != "", "path", "must name a file, a folder or 'stdlib'")
        self.require(0.0 < self.val_fraction < 1.0, "val_fraction", "must be in (0, 1)")
        self.require(self.block_size is None or self.block_size > 1, "block_size", "must be > 1")
        for name in ("max_files", "max_bytes"):
            self.require(getattr(self, name) is None or getattr(self, name) >= 1, name, "must be None or >= 1")

    def files(self) -> list[Path]:
        """The selected files; a missing or empty path is a ``DataError`` naming it."""
        import sysconfig

        from attnkit.data import find_text_files, stdlib_corpus_files

        stdlib = self.path == "stdlib"
        root = Path(sysconfig.get_paths()["stdlib"] if stdlib else self.path)
        files = stdlib_corpus_files() if stdlib else find_text_files(self.path)
        rel = (lambda f: f.relative_to(root).as_posix()) if root.is_dir() else (lambda f: f.name)
        files = [f for f in files if not any(fnmatch.fnmatch(rel(f), pattern) for pattern in self.exclude)]
        kept, total = [], 0
        for f in files[: self.max_files]:
            total += f.stat().st_size
            if self.max_bytes is not None and total > self.max_bytes:
                break
            kept.append(f)
        if not kept:
            raise DataError(f"data.path {self.path!r}: no file left after exclude={list(self.exclude)}, "
                            f"max_files={self.max_files}, max_bytes={self.max_bytes}")
        return kept


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A language-model recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: ModelSection = ModelSection()
    tokenizer: TokenizerSection = TokenizerSection()
    data: DataSection = DataSection()
    train: TrainConfig = TrainConfig()


def _train_tokenizer(section: TokenizerSection, files: list[Path]):
    from attnkit.tokenizers import Tokenizer

    if section.kind == "pretrained":
        return Tokenizer.from_pretrained(section.path)
    if section.kind == "char":
        return Tokenizer.train_char(files, special_tokens=section.special_tokens)
    return Tokenizer.train_bpe(files, vocab_size=section.vocab_size, special_tokens=section.special_tokens)


def with_pretrained_tokenizer(recipe):
    """The recipe with the tokenizer it will use: with ``model.pretrained``, ``kind =
    "pretrained"`` and ``path`` defaulting to the checkpoint; ``kind = "pretrained"`` without
    either is a :class:`ConfigError`."""
    t, pretrained = recipe.tokenizer, recipe.model.pretrained
    if pretrained is not None and (t.kind != "pretrained" or t.path is None):
        return dataclasses.replace(recipe, tokenizer=dataclasses.replace(t, kind="pretrained", path=t.path or pretrained))
    if t.kind == "pretrained" and t.path is None:
        raise ConfigError("tokenizer.kind = 'pretrained' needs tokenizer.path or model.pretrained")
    return recipe


def prepare_tokenizer(recipe, out: Path, info, last: Path | None, corpus):
    """The run's tokenizer: the checkpoint's when resuming (``last``), else the pretrained one
    (:func:`with_pretrained_tokenizer`) or one trained on ``corpus`` (files or texts) by rank 0,
    saved with ``recipe.json`` into ``out``, and loaded by every rank."""
    from attnkit.tokenizers import Tokenizer

    if last is not None:
        return Tokenizer.from_pretrained(last)
    recipe = with_pretrained_tokenizer(recipe)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / ckpt.RECIPE).write_text(json.dumps(recipe_to_dict(recipe), indent=1) + "\n")
        _train_tokenizer(recipe.tokenizer, corpus).save_pretrained(out / "tokenizer")
    barrier(info)
    return Tokenizer.from_pretrained(out / "tokenizer")


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Train the recipe's language model into ``out_dir``; returns the finished :class:`Trainer`.

    A new run refuses a non-empty ``out_dir``; ``resume=True`` continues its newest complete
    checkpoint (the tokenizer and token files of the first run are reused).
    """
    from attnkit.data import LMDataset

    out = Path(out_dir)
    if recipe.model.pretrained is None:  # check the model config before anything is written
        recipe.model.model_config(bos_token_id=None, eos_token_id=None)  # (the vocabulary comes from the tokenizer)
    with_pretrained_tokenizer(recipe)
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    files = recipe.data.files()
    barrier(info)  # every rank has checked the output directory before rank 0 writes to it
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        tokenizer = prepare_tokenizer(recipe, out, info, last, files)
        if info.is_main:
            dataset = LMDataset.build(files, tokenizer, out / "data", val_fraction=recipe.data.val_fraction,
                                      show_progress=recipe.train.progress)
        barrier(info)
        if not info.is_main:
            dataset = LMDataset.load(out / "data")

        torch.manual_seed(recipe.train.seed)  # the same initial weights on every rank
        model = recipe.model.build(tokenizer, vocab_size=tokenizer.vocab_size, bos_token_id=None,
                                   eos_token_id=tokenizer.eos_token_id)
        block_size = recipe.data.block_size or getattr(model.config, "n_positions", None)
        if block_size is None:
            raise ConfigError("data.block_size is required for a model without n_positions")
        source = LMDataSource(dataset, recipe.train.batch_size, block_size, eval_iters=recipe.train.eval_iters)
        source.check(model, info.world_size, evaluate=recipe.train.eval_every > 0)
        trainer = Trainer(model, source, recipe.train, out, tokenizer=tokenizer, resume=last or False, dist=info,
                          run_info={"task": "lm", "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
