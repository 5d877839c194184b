"""ViT: sizes against the paper's and Hugging Face's, the [CLS] classifier and its losses, position
resizing, errors, and learning scikit-learn's digits. (Numerical parity with `transformers` is in
tests/interop/test_vit_interop.py.)"""

import time

import pytest
import torch
import torch.nn.functional as F

from attnkit import ViT, ViTConfig, ViTForImageClassification
from attnkit.errors import ConfigError, InputError


def tiny(cls=ViT, **fields):
    return cls(ViTConfig.from_preset("vit-tiny", **fields)).eval()


def images(B=2, side=32, channels=3):
    return torch.randn(B, channels, side, side, generator=torch.Generator().manual_seed(1))


def test_vit_base_preset_has_86567656_parameters():
    """ViT-B/16 with its ImageNet-1k head, as timm's vit_base_patch16_224 and google/vit-base-patch16-224."""
    with torch.device("meta"):
        assert ViTForImageClassification(ViTConfig.from_preset("vit-base-patch16-224")).num_parameters() == 86_567_656


@pytest.mark.parametrize("preset,layers,heads,width,mlp", [
    ("vit-base-patch16-224", 12, 12, 768, 3072), ("vit-large-patch16-224", 24, 16, 1024, 4096)])
def test_presets_match_transformers_parameter_counts(preset, layers, heads, width, mlp):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.ViTConfig(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=width,
                                       intermediate_size=mlp, num_labels=1000)
    with torch.device("meta"):
        pairs = [(ViTForImageClassification(ViTConfig.from_preset(preset)), transformers.ViTForImageClassification(hf_config)),
                 (ViT(ViTConfig.from_preset(preset)), transformers.ViTModel(hf_config))]  # with the pooler
        for ours, hf in pairs:
            assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())


def test_config_json_round_trip_keeps_label_names():
    cfg = ViTConfig.from_preset("vit-digits")
    assert cfg.label_names == tuple("0123456789") and cfg.id2label[3] == "3" and cfg.label2id["7"] == 7
    assert ViTConfig.from_json(cfg.to_json()) == cfg


def test_shapes_and_the_classifier_reads_the_final_cls_state():
    model = tiny(ViTForImageClassification, num_labels=5)
    assert model.vit.pooler is None and tiny().pooler is not None
    with torch.no_grad():
        out = model(images(), output_attentions=True, output_hidden_states=True)
        assert out.last_hidden_state.shape == (2, 1 + 16, 32) and out.logits.shape == (2, 5)
        torch.testing.assert_close(out.logits, model.classifier(out.last_hidden_state[:, 0]))
        # hidden_states: the embeddings and each layer's output, the last before the final norm (as HF's ViT)
        assert len(out.hidden_states) == 3 and len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 17, 17)
        torch.testing.assert_close(model.vit.final_norm(out.hidden_states[-1]), out.last_hidden_state)


def test_every_patch_reaches_the_cls_state_and_positions_make_order_matter():
    model = tiny()
    x = images()
    changed = x.clone()
    changed[:, :, -8:, -8:] += 1.0  # the last patch only
    swapped = x.clone()
    swapped[:, :, :8, :8], swapped[:, :, :8, 8:16] = x[:, :, :8, 8:16], x[:, :, :8, :8]  # two patches trade places
    with torch.no_grad():
        cls = model(x).last_hidden_state[:, 0]
        assert not torch.allclose(cls, model(changed).last_hidden_state[:, 0])
        assert not torch.allclose(cls, model(swapped).last_hidden_state[:, 0])
        model.position_embeddings.zero_()  # without positions, [CLS] sees a set of patches
        torch.testing.assert_close(model(x).last_hidden_state[:, 0], model(swapped).last_hidden_state[:, 0])


def test_single_label_loss_is_cross_entropy_and_other_problem_types_follow_the_config():
    model = tiny(ViTForImageClassification, num_labels=3)
    labels = torch.tensor([2, 0])
    out = model(images(), labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    assert model.count_targets({"pixel_values": images(), "labels": torch.tensor([2, -100])}) == 1
    multi = tiny(ViTForImageClassification, num_labels=3, problem_type="multi_label_classification")
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = multi(images(), labels=targets)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, targets))
    with pytest.raises(InputError, match=r"labels must lie in \[0, 3\) or be -100, got 3"):
        model(images(), labels=torch.tensor([3, 0]))


