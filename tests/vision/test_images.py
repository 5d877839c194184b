"""ImageProcessor against transformers' ViT image processor (Pillow backend) on the same
images, its preprocessor_config.json read and written both ways, and bad images and settings."""

import json

import numpy as np
import pytest
import torch

from attnkit import ConfigError, DataError, InputError
from attnkit.vision import ImageProcessor, load_image

Image = pytest.importorskip("PIL.Image")
transformers = pytest.importorskip("transformers")
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402


def random_images(sizes=((50, 70), (224, 224), (300, 180), (7, 9)), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = (lambda h, w: (h, w, 3)) if mode == "RGB" else (lambda h, w: (h, w))
    return [Image.fromarray(rng.integers(0, 256, shape(h, w), dtype=np.uint8)) for h, w in sizes]


@pytest.mark.parametrize("settings", [
    dict(),  # google/vit-*: 224 x 224, bilinear, mean = std = 0.5
    dict(size=(64, 48), resample=3, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225)),
    dict(size=(32, 32), resample=0, do_normalize=False),
])
def test_pixel_values_equal_transformers_vit_image_processor(settings):
    ours = ImageProcessor(**settings)
    hf_settings = {k: v for k, v in settings.items() if k != "size"}
    hf = ViTImageProcessorPil(size={"height": ours.size[0], "width": ours.size[1]}, **hf_settings)
    images = random_images()
    expected = hf(images, return_tensors="pt")["pixel_values"]
    got = ours(images)
    assert got.dtype == torch.float32 and got.shape == expected.shape == (4, 3, *ours.size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # uint8 arrays in (H, W, C) or (C, H, W), and paths, give the same pixels as PIL images
    arrays = [np.array(im) for im in images]
    torch.testing.assert_close(ours(arrays), got, rtol=0, atol=0)
    torch.testing.assert_close(ours([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]), got, rtol=0, atol=0)


def test_grey_images_become_rgb_for_rgb_models_as_transformers_pipeline_makes_them():
    images = random_images(mode="L")
    hf = ViTImageProcessorPil(size={"height": 32, "width": 32})  # takes the channels it is given: RGB first
    expected = hf([im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ImageProcessor(size=(32, 32))(images), expected, rtol=0, atol=1e-6)


def test_a_one_channel_processor_gives_grey_pixels():
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255 = 76
    grey = ImageProcessor(size=(4, 4), image_mean=(0.0,), image_std=(1.0,))
    out = grey(rgb)
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, torch.full((1, 1, 4, 4), 76 / 255), rtol=0, atol=1e-7)


def test_preprocessor_config_round_trips_with_transformers(tmp_path):
    ours = ImageProcessor(size=(40, 56), resample=3, image_mean=(0.1, 0.2, 0.3), image_std=(0.9, 0.8, 0.7))
    ours.save_pretrained(tmp_path / "ours")
    loaded = transformers.AutoImageProcessor.from_pretrained(tmp_path / "ours")
    images = random_images(seed=1)
    torch.testing.assert_close(loaded(images, return_tensors="pt")["pixel_values"], ours(images), rtol=0, atol=1e-6)
    assert ImageProcessor.from_pretrained(tmp_path / "ours") == ours

    hf = ViTImageProcessorPil(size={"height": 24, "width": 24}, image_mean=[0.4] * 3, image_std=[0.3] * 3)
    hf.save_pretrained(tmp_path / "hf")
    assert ImageProcessor.from_pretrained(tmp_path / "hf") == ImageProcessor(size=(24, 24), image_mean=(0.4,) * 3,
                                                                             image_std=(0.3,) * 3)


def test_bad_images_are_errors_naming_the_problem(tmp_path):
    p = ImageProcessor(size=(8, 8))
    with pytest.raises(InputError, match="float64 pixels; pass uint8"):
        p(np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match=r"image 1 has shape \(8, 8, 5\)"):
        p([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 5), np.uint8)])
    with pytest.raises(InputError, match="must be a path, a PIL image or an array"):
        p([[1, 2, 3]])
    with pytest.raises(InputError, match="no images"):
        p([])
    with pytest.raises(DataError, match="does not exist"):
        p(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(broken)
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated download
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        load_image(broken)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="text.png is not a readable image"):
        p(tmp_path / "text.png")
    with pytest.raises(InputError, match="different sizes"):
        ImageProcessor(do_resize=False)([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)])


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="size must be"):
        ImageProcessor(size=(0, 8))
    with pytest.raises(ConfigError, match="one value per channel"):
        ImageProcessor(image_mean=(0.5, 0.5), image_std=(0.5, 0.5))
    with pytest.raises(ConfigError, match="image_std must be positive"):
        ImageProcessor(image_std=(0.5, 0.0, 0.5))
    with pytest.raises(ConfigError, match="shortest_edge must be a positive number"):
        ImageProcessor(shortest_edge=0)
    with pytest.raises(ConfigError, match="crop_size must be"):
        ImageProcessor(crop_size=(224,))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"longest_edge": 224}}))
    with pytest.raises(ConfigError, match="or {'shortest_edge': N}"):
        ImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_center_crop": True, "crop_size": [1, 2]}))
    with pytest.raises(ConfigError, match="crop_size must be"):
        ImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"feature_extractor_type": "WhisperFeatureExtractor",
                                                                   "feature_size": 80}))
    with pytest.raises(ConfigError, match="describes a WhisperFeatureExtractor, not a ViT, CLIP or SigLIP image"):
        ImageProcessor.from_pretrained(tmp_path)
