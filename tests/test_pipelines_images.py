"""classify_image against transformers' "image-classification" pipeline on the same checkpoint
(a random ViT classifier with its preprocessor_config.json), and which image processor it uses."""

import numpy as np
import pytest
import torch

import attnkit
from attnkit import InputError
from attnkit.pipelines import classify_image
from attnkit.vision import ImageProcessor

Image = pytest.importorskip("PIL.Image")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A ViT classifier with logits far from uniform and a non-default image processor."""
    path = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    model = attnkit.ViTForImageClassification(attnkit.ViTConfig.from_preset("vit-tiny", num_labels=7,
                                                                           label_names=tuple("abcdefg")))
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(path)
    ImageProcessor(size=(32, 32), resample=3, image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.3, 0.25)).save_pretrained(path)
    return path


def images():
    rng = np.random.default_rng(0)
    rgb = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(20, 50), (32, 32), (64, 40)]]
    return rgb + [Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8))]  # and a grey one


@pytest.mark.parametrize("top_k", [1, 3, None])
def test_classify_image_equals_image_classification_pipeline(checkpoint, top_k):
    pipe = transformers.pipeline("image-classification", model=str(checkpoint))
    expected = pipe(images(), top_k=top_k or 7)
    got = classify_image(attnkit.from_pretrained(checkpoint), images(), top_k=top_k, batch_size=3)
    assert len(got) == 4 and all(len(row) == (top_k or 7) for row in got)
    for ours, theirs in zip(got, expected):
        assert [d["label"] for d in ours] == [d["label"] for d in theirs]
        np.testing.assert_allclose([d["score"] for d in ours], [d["score"] for d in theirs], atol=1e-5)
    assert len({row[0]["label"] for row in got}) > 1  # the images are told apart
    single = classify_image(attnkit.from_pretrained(checkpoint), images()[0], top_k=top_k)  # one image: one result
    assert [d["label"] for d in single] == [d["label"] for d in got[0]]


def test_the_checkpoints_processor_is_used_unless_one_is_given(checkpoint):
    model = attnkit.from_pretrained(checkpoint)
    own = classify_image(model, images(), top_k=None)
    explicit = classify_image(model, images(), processor=ImageProcessor.from_pretrained(checkpoint), top_k=None)
    default = classify_image(model, images(), processor=ImageProcessor.for_model(model.config), top_k=None)
    assert own == explicit and own != default
    fresh = attnkit.ViTForImageClassification(model.config)  # not loaded from a checkpoint: the config's default
    fresh.load_state_dict(model.state_dict())
    assert classify_image(fresh, images(), top_k=None) == default


def test_bad_calls_are_input_errors(checkpoint):
    model = attnkit.from_pretrained(checkpoint)
    with pytest.raises(InputError, match="top_k must be >= 1"):
        classify_image(model, images(), top_k=0)
    with pytest.raises(InputError, match="no images"):
        classify_image(model, [])
    with pytest.raises(InputError, match="needs a classifier with one output per label, got a ViT"):
        classify_image(attnkit.ViT(model.config), images())
