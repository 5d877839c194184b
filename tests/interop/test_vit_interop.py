"""ViT and its image classifier against `transformers` with identical weights, both directions."""

import json

import pytest
import torch

import attnkit
from attnkit.models import vit as ours_vit

transformers = pytest.importorskip("transformers")

HEADS = {"ViTModel": ours_vit.ViT, "ViTForImageClassification": ours_vit.ViTForImageClassification}
OUTPUTS = ("last_hidden_state", "pooler_output", "logits")


def hf_vit(name: str, **overrides):
    """A random ``transformers`` ViT (32 × 32 images, 8 × 8 patches, width 32, 2 layers) whose
    attentions can be returned (eager attention)."""
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
               patch_size=8, num_channels=3, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.update(overrides)
    model = getattr(transformers, name)(transformers.ViTConfig(**cfg, attn_implementation="eager")).eval()
    with torch.no_grad():  # random LayerNorm and bias values, so that a wrong mapping cannot hide
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.5 if "layernorm" not in n else 0.1).add_(1.0 if "layernorm" in n and "weight" in n else 0.0)
    return model


def pixels(side=32, batch=3):
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(2))


def max_diffs(ours, hf, **kwargs) -> dict:
    """Max abs difference of each output both models produce, on the same images."""
    with torch.no_grad():
        got, ref = ours(**kwargs), hf(**kwargs)
    shared = [n for n in OUTPUTS if getattr(got, n, None) is not None and getattr(ref, n, None) is not None]
    return {n: (getattr(got, n) - getattr(ref, n)).abs().max().item() for n in shared}


def load_twin(tmp_path, hf_name, **overrides):
    hf = hf_vit(hf_name, **overrides)
    hf.save_pretrained(tmp_path)
    return hf, attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_transformers_vit_checkpoint_gives_same_outputs(tmp_path, hf_name):
    hf, ours = load_twin(tmp_path, hf_name)
    assert type(ours) is HEADS[hf_name]
    diffs = max_diffs(ours, hf, pixel_values=pixels())
    expected = {"ViTModel": {"last_hidden_state", "pooler_output"}, "ViTForImageClassification": {"logits"}}[hf_name]
    assert expected <= set(diffs) and max(diffs.values()) <= 1e-4, diffs


@pytest.mark.parametrize("num_labels,problem_type,labels", [
    (3, None, torch.tensor([0, 2, 1])), (3, "single_label_classification", torch.tensor([2, -100, 1])),
    (1, None, torch.randn(3)), (3, "regression", torch.randn(3, 3)),
    (3, "multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])),
])
def test_classifier_loss_and_gradients_equal_transformers(tmp_path, num_labels, problem_type, labels):
    hf, ours = load_twin(tmp_path, "ViTForImageClassification", num_labels=num_labels, problem_type=problem_type)
    x = pixels()
    ref, got = hf(pixel_values=x, labels=labels).loss, ours(x, labels=labels).loss
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    ref.backward(), got.backward()
    torch.testing.assert_close(ours.classifier.weight.grad, hf.classifier.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.vit.patch_embed.proj.weight.grad,
                               hf.vit.embeddings.patch_embeddings.projection.weight.grad, atol=1e-5, rtol=1e-4)


def test_attentions_and_hidden_states_equal_transformers(tmp_path):
    hf, ours = load_twin(tmp_path, "ViTForImageClassification")
    kw = dict(pixel_values=pixels(), output_attentions=True, output_hidden_states=True)
    with torch.no_grad():
        ref, got = hf(**kw), ours(**kw)
    assert len(got.attentions) == len(ref.attentions) == 2 and len(got.hidden_states) == len(ref.hidden_states) == 3
    for a, b in [*zip(got.attentions, ref.attentions), *zip(got.hidden_states, ref.hidden_states)]:
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-4


@pytest.mark.parametrize("height,width", [(48, 48), (64, 40), (16, 24)])
def test_interpolated_positions_equal_transformers_for_other_image_sizes(tmp_path, height, width):
    hf, ours = load_twin(tmp_path, "ViTModel")
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(3))
    diffs = max_diffs(ours, hf, pixel_values=x, interpolate_pos_encoding=True)
    assert set(diffs) == {"last_hidden_state", "pooler_output"} and max(diffs.values()) <= 1e-4, diffs
    with pytest.raises(ValueError, match="doesn't match model"):  # neither of them guesses without being asked
        hf(pixel_values=x)
    with pytest.raises(attnkit.InputError, match=f"images are {height}x{width} pixels, the model takes 32x32"):
        ours(x)


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_attnkit_vit_saved_loads_in_transformers_with_same_outputs(tmp_path, hf_name):
    ours = HEADS[hf_name](attnkit.ViTConfig.from_preset("vit-tiny", num_labels=4)).eval()
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [hf_name] and config["model_type"] == "vit"
    hf, info = getattr(transformers, hf_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    diffs = max_diffs(ours, hf.eval(), pixel_values=pixels())
    assert max(diffs.values()) <= 1e-4, diffs


def test_transformers_to_attnkit_to_disk_and_back_is_exact(tmp_path):
    hf, ours = load_twin(tmp_path / "hf", "ViTForImageClassification")
    ours.save_pretrained(tmp_path / "ours")
    again = attnkit.from_pretrained(tmp_path / "ours")
    assert ours.state_dict().keys() == again.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), again.state_dict().values()))
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert all(torch.equal(a, b) for a, b in zip(hf.state_dict().values(), back.state_dict().values()))
    with torch.no_grad():
        assert torch.equal(back(pixel_values=pixels()).logits, hf(pixel_values=pixels()).logits)


