"""Machine-translation training from a recipe (``task = "translation"``): a joint BPE tokenizer
trained on both sides, token-count batches of sentence pairs, an encoder-decoder
:class:`~attnkit.Transformer`, and the Trainer (label-smoothed loss from the model, the
inverse-square-root schedule from ``train.schedule``).

``OUT/`` holds ``recipe.json``, ``tokenizer/``, ``metrics.jsonl`` and ``checkpoints/step-N/``
(model directories with ``tokenizer.json``, for ``attnkit translate``/``evaluate``/``average``).
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import torch

from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.lm import TokenizerSection, prepare_tokenizer
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.trainer import TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` are ``"numbers"`` (built-in English -> German number
    words), a TSV file, or ``"SOURCE_FILE,TARGET_FILE"``. ``max_tokens`` bounds a batch's
    padded size (sentences x longest side); ``train.batch_size`` is not used."""

    train: str = "numbers"
    valid: str = "numbers"
    max_tokens: int = 4096
    skip_empty: bool = False

    def validate(self) -> None:
        self.require_positive("max_tokens")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A translation recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: ModelSection = ModelSection(family="Transformer", preset="transformer-base")
    tokenizer: TokenizerSection = TokenizerSection(special_tokens=("<pad>", "<s>", "</s>", "<unk>"))
    data: DataSection = DataSection()
    train: TrainConfig = TrainConfig(schedule="inverse_sqrt")


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Train the recipe's translation model into ``out_dir``; returns the finished Trainer."""
    from attnkit.data.translation import TranslationDataSource, load_pairs

    out = Path(out_dir)
    # Check the model config before anything is written (the vocabulary comes later, from the tokenizer).
    recipe.model.model_config(pad_token_id=0, bos_token_id=None, eos_token_id=None, decoder_start_token_id=0)
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    d = recipe.data
    train, valid = load_pairs(d.train, "train", d.skip_empty), load_pairs(d.valid, "valid", d.skip_empty)
    barrier(info)  # every rank has checked the output directory before rank 0 writes to it
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        # One joint vocabulary for both languages (§5.1), so the embeddings can be shared (§3.4).
        sides = ["\n".join(s for s, _ in train), "\n".join(t for _, t in train)]
        tokenizer = prepare_tokenizer(recipe, out, info, last, sides)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        config = recipe.model.model_config(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                           decoder_start_token_id=start)
        source = TranslationDataSource(train, valid, tokenizer, max_tokens=d.max_tokens,
                                       max_positions=config.n_positions)
        torch.manual_seed(recipe.train.seed)  # the same initial weights on every rank
        model = recipe.model.model_class()(config)
        trainer = Trainer(model, source, recipe.train, out, tokenizer=tokenizer, resume=last or False, dist=info,
                          run_info={"task": "translation", "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
