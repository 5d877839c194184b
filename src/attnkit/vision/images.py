"""Images to a Vision Transformer's ``pixel_values``: :class:`ImageProcessor` does what Hugging
Face's ``ViTImageProcessor`` does (resize with Pillow, rescale to ``[0, 1]``, normalise per
channel), and ``CLIPImageProcessor``'s shortest-edge resize and centre crop, and reads and writes
their ``preprocessor_config.json``; :func:`load_image` opens image
files. Pillow is the optional extra ``attnkit[vision]``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit.errors import ConfigError, DataError, InputError

PROCESSOR_FILE = "preprocessor_config.json"
_MODES = {1: "L", 3: "RGB"}  # channels -> Pillow mode
OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading and resizing images needs Pillow: pip install 'attnkit[vision]'") from None
    return Image


def load_image(path: str | os.PathLike):
    """Open an image file (PNG, JPEG, ... whatever Pillow reads) fully into memory; a missing,
    unreadable or truncated file is a :class:`DataError` naming it."""
    Image = _pil()
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path} is not a readable image ({e})") from None


def _as_pil(image, index: int):
    """A Pillow image from a path, a Pillow image, or uint8 pixels ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``."""
    Image = _pil()
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(f"image {index} must be a path, a PIL image or an array of uint8 pixels, "
                         f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"image {index} has {image.dtype} pixels; pass uint8 pixels (0-255) or PIL images")
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3) or 0 in image.shape:
        raise InputError(f"image {index} has shape {image.shape}; expected (H, W), (H, W, 3) or (3, H, W) pixels")
    return Image.fromarray(np.ascontiguousarray(image))


@dataclass(frozen=True)
class ImageProcessor:
    """Images to ``pixel_values`` ``(B, C, H, W)`` float32, as Hugging Face's ``ViTImageProcessor``:
    each image is converted to ``len(image_mean)`` channels (grey ``L`` or ``RGB``), resized to
    ``size`` with Pillow's ``resample`` filter (2: bilinear), multiplied by ``rescale_factor``
    and normalised ``(x - image_mean) / image_std`` per channel. With ``shortest_edge`` (CLIP's
    processor), the image is instead resized keeping its aspect, its shorter side to that many
    pixels, and then ``crop_size`` ``(height, width)`` is cut from its centre.

    ``from_pretrained(dir)`` reads a checkpoint's ``preprocessor_config.json`` (ViT's, CLIP's or
    SigLIP's); ``save_pretrained(dir)`` writes one that ``transformers.AutoImageProcessor``
    reads; ``for_model(config)`` is the default for a config (a ViT's: its image size and
    channels, mean and std 0.5 as ``google/vit-*``; SigLIP's the same, bicubic; CLIP's: OpenAI's
    mean and std, bicubic, shortest edge and centre crop).
    """

    size: tuple[int, int] = (224, 224)  # (height, width)
    resample: int = 2  # Pillow's filter: 0 nearest, 2 bilinear, 3 bicubic, 1 Lanczos
    shortest_edge: int | None = None  # resize keeping the aspect, the shorter side to this (instead of to size)
    crop_size: tuple[int, int] | None = None  # then cut this (height, width) from the centre
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self):
        if len(self.size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in self.size):
            raise ConfigError(f"ImageProcessor.size must be (height, width) in positive pixels, got {self.size!r}")
        if self.resample not in (0, 1, 2, 3, 4, 5):
            raise ConfigError(f"ImageProcessor.resample must be a Pillow filter id 0-5, got {self.resample!r}")
        if len(self.image_mean) not in _MODES or len(self.image_std) != len(self.image_mean):
            raise ConfigError(f"ImageProcessor.image_mean and image_std need one value per channel (1 or 3), got "
                              f"{self.image_mean!r} and {self.image_std!r}")
        if any(s <= 0 for s in self.image_std):
            raise ConfigError(f"ImageProcessor.image_std must be positive, got {self.image_std!r}")
        if self.shortest_edge is not None and not (isinstance(self.shortest_edge, int) and self.shortest_edge > 0):
            raise ConfigError(f"ImageProcessor.shortest_edge must be a positive number of pixels, got "
                              f"{self.shortest_edge!r}")
        if self.crop_size is not None and (len(self.crop_size) != 2 or any(
                not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in self.crop_size)):
            raise ConfigError(f"ImageProcessor.crop_size must be (height, width) in positive pixels, got "
                              f"{self.crop_size!r}")

    @property
    def num_channels(self) -> int:
        return len(self.image_mean)

    @classmethod
    def for_model(cls, config) -> ImageProcessor:
        """The processor for a model config: images of its ``image_size`` and ``num_channels``
        (CLIP's: OpenAI's processing; SigLIP's: bicubic)."""
        n = config.num_channels
        if n not in _MODES:
            raise ConfigError(f"images of {n} channels have no processor (1 or 3 channels)")
        if config.model_type == "clip" and n == 3:
            side = config.image_size
            return cls(size=(side, side), resample=3, shortest_edge=side, crop_size=(side, side),
                       image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
        resample = 3 if config.model_type == "siglip" else 2  # SigLIP's: bicubic
        return cls(size=config.image_hw, resample=resample, image_mean=(0.5,) * n, image_std=(0.5,) * n)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> ImageProcessor:
        """The settings in ``path/preprocessor_config.json`` (Hugging Face's ViT image processor file)."""
        from attnkit.interop.files import read_json

        file = Path(path) / PROCESSOR_FILE
        d = read_json(file)
        if not isinstance(d, dict):
            raise ConfigError(f"{file} must hold a JSON object")
        kind = d.get("image_processor_type") or d.get("feature_extractor_type")
        if kind is not None and not str(kind).startswith(("ViT", "CLIP", "Siglip")):
            raise ConfigError(f"{file} describes a {kind}, not a ViT, CLIP or SigLIP image processor")
        fields: dict[str, Any] = {k: d[k] for k in ("resample", "do_resize", "do_rescale", "rescale_factor",
                                                    "do_normalize") if k in d}
        size = d.get("size", {"height": 224, "width": 224})
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if isinstance(size, dict) and set(size) == {"shortest_edge"}:
            fields["shortest_edge"] = size["shortest_edge"]
            size = {"height": size["shortest_edge"], "width": size["shortest_edge"]}
        if not isinstance(size, dict) or set(size) != {"height", "width"}:
            raise ConfigError(f"{file}: size must be {{'height': H, 'width': W}} or {{'shortest_edge': N}}, got "
                              f"{size!r}")
        fields["size"] = (size["height"], size["width"])
        for key in ("image_mean", "image_std"):
            if key in d:
                value = d[key]
                fields[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3
        if d.get("do_center_crop"):
            crop = d.get("crop_size", {"height": 224, "width": 224})
            crop = {"height": crop, "width": crop} if isinstance(crop, int) else crop
            if not isinstance(crop, dict) or set(crop) != {"height", "width"}:
                raise ConfigError(f"{file}: crop_size must be {{'height': H, 'width': W}}, got {crop!r}")
            fields["crop_size"] = (crop["height"], crop["width"])
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_mean"], d["image_std"] = list(self.image_mean), list(self.image_std)
        del d["shortest_edge"], d["crop_size"]
        if self.shortest_edge is None and self.crop_size is None:
            d["size"] = {"height": self.size[0], "width": self.size[1]}
            return {"image_processor_type": "ViTImageProcessor", **d}
        d["size"] = {"shortest_edge": self.shortest_edge} if self.shortest_edge is not None else \
            {"height": self.size[0], "width": self.size[1]}
        crop = dict(do_center_crop=self.crop_size is not None)
        if self.crop_size is not None:
            crop["crop_size"] = {"height": self.crop_size[0], "width": self.crop_size[1]}
        return {"image_processor_type": "CLIPImageProcessor", **d, **crop}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/preprocessor_config.json`` atomically; returns its path."""
        from attnkit.interop.files import write_text_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(directory / PROCESSOR_FILE, json.dumps(self.to_dict(), indent=2) + "\n")
        return directory / PROCESSOR_FILE

    def pixels(self, image, index: int = 0) -> torch.Tensor:
        """One image (a path, a PIL image or uint8 pixels) as resized uint8 pixels ``(C, H, W)``,
        before rescaling: the compact form datasets keep in memory."""
        image = _as_pil(image, index).convert(_MODES[self.num_channels])
        target = self.size[::-1]  # Pillow sizes are (width, height)
        if self.shortest_edge is not None:  # the shorter side to shortest_edge, the longer one in proportion
            w, h = image.size
            short, long = min(w, h), max(w, h)
            longer = int(self.shortest_edge * long / short)
            target = (self.shortest_edge, longer) if w <= h else (longer, self.shortest_edge)
        if self.do_resize and image.size != target:
            image = image.resize(target, resample=self.resample)
        if self.crop_size is not None:  # the centre (Pillow fills any part outside the image with zeros)
            (w, h), (ch, cw) = image.size, self.crop_size
            top, left = (h - ch) // 2, (w - cw) // 2
            image = image.crop((left, top, left + cw, top + ch))
        array = np.array(image)  # a writable copy
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(array))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels ``(B, C, H, W)`` (from :meth:`pixels`) -> float32 ``pixel_values``."""
        x = pixels.double() * self.rescale_factor if self.do_rescale else pixels.double()
        x = x.float()
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=torch.float32).view(-1, 1, 1)
            std = torch.tensor(self.image_std, dtype=torch.float32).view(-1, 1, 1)
            x = (x - mean) / std
        return x

    def __call__(self, images) -> torch.Tensor:
        """``pixel_values`` ``(B, C, H, W)`` for one image or a list of them."""
        Image = _pil()
        single = isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor))
        images = [images] if single else list(images)
        if not images:
            raise InputError("no images given")
        batch = [self.pixels(image, i) for i, image in enumerate(images)]
        if len({tuple(p.shape) for p in batch}) > 1:
            raise InputError(f"images of different sizes {sorted({tuple(p.shape) for p in batch})} without "
                             "do_resize cannot form one batch")
        return self.normalize(torch.stack(batch))
