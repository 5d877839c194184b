"""Learning-rate schedules as multipliers of the base learning rate.

Each schedule is a small callable object ``f(i) -> float`` for ``torch.optim.lr_scheduler.LambdaLR``:
``i`` counts the optimizer updates already done, so ``f(0)`` is the factor of the first update.
Callable objects (not closures) keep ``LambdaLR.state_dict()`` plain data for checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from attnkit.errors import ConfigError


@dataclass
class WarmupCosine:
    """Linear warmup over ``warmup_steps`` updates, then a cosine decay to ``min_ratio`` at ``max_steps``."""

    warmup_steps: int
    max_steps: int
    min_ratio: float = 0.1

    def __call__(self, i: int) -> float:
        if i < self.warmup_steps:
            return (i + 1) / self.warmup_steps
        progress = min(1.0, (i - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class InverseSqrt:
    """Vaswani et al. 2017, eq. 3: ``lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``.

    ``step`` counts from 1. The base learning rate scales the formula: ``lr = 1.0`` is the paper.
    """

    d_model: int
    warmup_steps: int

    def __call__(self, i: int) -> float:
        step = i + 1
        return self.d_model**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


@dataclass
class Constant:
    """Linear warmup over ``warmup_steps`` updates, then the base learning rate."""

    warmup_steps: int = 0

    def __call__(self, i: int) -> float:
        return min(1.0, (i + 1) / self.warmup_steps) if self.warmup_steps else 1.0


SCHEDULES = ("cosine", "inverse_sqrt", "constant")


def make_schedule(name: str, *, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.1, d_model: int | None = None):
    """The schedule called ``name`` (one of :data:`SCHEDULES`)."""
    if name == "cosine":
        return WarmupCosine(warmup_steps, max_steps, min_lr_ratio)
    if name == "inverse_sqrt":
        if not d_model or warmup_steps < 1:
            raise ConfigError("train.schedule 'inverse_sqrt' needs the model's d_model and train.warmup_steps >= 1")
        return InverseSqrt(d_model, warmup_steps)
    if name == "constant":
        return Constant(warmup_steps)
    raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got {name!r}")


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that sets ``lr = base_lr * schedule(updates_done)`` on every param group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