def test_interpolating_positions_at_the_training_size_changes_nothing():
    model = tiny()
    with torch.no_grad():
        torch.testing.assert_close(model(images(), interpolate_pos_encoding=True).last_hidden_state,
                                   model(images()).last_hidden_state)
        bigger = model(images(side=48), interpolate_pos_encoding=True).last_hidden_state
    assert bigger.shape == (2, 1 + 36, 32)


def test_float_pixels_are_cast_to_the_model_dtype():
    model = tiny(ViTForImageClassification).to(torch.bfloat16)
    with torch.no_grad():
        assert model(images()).logits.dtype == torch.bfloat16


def test_dropout_is_on_embeddings_and_sublayer_outputs_as_in_transformers():
    model = ViT(ViTConfig.from_preset("vit-tiny", dropout=0.1, attn_dropout=0.2))
    assert model.drop.p == 0.1
    for layer in model.encoder.layers:
        assert layer.drop.p == 0.1 and layer.attn.dropout == 0.2 and layer.ffn.dropout.p == 0.0


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"ViTConfig.image_size: must be positive and divisible by patch_size \(16\) "
                                          r"on each side, got 100"):
        ViTConfig(image_size=100)
    with pytest.raises(ConfigError, match=r"image_size: .* got \(224, 100\)"):
        ViTConfig(image_size=(224, 100))
    with pytest.raises(ConfigError, match="d_model"):
        ViTConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="activation"):
        ViTConfig(activation="swiglu")
    with pytest.raises(ConfigError, match="num_channels"):
        ViTConfig(num_channels=0)
    with pytest.raises(ConfigError, match="label_names: must be None or 2 names"):
        ViTConfig(label_names=("cat",))
    with pytest.raises(ConfigError, match=r"image_size must be int or tuple, got \(224, 224, 3\)"):
        ViTConfig(image_size=(224, 224, 3))


def test_input_errors_name_the_expected_and_given_sizes():
    model = tiny()
    with pytest.raises(InputError, match=r"images are 48x48 pixels, the model takes 32x32 \(image_size\); pass "
                                         r"interpolate_pos_encoding=True"):
        model(images(side=48))
    with pytest.raises(InputError, match=r"pixel_values has 1 channels, the model takes 3 \(num_channels\)"):
        model(images(channels=1))
    with pytest.raises(InputError, match=r"float tensor \(batch, channels, height, width\), got torch.float32 \(3, 32, 32\)"):
        model(images()[0])
    with pytest.raises(InputError, match="float tensor.*torch.uint8"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"36x36 pixels; height and width must be positive multiples of patch_size \(8\)"):
        model(images(side=36), interpolate_pos_encoding=True)


def test_tiny_vit_learns_sklearn_digits():
    """8 × 8 grey digits (scikit-learn): a 2-layer ViT on 2 × 2 patches, 300 AdamW steps on the
    CPU, classifies held-out images far above chance (10%)."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0  # (N, 1, 8, 8) pixels 0..16 -> [-1, 1]
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, held_out = order[:1500], order[1500:]
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig.from_preset("vit-digits"))
    steps = 300
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / steps)
    batches = torch.Generator().manual_seed(1)
    start, threads = time.perf_counter(), torch.get_num_threads()
    # Matrices this small run as fast on one thread, and one thread does not stall when other
    # processes share the cores (two OpenMP threads then took 60x longer: 160 s instead of 2.2 s).
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            idx = train[torch.randint(0, len(train), (64,), generator=batches)]
            loss = model(x[idx], labels=y[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[held_out]).logits.argmax(-1) == y[held_out]).float().mean().item()
    print(f"digits: held-out accuracy {accuracy:.3f} after {steps} steps in {time.perf_counter() - start:.1f} s")
    assert accuracy > 0.85


def test_rectangular_images_have_a_grid_of_their_own():
    """``image_size=(height, width)``: a 2 × 6 grid of patches for 16 × 48 images, the position
    table sized to it, the default image processor resizing to it, and JSON keeping the pair."""
    from attnkit.vision import ImageProcessor

    model = tiny(ViTForImageClassification, image_size=(16, 48), num_labels=3)
    assert model.config.grid == (2, 6) and model.vit.position_embeddings.shape == (1, 1 + 12, 32)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 48)).logits.shape == (2, 3)
    with pytest.raises(InputError, match="images are 48x16 pixels, the model takes 16x48"):
        model(torch.randn(1, 3, 48, 16))
    assert ImageProcessor.for_model(model.config).size == (16, 48)
    assert ViTConfig.from_json(model.config.to_json()) == model.config

