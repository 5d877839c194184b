"""Image-text contrastive training from a recipe (``task = "image_text"``): pairs of an image and
its caption (a ``.jsonl``/``.csv``/``.tsv`` file, or the built-in ``"digits"`` captioned "a
handwritten N"), a :class:`~attnkit.Clip` or :class:`~attnkit.Siglip` fine-tuned from a
checkpoint (``model.pretrained``, with its tokenizer and image processor) or trained from a
preset (with a character tokenizer trained on the captions), and the Trainer, which minimises
the model's own loss over each batch's pairings (CLIP's cross-entropy, SigLIP's sigmoid loss)
and reports ``eval_loss``.

::

    task = "image_text"
    [model]
    pretrained = "openai/clip-vit-base-patch32"   # or family + preset to train from scratch
    [data]
    train = "captions.jsonl"                        # {"image": "photos/1.jpg", "text": "a red bicycle"} per line
    valid_fraction = 0.1                            # or valid = "valid.jsonl"

Image paths are relative to the data file. ``OUT/checkpoints/step-N/`` are model directories with
``tokenizer.json`` and ``preprocessor_config.json``, for :func:`attnkit.zero_shot_classify_image`,
:func:`attnkit.embed_images` and ``transformers``' ``CLIPModel``.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import torch

from attnkit.embeddings import dual_encoder_text_inputs
from attnkit.errors import ConfigError, DataError
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.classification import hold_out
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.image_classification import read_pixels
from attnkit.training.lm import TokenizerSection, prepare_tokenizer
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.sources import TensorDataSource
from attnkit.training.trainer import TrainConfig, Trainer
from attnkit.vision.images import PROCESSOR_FILE, ImageProcessor

DIGIT_CAPTION = "a handwritten {}"  # the built-in digits' captions


@dataclasses.dataclass(frozen=True)
class ImageTextModelSection(ModelSection):
    """``[model]``: ``Clip`` or ``Siglip`` from ``preset``, or from ``pretrained`` (a checkpoint
    directory or hub id; its config wins)."""

    family: str = "Clip"
    preset: str = "clip-digits"

    def validate(self) -> None:
        self.require(self.family in ("Clip", "Siglip"), "family", "must be 'Clip' or 'Siglip'")


@dataclasses.dataclass(frozen=True)
class ImageTextTokenizerSection(TokenizerSection):
    """``[tokenizer]``: the pretrained checkpoint's own, or for a model from scratch one trained on
    the captions (``char`` by default)."""

    kind: str = "char"
    special_tokens: tuple[str, ...] = ("<pad>", "<|endoftext|>", "<unk>")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` files of captioned images (``.jsonl``, ``.csv`` or ``.tsv``
    with ``image_field`` and ``text_field``), or ``"digits"``; without ``valid``,
    ``valid_fraction`` of the training pairs (drawn with ``train.seed``) are held out."""

    train: str = ""
    valid: str | None = None
    image_field: str = "image"
    text_field: str = "text"
    valid_fraction: float = 0.1

    def validate(self) -> None:
        self.require(0.0 < self.valid_fraction < 1.0, "valid_fraction", "must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An image-text recipe: ``[model]``, ``[tokenizer]``, ``[data]``, ``[train]``."""

    model: ImageTextModelSection = ImageTextModelSection()
    tokenizer: ImageTextTokenizerSection = ImageTextTokenizerSection()
    data: DataSection = DataSection()
    train: TrainConfig = TrainConfig(lr=2e-3, schedule="cosine", warmup_steps=20, weight_decay=0.01, batch_size=64,
                                     max_steps=300, eval_every=100, save_every=300)


def read_pairs(path: str, d: DataSection) -> list[tuple]:
    """``[(image, caption)]`` from a file of captioned images (paths relative to it), or the digits."""
    if not path.strip():
        raise ConfigError("data.train must name a file of captioned images (.jsonl, .csv, .tsv) or 'digits'")
    if path == "digits":
        from attnkit.data.images import digits

        return [(image, DIGIT_CAPTION.format(label)) for image, label in digits()]
    from attnkit.data.records import read_records

    file = Path(path)
    pairs = []
    for line, row in read_records(file):
        image, text = row.get(d.image_field), row.get(d.text_field)
        if not isinstance(image, str) or not image or not isinstance(text, str) or not text:
            raise DataError(f"{file}:{line}: needs a non-empty {d.image_field!r} (an image path) and "
                            f"{d.text_field!r} (its caption)")
        pairs.append((file.parent / image, text))
    if len(pairs) < 2:
        raise DataError(f"{file} holds {len(pairs)} captioned image(s); contrastive training needs at least 2")
    return pairs


class ImageTextSource(TensorDataSource):
    """Random batches of pairs: ``{"pixel_values", "input_ids", "attention_mask", "return_loss"}``
    from uint8 pixels (normalised per batch by ``processor``) and encoded captions ``(ids, mask
    or None)``; validation batches in order. The pixels are sampled as
    :class:`TensorDataSource`'s inputs, with their row numbers as its labels."""

    input_name = "pixel_values"

    def __init__(self, train: tuple, valid: tuple, processor: ImageProcessor, batch_size: int):
        super().__init__((train[0], torch.arange(len(train[0]))), (valid[0], torch.arange(len(valid[0]))), batch_size)
        self.processor, self.train_captions, self.valid_captions = processor, train[1:], valid[1:]

    def next_batch(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> dict:
        return self._pairs(super().next_batch(generator, rank, world_size), self.train_captions)

    def eval_batches(self, rank: int = 0, world_size: int = 1):
        for batch in super().eval_batches(rank, world_size):
            yield self._pairs(batch, self.valid_captions)

    def _pairs(self, batch: dict, captions: tuple) -> dict:
        (ids, mask), rows = captions, batch["labels"]
        return {"pixel_values": self.processor.normalize(batch["pixel_values"]), "input_ids": ids[rows],
                "attention_mask": None if mask is None else mask[rows], "return_loss": True}


def end_with_eos(tokenizer) -> None:
    """Make a tokenizer trained here end every text with its end-of-text token, as CLIP's does
    (CLIP reads a text's feature there)."""
    from tokenizers import processors

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no end-of-text token; list '<|endoftext|>' in tokenizer.special_tokens")
    if tokenizer.encode("a")[-1:] != [eos]:
        token = tokenizer.backend.id_to_token(eos)
        tokenizer.backend.post_processor = processors.TemplateProcessing(single=f"$A {token}",
                                                                         special_tokens=[(token, eos)])


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Train (or fine-tune) the recipe's dual encoder into ``out_dir``; returns the finished Trainer."""
    out, m, d = Path(out_dir), recipe.model, recipe.data
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    train, valid = hold_out(recipe, lambda path: read_pairs(path, d))
    if len(train) < 2:
        raise ConfigError(f"data.valid_fraction={d.valid_fraction} leaves fewer than 2 training pairs")
    barrier(info)
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        tokenizer = prepare_tokenizer(recipe, out, info, last, [text for _, text in train])
        if m.pretrained is None and m.family == "Clip":
            end_with_eos(tokenizer)
        torch.manual_seed(recipe.train.seed)
        model = m.build(tokenizer, {}, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
        directory = None
        if m.pretrained is not None:
            from attnkit.interop import resolve_checkpoint_dir

            directory = resolve_checkpoint_dir(m.pretrained)
        processor = ImageProcessor.from_pretrained(directory) if directory is not None and \
            (directory / PROCESSOR_FILE).is_file() else ImageProcessor.for_model(model.config)

        progress = recipe.train.progress and info.is_main

        def tensors(pairs: list, what: str) -> tuple:
            pixels = read_pixels([image for image, _ in pairs], processor, what, progress)
            return (pixels, *dual_encoder_text_inputs(model, tokenizer, [text for _, text in pairs]))

        source = ImageTextSource(tensors(train, "training"), tensors(valid, "validation"), processor,
                                 recipe.train.batch_size)
        trainer = Trainer(model, source, recipe.train, out, tokenizer=_Processors(tokenizer, processor),
                          resume=last or False, dist=info, run_info={"task": "image_text",
                                                                     "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer


class _Processors:
    """The tokenizer and the image processor, saved together into every checkpoint."""

    def __init__(self, tokenizer, processor: ImageProcessor):
        self.tokenizer, self.processor = tokenizer, processor

    def save_pretrained(self, directory) -> None:
        self.tokenizer.save_pretrained(directory)
        self.processor.save_pretrained(directory)
