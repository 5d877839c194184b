"""Image classification from a recipe: a ViT learns scikit-learn's digits from folders of PNG
files, eval_accuracy is the saved checkpoint's accuracy under attnkit.classify_image, a
fine-tuned checkpoint keeps its pretrained image processor and loads in transformers, and bad
folders are clear errors that leave OUT empty."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import attnkit
from attnkit import DataError
from attnkit.data.images import read_image_folder
from attnkit.training import run_recipe
from attnkit.vision import ImageProcessor

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("sklearn")


def write_folder(root, examples):
    for i, (pixels, label) in enumerate(examples):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """The first 1,500 digits in train/<digit>/*.png, the other 297 in valid/."""
    from attnkit.data.images import digits

    root = tmp_path_factory.mktemp("digits")
    examples = digits()
    return write_folder(root / "train", examples[:1500]), write_folder(root / "valid", examples[1500:])


def recipe(tmp_path, body: str, train_section: str = ""):
    path = tmp_path / "recipe.toml"
    path.write_text('task = "image_classification"\n' + body + f'''
[train]
progress = false
device = "cpu"
{train_section}
''')
    return path


def evals(out):
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_accuracy" in r]


def test_a_vit_learns_digits_from_image_folders(digit_folders, tmp_path):
    train, valid = digit_folders
    out = tmp_path / "out"
    run_recipe(recipe(tmp_path, f'[data]\ntrain = "{train}"\nvalid = "{valid}"\n'), out)
    result = evals(out)[-1]
    assert result["step"] == 300 and result["eval_accuracy"] >= 0.85, result  # chance: 0.1
    checkpoint = out / "checkpoints" / "step-300"
    model = attnkit.from_pretrained(checkpoint)
    assert model.config.label_names == tuple("0123456789")
    assert ImageProcessor.from_pretrained(checkpoint) == ImageProcessor.for_model(model.config)
    files = read_image_folder(valid)
    predicted = attnkit.classify_image(model, [path for path, _ in files], top_k=1)
    accuracy = np.mean([row[0]["label"] == label for row, (_, label) in zip(predicted, files)])
    assert accuracy == pytest.approx(result["eval_accuracy"])
    from attnkit.training.evaluation import evaluate_model

    assert evaluate_model(model, None, str(valid))["accuracy"] == pytest.approx(result["eval_accuracy"])


def test_the_shipped_digits_recipe_learns_the_held_out_tenth(tmp_path):
    """recipes/vit-digits.toml as shipped: 10% of the 1,797 built-in digits (180) held out and
    evaluated in full, accuracy far above chance."""
    out = tmp_path / "out"
    run_recipe(Path(__file__).parents[2] / "recipes" / "vit-digits.toml", out, ["train.progress=false"])
    result = evals(out)[-1]
    assert result["eval_accuracy"] >= 0.85, result
    assert round(result["eval_accuracy"] * 180, 6) == round(result["eval_accuracy"] * 180)  # a multiple of 1/180


def test_fine_tuning_keeps_the_pretrained_image_processor(tmp_path):
    transformers = pytest.importorskip("transformers")
    pretrained = tmp_path / "pretrained"
    torch.manual_seed(0)
    attnkit.ViT(attnkit.ViTConfig.from_preset("vit-tiny")).save_pretrained(pretrained)
    processor = ImageProcessor(size=(32, 32), image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.3, 0.25))
    processor.save_pretrained(pretrained)
    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 256, (40, 24, 3), dtype=np.uint8), name) for name in ("cat", "dog", "owl") for _ in range(4)]
    write_folder(tmp_path / "images", images)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"initialised afresh .*\['classifier.weight', 'classifier.bias'\]"):
        run_recipe(recipe(tmp_path, f'[model]\npretrained = "{pretrained}"\n[data]\ntrain = "{tmp_path / "images"}"\n',
                          "max_steps = 4\nbatch_size = 4\neval_every = 4\nsave_every = 4"), out)
    checkpoint = out / "checkpoints" / "step-4"
    assert ImageProcessor.from_pretrained(checkpoint) == processor
    hf = transformers.ViTForImageClassification.from_pretrained(checkpoint).eval()
    assert hf.config.id2label == {0: "cat", 1: "dog", 2: "owl"}
    pixels = processor([im for im, _ in images])
    with torch.no_grad():
        torch.testing.assert_close(attnkit.from_pretrained(checkpoint)(pixels).logits, hf(pixel_values=pixels).logits,
                                   atol=1e-4, rtol=1e-4)


def test_bad_folders_are_data_errors_that_leave_out_empty(tmp_path):
    write_folder(tmp_path / "one", [(np.zeros((8, 8), np.uint8), "cat")] * 3)
    write_folder(tmp_path / "valid", [(np.zeros((8, 8), np.uint8), name) for name in ("cat", "emu")])
    write_folder(tmp_path / "two", [(np.zeros((8, 8), np.uint8), name) for name in ("cat", "dog")])
    (tmp_path / "two" / "dog" / "9.png").write_text("not an image")
    cases = [(f'train = "{tmp_path / "one"}"', "found a single label"),
             (f'train = "{tmp_path / "two"}"\nvalid = "{tmp_path / "valid"}"', r"labels \['emu'\] do not occur"),
             (f'train = "{tmp_path / "two"}"', "9.png is not a readable image"),
             (f'train = "{tmp_path / "none"}"', "does not exist")]
    for i, (data, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with warnings.catch_warnings(), pytest.raises(DataError, match=message):
            run_recipe(recipe(tmp_path, f"[data]\n{data}\n"), out)
        assert not out.exists() or not any(out.iterdir())
