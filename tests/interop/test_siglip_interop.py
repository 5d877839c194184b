"""SigLIP against `transformers`' SiglipModel with identical weights, both directions: the
image-text logits (with the learned bias), both features (the attention-pooled image, the text
head on the last position), the sigmoid loss and its gradients, texts with and without a padding
mask; the trained image size whose border the patches leave out (so400m's 384 pixels in 14-pixel
patches); saved checkpoints that `transformers` loads with no missing or unexpected keys; the
presets' parameter counts; the image processor against ``SiglipImageProcessorPil``; zero-shot
classification as the sigmoid of `transformers`' logits over texts padded to the full length."""

import json

import numpy as np
import pytest
import torch

import attnkit
from attnkit.vision.images import ImageProcessor

transformers = pytest.importorskip("transformers")
V = 40


def hf_siglip(path, image_size=32, patch_size=8):
    """A random SiglipModel saved to ``path``, every weight drawn (norm weights around 1)."""
    text = dict(vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, pad_token_id=1, bos_token_id=None, eos_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=patch_size)
    torch.manual_seed(0)
    hf = transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in name and name.endswith("weight") else p.normal_(0.0, 0.3)
    hf.save_pretrained(path)
    return hf.eval()


def test_siglip_gives_transformers_logits_features_loss_gradients_and_saves(tmp_path):
    hf = hf_siglip(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Siglip and model.vision_model.head is not None
    g = torch.Generator().manual_seed(1)
    ids, pixels = torch.randint(2, V, (3, 16), generator=g), torch.randn(3, 3, 32, 32, generator=g)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    for kwargs in (dict(), dict(attention_mask=mask)):
        got, ref = model(ids, pixels, return_loss=True, **kwargs), hf(input_ids=ids, pixel_values=pixels,
                                                                      return_loss=True, **kwargs)
        for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
            assert (getattr(got, name) - getattr(ref, name)).abs().max() < 1e-4, name
        assert torch.allclose(got.loss, ref.loss, atol=1e-5) and got.logits_per_image.std() > 0.1
    got.loss.backward()
    ref.loss.backward()
    for ours, theirs in [(model.vision_model.head.attention.q_proj.weight.grad,
                          hf.vision_model.head.attention.in_proj_weight.grad[:32]),
                         (model.vision_model.head.probe.grad, hf.vision_model.head.probe.grad),
                         (model.logit_bias.grad, hf.logit_bias.grad), (model.text_model.head.weight.grad,
                                                                         hf.text_model.head.weight.grad)]:
        assert (ours - theirs).abs().max() < 1e-4 and ours.abs().sum() > 0
    model.save_pretrained(tmp_path / "saved")
    again, info = transformers.SiglipModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys"))
    with torch.no_grad():
        assert (again.eval()(input_ids=ids, pixel_values=pixels).logits_per_image
                - hf(input_ids=ids, pixel_values=pixels).logits_per_image).abs().max() < 1e-4


def test_the_trained_size_may_leave_a_border_out(tmp_path):
    """so400m's shape: 384 / 14 is not whole; the 27 × 27 patches leave the last 6 pixels out, as
    in training. Other sizes must still be multiples of the patch."""
    hf = hf_siglip(tmp_path, image_size=38, patch_size=8)  # 4 × 4 patches, 6 pixels left out
    model = attnkit.from_pretrained(tmp_path)
    pixels = torch.randn(2, 3, 38, 38)
    with torch.no_grad():
        assert (model.get_image_features(pixels)
                - hf.get_image_features(pixel_values=pixels).pooler_output).abs().max() < 1e-4
    with pytest.raises(attnkit.InputError, match="multiples of patch_size"):
        model.get_image_features(torch.randn(1, 3, 42, 42), interpolate_pos_encoding=True)


@pytest.mark.parametrize("preset,text,vision", [
    ("siglip-base-patch16-224", {}, {}),
    ("siglip-so400m-patch14-384", dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16,
                                       intermediate_size=4304),
     dict(image_size=384, patch_size=14, hidden_size=1152, num_hidden_layers=27, num_attention_heads=16,
          intermediate_size=4304)),
])
def test_presets_have_the_released_shapes(preset, text, vision):
    with torch.device("meta"):
        theirs = transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))
        ours = attnkit.Siglip(attnkit.SiglipConfig.from_preset(preset))
    assert ours.num_parameters() == theirs.num_parameters()


def test_the_image_processor_and_zero_shot_classification(tmp_path):
    from PIL import Image
    from tokenizers import Tokenizer as Backend, models, pre_tokenizers

    from attnkit.tokenizers import Tokenizer

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in [(60, 45, 3), (32, 32, 3)]]
    processor = ImageProcessor.for_model(attnkit.SiglipConfig(image_size=32, patch_size=8))
    theirs = transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    for image in images:
        assert torch.equal(processor(image), theirs(image, return_tensors="pt")["pixel_values"])
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" ", "."]
    vocab = {"<unk>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(letters)}}
    backend = Backend(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(dict(eos_token="</s>", pad_token="</s>",
                                                                    unk_token="<unk>")))
    tok = Tokenizer.from_pretrained(tmp_path)
    hf = hf_siglip(tmp_path / "model")
    model = attnkit.from_pretrained(tmp_path / "model")
    labels = ["cat", "a dog"]
    got = attnkit.zero_shot_classify_image(model, tok, images, labels, hypothesis_template="{}.")
    ids = torch.tensor([tok.encode(f"{label}.") + [1] * (16 - len(tok.encode(f"{label}."))) for label in labels])
    with torch.no_grad():  # padded to the 16 positions with the pad token, no mask, as SigLIP was trained
        probs = hf(input_ids=ids, pixel_values=processor(images)).logits_per_image.sigmoid()
    for ranked, row in zip(got, probs.tolist()):
        assert [d["label"] for d in ranked] == [labels[i] for i in np.argsort(row)[::-1]]
        assert np.allclose([d["score"] for d in ranked], sorted(row, reverse=True), atol=1e-5)
    with torch.no_grad():  # the texts' embeddings: padded the same way
        ref = torch.nn.functional.normalize(hf.get_text_features(input_ids=ids).pooler_output, dim=-1)
    assert torch.allclose(attnkit.embed(model, [f"{label}." for label in labels], tokenizer=tok), ref, atol=1e-5)
