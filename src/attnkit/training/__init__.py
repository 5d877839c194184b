"""Training: the Trainer, AdamW and schedules, atomic checkpoints, recipes, distributed glue."""

from attnkit.training.checkpoint import latest_checkpoint, verify_checkpoint
from attnkit.training.optim import decay_groups, make_optimizer
from attnkit.training.recipe import load_recipe, run_recipe
from attnkit.training.schedules import InverseSqrt, WarmupCosine, make_schedule
from attnkit.training.sources import DataSource, LMDataSource
from attnkit.training.trainer import TrainConfig, Trainer

__all__ = [
    "DataSource", "InverseSqrt", "LMDataSource", "TrainConfig", "Trainer", "WarmupCosine", "decay_groups",
    "latest_checkpoint", "load_recipe", "make_optimizer", "make_schedule", "run_recipe", "verify_checkpoint",
]