def test_vit_model_saved_without_its_pooler_loads_and_round_trips(tmp_path):
    hf = transformers.ViTModel(hf_vit("ViTModel").config, add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert isinstance(model, ours_vit.ViT) and model.pooler is None
    assert max_diffs(model, hf, pixel_values=pixels())["last_hidden_state"] <= 1e-4
    model.save_pretrained(tmp_path / "again")
    again = attnkit.from_pretrained(tmp_path / "again")
    assert again.pooler is None and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                           again.state_dict().values()))


def test_no_qkv_bias_grey_images_and_other_sizes_round_trip(tmp_path):
    """qkv_bias=False (the output projection keeps its bias), one channel, patch 4, GELU-tanh."""
    hf, ours = load_twin(tmp_path, "ViTForImageClassification", qkv_bias=False, num_channels=1, image_size=16,
                         patch_size=4, hidden_act="gelu_new", layer_norm_eps=1e-6)
    c = ours.config
    assert (c.qkv_bias, c.num_channels, c.image_size, c.patch_size, c.activation, c.norm_eps) == \
        (False, 1, 16, 4, "gelu_tanh", 1e-6)
    assert ours.vit.encoder.layers[0].attn.qkv_proj.bias is None
    x = torch.randn(2, 1, 16, 16)
    assert max(max_diffs(ours, hf, pixel_values=x).values()) <= 1e-4
    ours.save_pretrained(tmp_path / "ours")
    back, info = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not back.config.qkv_bias
    assert max_diffs(ours, back.eval(), pixel_values=x)["logits"] <= 1e-4


def test_label_names_round_trip_both_ways(tmp_path):
    names = {0: "cat", 1: "dog", 2: "bird"}
    hf_vit("ViTForImageClassification", id2label=names, label2id={v: k for k, v in names.items()}).save_pretrained(
        tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert model.config.label_names == ("cat", "dog", "bird") and model.config.label2id["dog"] == 1
    model.save_pretrained(tmp_path / "ours")
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours")
    assert back.config.id2label == names and back.config.label2id == {v: k for k, v in names.items()}
    digits = ours_vit.ViTForImageClassification(attnkit.ViTConfig.from_preset("vit-digits"))
    digits.save_pretrained(tmp_path / "digits")
    assert transformers.ViTForImageClassification.from_pretrained(tmp_path / "digits").config.id2label[7] == "7"


def test_square_size_lists_are_read_as_sides(tmp_path):
    hf, ours = load_twin(tmp_path, "ViTModel", image_size=[32, 32], patch_size=[8, 8])
    assert (ours.config.image_hw, ours.config.patch_size) == ((32, 32), 8)
    assert max(max_diffs(ours, hf, pixel_values=pixels()).values()) <= 1e-4


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_rectangular_image_sizes_equal_transformers(tmp_path, hf_name):
    """``image_size=[height, width]`` (transformers takes a pair): the same outputs on 32 × 48
    images, and the pair written back for transformers."""
    hf, ours = load_twin(tmp_path, hf_name, image_size=[32, 48])
    assert ours.config.grid == (4, 6)
    images = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    assert max(max_diffs(ours, hf, pixel_values=images).values()) <= 1e-4
    ours.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["image_size"] == [32, 48]
    again = getattr(transformers, hf_name).from_pretrained(tmp_path / "again").eval()
    assert max(max_diffs(ours, again, pixel_values=images).values()) <= 1e-4


@pytest.mark.parametrize("field,value,error,match", [
    ("hidden_act", "mish", attnkit.ConfigError, r"hidden_act 'mish' is not supported; supported: \["),
    ("pooler_act", "relu", attnkit.ConfigError, r"pooler_act='relu' is not supported by attnkit's ViT \(needs 'tanh'\)"),
    ("pooler_output_size", 16, attnkit.ConfigError, r"pooler_output_size=16 is not supported.*hidden_size, 32"),
    ("patch_size", [8, 4], attnkit.ConfigError, r"patch_size=\[8, 4\] is not supported: attnkit's ViT takes square patches"),
    ("architectures", ["ViTForMaskedImageModeling"], attnkit.CheckpointError,
     r"architectures \['ViTForMaskedImageModeling'\] are not supported for vit; supported: \['ViTForImageClassification', "
     r"'ViTModel'\]"),
])
def test_unsupported_transformers_variants_are_refused_with_the_field(tmp_path, field, value, error, match):
    hf_vit("ViTModel").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(error, match=match):
        attnkit.from_pretrained(tmp_path)
