"""Image-text training from a recipe: the shipped CLIP recipe learns scikit-learn's digits from
captions, and its checkpoint labels held-out digits by zero-shot classification over the ten
captions, well above chance; the checkpoint carries its tokenizer and image processor and loads
in transformers; a SigLIP checkpoint fine-tunes on a captions file; bad files are clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import attnkit
from attnkit import DataError
from attnkit.tokenizers import Tokenizer
from attnkit.training import run_recipe
from attnkit.training.classification import hold_out
from attnkit.training.recipe import load_recipe
from tests.training.test_trainer import metrics

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("sklearn")
RECIPE = Path(__file__).parents[2] / "recipes" / "clip-digits.toml"


def test_clip_learns_digits_and_labels_unseen_ones_zero_shot(tmp_path):
    from attnkit.data.images import digits

    run_recipe(RECIPE, tmp_path / "run", ["train.progress=false"])
    checkpoint = tmp_path / "run" / "checkpoints" / "step-300"
    model, tok = attnkit.from_pretrained(checkpoint), Tokenizer.from_pretrained(checkpoint)
    assert tok.encode("a handwritten 3")[-1] == model.config.eos_token_id  # CLIP reads the feature there
    losses = [row["eval_loss"] for row in metrics(tmp_path / "run") if "eval_loss" in row]
    assert losses[-1] < losses[0] < 4.2  # ln(64) = 4.16: a batch's pairings at chance
    # the recipe's held-out tenth (valid_fraction 0.1, seed 0): never trained on
    _, held = hold_out(load_recipe(RECIPE), lambda path: digits())
    ranked = attnkit.zero_shot_classify_image(model, tok, [image for image, _ in held], [str(d) for d in range(10)],
                                              hypothesis_template="a handwritten {}")
    accuracy = np.mean([r[0]["label"] == label for r, (_, label) in zip(ranked, held)])
    assert accuracy > 0.5, accuracy  # chance: 0.1
    transformers = pytest.importorskip("transformers")
    theirs, info = transformers.CLIPModel.from_pretrained(checkpoint, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys"))


def siglip_checkpoint(path: Path) -> Path:
    """A random transformers SigLIP with a character tokenizer (``</s>`` pads) saved to ``path``."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer as Backend, models, pre_tokenizers

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" "]
    backend = Backend(models.WordLevel({"<unk>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(letters)}},
                                       unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    path.mkdir(parents=True)
    backend.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(dict(eos_token="</s>", pad_token="</s>", unk_token="<unk>")))
    text = dict(vocab_size=40, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, pad_token_id=1, bos_token_id=None, eos_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(path)
    return path


def test_a_siglip_checkpoint_fine_tunes_on_a_captions_file(tmp_path):
    base = siglip_checkpoint(tmp_path / "base")
    rng = np.random.default_rng(0)
    rows = []
    for i, caption in enumerate(["a red square", "a blue circle", "a green line", "a dot", "the sea", "a cat"]):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"image": f"{i}.png", "caption": caption}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'task = "image_text"\n[model]\nfamily = "Siglip"\npretrained = "{base}"\n'
                      f'[data]\ntrain = "{tmp_path / "pairs.jsonl"}"\ntext_field = "caption"\nvalid_fraction = 0.3\n'
                      '[train]\nmax_steps = 4\nbatch_size = 4\neval_every = 4\nsave_every = 4\nprogress = false\n')
    run_recipe(recipe, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoints" / "step-4"
    assert np.isfinite([row["loss"] for row in metrics(tmp_path / "run") if "loss" in row]).all()
    model = attnkit.from_pretrained(checkpoint)
    assert type(model) is attnkit.Siglip and (checkpoint / "preprocessor_config.json").is_file()
    before = attnkit.from_pretrained(base)
    assert not torch.equal(model.logit_bias, before.logit_bias)  # it trained
    (tmp_path / "bad.jsonl").write_text(rows[0] + "\n" + json.dumps({"image": "1.png"}) + "\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(recipe.read_text().replace("pairs.jsonl", "bad.jsonl"))
    with pytest.raises(DataError, match=r"bad.jsonl:2: needs a non-empty 'image' \(an image path\) and 'caption'"):
        run_recipe(bad, tmp_path / "bad-run")
    assert not (tmp_path / "bad-run").exists() or not any((tmp_path / "bad-run").iterdir())
