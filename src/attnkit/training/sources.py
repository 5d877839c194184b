"""Where the Trainer's batches come from: a two-method protocol, and the language-model source.

The Trainer is task-agnostic: it asks a data source for a dict of tensors and calls
``model(**batch).loss``. All randomness comes from the ``torch.Generator`` the Trainer passes
in (and checkpoints), and a source draws the *global* batch before slicing out this rank's
rows, so N processes see exactly the rows one process would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch

from attnkit.errors import ConfigError, InputError
from attnkit.models.base import eval_mode


class DataSource(Protocol):
    """What the Trainer needs from a task's data."""

    def next_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """This rank's slice of the next global training batch, as ``model(**batch)`` keyword args."""

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> Iterable[dict[str, torch.Tensor]]:
        """This rank's slices of a fixed set of validation batches (the same at every evaluation)."""


class LMDataSource:
    """Random contiguous blocks of an :class:`attnkit.data.LMDataset` for next-token prediction.

    Batches are ``{"input_ids": (b, block_size), "labels": (b, block_size)}`` with ``labels`` =
    ``input_ids`` (the model shifts them), ``b = batch_size // world_size``.
    """

    def __init__(self, dataset, batch_size: int, block_size: int, eval_iters: int = 8, eval_seed: int = 1234):
        self.dataset, self.batch_size, self.block_size = dataset, batch_size, block_size
        self.eval_iters, self.eval_seed = eval_iters, eval_seed

    def _batch(self, split: str, generator: torch.Generator, rank: int, world_size: int) -> dict[str, torch.Tensor]:
        x, _ = self.dataset.get_batch(split, self.batch_size, self.block_size, generator=generator, rank=rank,
                                      world_size=world_size)
        return {"input_ids": x, "labels": x}

    def next_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        return self._batch("train", generator, rank, world_size)

    def check(self, model, world_size: int = 1, evaluate: bool = True) -> None:
        """Before training: the splits hold a block, the batch splits over the ranks, and the
        model takes a block (no more positions than it has), all as errors saying so."""
        for split in ("train", "val") if evaluate else ("train",):
            batch = self._batch(split, torch.Generator().manual_seed(0), 0, world_size)
        try:
            with eval_mode(model), torch.no_grad():
                model(**{k: v[:1] for k, v in batch.items()})
        except InputError as e:
            raise ConfigError(f"data.block_size={self.block_size}: {e}") from None

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> Iterable[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.eval_seed)  # fixed: every evaluation sees the same blocks
        for _ in range(self.eval_iters):
            yield self._batch("val", g, rank, world_size)


class TensorDataSource:
    """Examples held in memory as tensors, ``(inputs (N, ...), labels (N, ...))`` for ``train``
    and ``valid``. A training batch is ``batch_size`` rows drawn with replacement from the
    Trainer's generator (the global batch, then this rank's slice); validation is every row in
    order, each rank taking every ``world_size``-th. Batches are ``_batch(inputs, labels)``:
    ``{input_name: inputs, "labels": labels}`` unless a subclass transforms them."""

    input_name = "input_ids"

    def __init__(self, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor],
                 batch_size: int):
        self.train, self.valid, self.batch_size = train, valid, batch_size

    def _batch(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.input_name: inputs, "labels": labels}

    def next_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        if self.batch_size % world_size:
            raise ConfigError(f"train.batch_size={self.batch_size} must divide over {world_size} processes")
        inputs, labels = self.train
        picks = torch.randint(len(labels), (self.batch_size,), generator=generator)  # the global batch
        per_rank = self.batch_size // world_size
        mine = picks[rank * per_rank:(rank + 1) * per_rank]
        return self._batch(inputs[mine], labels[mine])

    def eval_batches(self, rank: int = 0, world_size: int = 1) -> Iterable[dict[str, torch.Tensor]]:
        inputs, labels = self.valid
        mine = torch.arange(rank, len(labels), world_size)
        for start in range(0, len(mine), self.batch_size):
            idx = mine[start:start + self.batch_size]
            yield self._batch(inputs[idx], labels[idx])

