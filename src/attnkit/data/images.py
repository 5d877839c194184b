"""Labelled images: :func:`read_image_folder` (one sub-folder per class, the layout of
torchvision's ``ImageFolder`` and Hugging Face's ``imagefolder``) and the built-in
:func:`digits` (scikit-learn's 8 × 8 handwritten digits)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from attnkit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def read_image_folder(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """``[(image path, class name), ...]`` from ``root/<class name>/<image>`` files, classes and
    files in sorted order (files in nested folders count for their class). Files of other kinds
    are skipped; a missing root, a root without class folders, or a class folder without
    images is a :class:`DataError`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders: expected {root}/<class name>/<image files>")
    out, empty = [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if not files:
            empty.append(folder.name)
        out += [(path, folder.name) for path in files]
    if empty:
        raise DataError(f"{root}: class folders {empty[:5]} hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return out


def digits() -> list[tuple[np.ndarray, str]]:
    """scikit-learn's 1,797 handwritten digits (UCI's optical digits test set) as
    ``[(uint8 pixels (8, 8), "0" .. "9"), ...]``, the 17 grey levels spread over 0-255."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the built-in digits come with scikit-learn: pip install 'attnkit[vision]'") from None
    data = load_digits()
    pixels = np.round(data.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    return [(image, str(label)) for image, label in zip(pixels, data.target)]
