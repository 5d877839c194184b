"""Machine-translation training from a recipe (``task = "translation"``): a joint BPE tokenizer
trained on both sides, token-count batches of sentence pairs, an encoder-decoder
:class:`~attnkit.Transformer`, and the Trainer (label-smoothed loss from the model, the
inverse-square-root schedule from ``train.schedule``). With ``model.pretrained`` it fine-tunes
any text-to-text checkpoint instead (T5 / Flan-T5, MarianMT, a Transformer), with the
checkpoint's tokenizer: translation, summarization (``data.source_prefix = "summarize: "``,
``data.metrics = ["rouge"]``), or any other pairs of texts.

``OUT/`` holds ``recipe.json``, ``tokenizer/``, ``metrics.jsonl`` and ``checkpoints/step-N/``
(model directories with ``tokenizer.json``, for ``attnkit translate``/``evaluate``/``average``).
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import torch

from attnkit.data.translation import TranslationDataSource
from attnkit.errors import ConfigError
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.lm import TokenizerSection, prepare_tokenizer, with_pretrained_tokenizer
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.trainer import TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` are ``"numbers"`` (built-in English -> German number
    words), a TSV file, a JSON-lines file (texts under ``source_field`` and ``target_field``),
    or ``"SOURCE_FILE,TARGET_FILE"``. ``max_tokens`` bounds a batch's padded size (sentences x
    longest side); ``train.batch_size`` is not used. ``source_prefix`` is put before every
    source (T5's task prefixes: ``"translate English to German: "``, ``"summarize: "``).
    ``metrics`` (``bleu``, ``chrf``, ``rouge``) decode the validation sources at every
    evaluation (beam ``eval_num_beams``; the first ``metric_examples`` pairs) and report
    ``eval_bleu``, ``eval_chrf``, ``eval_rouge1`` ... beside ``eval_loss``."""

    train: str = "numbers"
    valid: str = "numbers"
    max_tokens: int = 4096
    skip_empty: bool = False
    source_field: str = "source"
    target_field: str = "target"
    source_prefix: str = ""
    metrics: tuple[str, ...] = ()
    eval_num_beams: int = 1
    bleu_tokenize: str = "13a"
    metric_examples: int | None = 1000  # validation pairs decoded for metrics (None: all)

    def validate(self) -> None:
        self.require_positive("max_tokens", "eval_num_beams")
        self.require(self.metric_examples is None or self.metric_examples >= 1, "metric_examples",
                     "must be >= 1 or None (every validation pair)")
        from attnkit.metrics import TEXT_METRICS

        unknown = [m for m in self.metrics if m not in TEXT_METRICS]
        self.require(not unknown, "metrics", f"has {unknown}; expected some of {TEXT_METRICS}")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A translation (or any text-to-text) recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: ModelSection = ModelSection(family="Transformer", preset="transformer-base")
    tokenizer: TokenizerSection = TokenizerSection(special_tokens=("<pad>", "<s>", "</s>", "<unk>"))
    data: DataSection = DataSection()
    train: TrainConfig = TrainConfig(schedule="inverse_sqrt")


class TextToTextDataSource(TranslationDataSource):
    """Token-count batches of pairs (:class:`~attnkit.data.translation.TranslationDataSource`)
    and ``task_metrics(model)``: the validation sources decoded by
    :func:`~attnkit.generation.translation.translate` and scored against their targets by
    ``metrics`` (:mod:`attnkit.metrics`; BLEU and chrF 0-100, ROUGE as ``rouge1``, ``rouge2``,
    ``rougeL``, ``rougeLsum``)."""

    def __init__(self, train, valid, tokenizer, max_tokens: int, max_positions: int | None, metrics=(),
                 num_beams: int = 1, bleu_tokenize: str = "13a", metric_examples: int | None = None):
        super().__init__(train, valid, tokenizer, max_tokens=max_tokens, max_positions=max_positions)
        self.valid_pairs, self.tokenizer, self.metrics = valid[:metric_examples], tokenizer, tuple(metrics)
        self.num_beams, self.bleu_tokenize = num_beams, bleu_tokenize

    def task_metrics(self, model) -> dict[str, float]:
        if not self.metrics:
            return {}
        from attnkit.generation.translation import translate
        from attnkit.metrics import rouge
        from attnkit.metrics.translation import score

        with torch.no_grad():
            hypotheses = translate(model, self.tokenizer, [s for s, _ in self.valid_pairs], num_beams=self.num_beams)
        references = [t for _, t in self.valid_pairs]
        scores = {}
        for name in self.metrics:
            if name == "rouge":
                scores.update(rouge(hypotheses, references))
            else:
                scores[name] = score(name, hypotheses, references, self.bleu_tokenize)
        return scores


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Train (or fine-tune, with ``model.pretrained``) the recipe's encoder-decoder model into
    ``out_dir``; returns the finished Trainer."""
    from attnkit.data.translation import load_pairs

    out, m, d = Path(out_dir), recipe.model, recipe.data
    if m.pretrained is None:  # check the model config before anything is written (the vocabulary comes later)
        m.model_config(pad_token_id=0, bos_token_id=None, eos_token_id=None, decoder_start_token_id=0)
    with_pretrained_tokenizer(recipe)
    from attnkit.metrics import require_packages

    require_packages(d.metrics, f"data.metrics {list(d.metrics)} need", ConfigError)
    if "bleu" in d.metrics:
        from attnkit.metrics.translation import check_options

        check_options(["bleu"], d.bleu_tokenize)
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    train, valid = [[(d.source_prefix + s, t) for s, t in load_pairs(spec, split, d.skip_empty, d.source_field,
                                                                      d.target_field)]
                    for spec, split in ((d.train, "train"), (d.valid, "valid"))]
    barrier(info)  # every rank has checked the output directory before rank 0 writes to it
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        # One joint vocabulary for both languages (§5.1), so the embeddings can be shared (§3.4).
        sides = ["\n".join(s for s, _ in train), "\n".join(t for _, t in train)]
        tokenizer = prepare_tokenizer(recipe, out, info, last, sides)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        torch.manual_seed(recipe.train.seed)  # the same initial weights on every rank
        model = m.build(tokenizer, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        decoder_start_token_id=start)
        if not hasattr(model, "decoder_start_ids"):
            raise ConfigError(f"task 'translation' needs an encoder-decoder model (Transformer, T5), "
                              f"got model.family {m.family!r}")
        source = TextToTextDataSource(train, valid, tokenizer, d.max_tokens, getattr(model.config, "n_positions", None),
                                      d.metrics, d.eval_num_beams, d.bleu_tokenize, d.metric_examples)
        trainer = Trainer(model, source, recipe.train, out, tokenizer=tokenizer, resume=last or False, dist=info,
                          run_info={"task": "translation", "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
