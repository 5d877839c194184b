"""Image classification from a recipe (``task = "image_classification"``): a folder of images
per class (or the built-in ``"digits"``), a :class:`~attnkit.ViTForImageClassification` fine-tuned
from a checkpoint (``model.pretrained``) or trained from a preset, and the Trainer, which
reports ``eval_accuracy``.

::

    task = "image_classification"
    [model]
    pretrained = "path/to/vit"        # or a hub id (google/vit-base-patch16-224); omit to train a preset
    [data]
    train = "images/train"            # images/train/<class name>/*.png, *.jpg, ...
    valid = "images/valid"            # or leave out: valid_fraction of train is held out

Images are resized and kept as uint8 pixels in memory; each batch is rescaled and normalised
by the checkpoint's image processor (``preprocessor_config.json``), or by the default one for
the model's config. ``OUT/checkpoints/step-N/`` are model directories with that
``preprocessor_config.json`` and the class names, for :func:`attnkit.classify_image` and
``transformers``' ``"image-classification"`` pipeline.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from attnkit.data.images import digits, read_image_folder
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.classification import split_labelled
from attnkit.training.distributed import barrier, init_distributed
from attnkit.training.recipe import ModelSection, recipe_to_dict
from attnkit.training.sources import TensorDataSource
from attnkit.training.trainer import TrainConfig, Trainer
from attnkit.vision.images import PROCESSOR_FILE, ImageProcessor


@dataclasses.dataclass(frozen=True)
class ImageModelSection(ModelSection):
    """``[model]``: ``ViTForImageClassification`` from ``preset``, or from ``pretrained`` (a
    checkpoint directory or hub id of a ViT or ViT classifier; a new head for this data's classes)."""

    family: str = "ViTForImageClassification"
    preset: str = "vit-digits"
    pretrained: str | None = None

    def validate(self) -> None:
        self.require(self.family == "ViTForImageClassification", "family", "must be 'ViTForImageClassification'")


@dataclasses.dataclass(frozen=True)
class DataSection(Config):
    """``[data]``: ``train``/``valid`` are folders with a sub-folder of images per class, or
    ``"digits"`` (scikit-learn's 8 × 8 handwritten digits); without ``valid``,
    ``valid_fraction`` of the training images (drawn with ``train.seed``) are held out."""

    train: str = ""
    valid: str | None = None
    valid_fraction: float = 0.1

    def validate(self) -> None:
        self.require(0.0 < self.valid_fraction < 1.0, "valid_fraction", "must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An image-classification recipe: ``[model]``, ``[data]``, ``[train]``."""

    model: ImageModelSection = ImageModelSection()
    data: DataSection = DataSection()
    train: TrainConfig = TrainConfig(lr=3e-3, schedule="cosine", warmup_steps=20, weight_decay=0.01, batch_size=64,
                                     max_steps=300, eval_every=100, save_every=300)


class ImageDataSource(TensorDataSource):
    """Random batches ``{"pixel_values", "labels"}`` of uint8 pixels ``(N, C, H, W)`` and class ids
    ``(N,)``, normalised per batch by ``processor``; validation batches in order."""

    reports_accuracy = True

    def __init__(self, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor],
                 processor: ImageProcessor, batch_size: int):
        super().__init__(train, valid, batch_size)
        self.processor = processor

    def _batch(self, pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.processor.normalize(pixels), "labels": labels}


def _read(path: str) -> list:
    return digits() if path == "digits" else read_image_folder(path)


def read_pixels(images: list, processor: ImageProcessor, what: str, progress: bool) -> torch.Tensor:
    """Every image's resized uint8 pixels ``(N, C, H, W)``, with a progress bar for many."""
    images = tqdm(images, desc=f"reading {what} images", unit="image", disable=not progress or len(images) < 500)
    return torch.stack([processor.pixels(image, i) for i, image in enumerate(images)])


def _pixels(examples: list, processor: ImageProcessor, labels: dict[str, int], what: str,
            progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example's resized uint8 pixels ``(N, C, H, W)`` and class ids ``(N,)``."""
    pixels = read_pixels([image for image, _ in examples], processor, what, progress)
    return pixels, torch.tensor([labels[label] for _, label in examples])


def run(recipe: Recipe, out_dir: str | Path, resume: bool = False) -> Trainer:
    """Fine-tune (or train) the recipe's image classifier into ``out_dir``; returns the finished Trainer."""
    out, m = Path(out_dir), recipe.model
    info = init_distributed(recipe.train.device)
    last = ckpt.prepare_run_dir(out, resume)
    train, valid, label_names = split_labelled(recipe, "image_classification", _read, lambda example: [example[1]])
    barrier(info)
    with nullcontext() if resume else ckpt.removed_on_failure(out, info.is_main):  # a failed set-up leaves OUT empty
        fields = dict(num_labels=len(label_names), label_names=label_names)
        torch.manual_seed(recipe.train.seed)  # the same new head on every rank
        cls = m.model_class()
        processor = None
        if m.pretrained is not None:
            from attnkit.interop import resolve_checkpoint_dir

            directory = resolve_checkpoint_dir(m.pretrained)
            model = cls.from_pretrained(directory, **m.config, **fields).train()
            if (directory / PROCESSOR_FILE).is_file():
                processor = ImageProcessor.from_pretrained(directory)
        else:
            model = cls(m.model_config(**fields))
        processor = processor or ImageProcessor.for_model(model.config)
        labels = {name: i for i, name in enumerate(label_names)}
        progress = recipe.train.progress and info.is_main
        source = ImageDataSource(_pixels(train, processor, labels, "training", progress),
                                 _pixels(valid, processor, labels, "validation", progress),
                                 processor, recipe.train.batch_size)
        trainer = Trainer(model, source, recipe.train, out, tokenizer=processor, resume=last or False, dist=info,
                          run_info={"task": "image_classification", "recipe": recipe_to_dict(recipe)})
    trainer.train()
    return trainer
