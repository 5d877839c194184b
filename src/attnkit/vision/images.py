"""Images to a Vision Transformer's ``pixel_values``: :class:`ImageProcessor` does what Hugging
Face's ``ViTImageProcessor`` does (resize with Pillow, rescale to ``[0, 1]``, normalise per
channel) and reads and writes its ``preprocessor_config.json``; :func:`load_image` opens image
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
    and normalised ``(x - image_mean) / image_std`` per channel.

    ``from_pretrained(dir)`` reads a checkpoint's ``preprocessor_config.json``;
    ``save_pretrained(dir)`` writes one that ``transformers.AutoImageProcessor`` reads;
    ``for_model(config)`` is the default for a ViT config (its image size and channels, mean
    and std 0.5 as ``google/vit-*``).
    """

    size: tuple[int, int] = (224, 224)  # (height, width)
    resample: int = 2  # Pillow's filter: 0 nearest, 2 bilinear, 3 bicubic, 1 Lanczos
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

    @property
    def num_channels(self) -> int:
        return len(self.image_mean)

    @classmethod
    def for_model(cls, config) -> ImageProcessor:
        """The processor for a ViT config: images of its ``image_size`` and ``num_channels``."""
        n = config.num_channels
        if n not in _MODES:
            raise ConfigError(f"images of {n} channels have no processor (1 or 3 channels)")
        return cls(size=config.image_hw, image_mean=(0.5,) * n, image_std=(0.5,) * n)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> ImageProcessor:
        """The settings in ``path/preprocessor_config.json`` (Hugging Face's ViT image processor file)."""
        from attnkit.interop.files import read_json

        file = Path(path) / PROCESSOR_FILE
        d = read_json(file)
        if not isinstance(d, dict):
            raise ConfigError(f"{file} must hold a JSON object")
        kind = d.get("image_processor_type") or d.get("feature_extractor_type")
        if kind is not None and not str(kind).startswith("ViT"):
            raise ConfigError(f"{file} describes a {kind}, not a ViT image processor")
        fields: dict[str, Any] = {k: d[k] for k in ("resample", "do_resize", "do_rescale", "rescale_factor",
                                                    "do_normalize") if k in d}
        size = d.get("size", {"height": 224, "width": 224})
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if not isinstance(size, dict) or set(size) != {"height", "width"}:
            raise ConfigError(f"{file}: size must be {{'height': H, 'width': W}}, got {size!r} "
                              "(shortest-edge resizing is not supported)")
        fields["size"] = (size["height"], size["width"])
        for key in ("image_mean", "image_std"):
            if key in d:
                value = d[key]
                fields[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3
        if d.get("do_center_crop"):
            raise ConfigError(f"{file}: do_center_crop is not supported")
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = {"height": self.size[0], "width": self.size[1]}
        d["image_mean"], d["image_std"] = list(self.image_mean), list(self.image_std)
        return {"image_processor_type": "ViTImageProcessor", **d}

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
        if self.do_resize and image.size != self.size[::-1]:
            image = image.resize(self.size[::-1], resample=self.resample)  # Pillow sizes are (width, height)
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
