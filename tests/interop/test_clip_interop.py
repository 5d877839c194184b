"""CLIP against `transformers`' CLIPModel with identical weights, both directions: the image-text
logits, both projected features, the contrastive loss and its gradients, on padded texts whose
end-of-text tokens sit in different places (and old configs' highest-id rule), images of the
trained size and, with resized position embeddings, another one; saved checkpoints that
`transformers` loads with no missing or unexpected keys; the presets' parameter counts; the image
processor against ``CLIPImageProcessorPil``; zero-shot image classification against the softmax
of `transformers`' logits; text and image embeddings (and the server's) against its features."""

import json

import numpy as np
import pytest
import torch

import attnkit
from attnkit.vision.images import ImageProcessor

transformers = pytest.importorskip("transformers")
V, BOS, EOS, PAD = 60, 57, 58, 0


def hf_clip(path, **text_overrides):
    """A random CLIPModel saved to ``path``, every weight drawn (norm weights around 1)."""
    text = dict(dict(vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=20, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD), **text_overrides)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    hf = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name != "logit_scale":
                p.normal_(1.0, 0.3) if "norm" in name and name.endswith("weight") else p.normal_(0.0, 0.3)
    hf.save_pretrained(path)
    return hf.eval()


def texts(eos=EOS):
    """Three texts, their end-of-text tokens at 9, 12 and 5, the last padded after it."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, BOS, (3, 13), generator=g)
    ids[:, 0] = BOS
    mask = torch.ones_like(ids)
    for row, end in enumerate((9, 12, 5)):
        ids[row, end] = eos
    mask[2, 6:] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def test_clip_gives_transformers_logits_features_loss_gradients_and_saves(tmp_path):
    hf = hf_clip(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Clip and model.config.eos_token_id == EOS
    ids, mask = texts()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got = model(ids, pixels, attention_mask=mask, return_loss=True)
    ref = hf(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss=True)
    for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        assert (getattr(got, name) - getattr(ref, name)).abs().max() < 1e-4, name
    assert torch.allclose(got.loss, ref.loss, atol=1e-5) and got.logits_per_image.std() > 0.1
    got.loss.backward()
    ref.loss.backward()
    for ours, theirs in [(model.text_model.encoder.layers[0].attn.qkv_proj.weight.grad[:32],
                          hf.text_model.encoder.layers[0].self_attn.q_proj.weight.grad),
                         (model.vision_model.class_embedding.grad, hf.vision_model.embeddings.class_embedding.grad),
                         (model.logit_scale.grad, hf.logit_scale.grad)]:
        assert (ours - theirs).abs().max() < 1e-4 and ours.abs().sum() > 0
    with torch.no_grad():  # another image size: both resize the position grid bicubically
        big = torch.randn(2, 3, 48, 40)
        assert (model.get_image_features(big, interpolate_pos_encoding=True)
                - hf.get_image_features(pixel_values=big, interpolate_pos_encoding=True).pooler_output).abs().max() < 1e-4
        # the text's feature is read at its end-of-text token, not at its last one
        moved = ids.clone()
        moved[0, 10] = 5
        assert (model.get_text_features(moved, mask) - model.get_text_features(ids, mask)).abs().max() == 0
    model.save_pretrained(tmp_path / "saved")
    again, info = transformers.CLIPModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys"))
    with torch.no_grad():
        assert (again.eval()(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits_per_image
                - ref.logits_per_image).abs().max() < 1e-4
    with pytest.raises(attnkit.InputError, match="takes 32x32"):
        model.get_image_features(big)
    with pytest.raises(attnkit.InputError, match="pairs the i-th image"):
        model(ids, pixels[:2], return_loss=True)


def test_old_configs_read_the_feature_at_the_highest_id(tmp_path):
    """eos_token_id 2 (configs written before transformers fixed it): the highest id marks the end."""
    hf = hf_clip(tmp_path, eos_token_id=2)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = texts(eos=V - 1)
    with torch.no_grad():
        assert (model.get_text_features(ids, mask)
                - hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output).abs().max() < 1e-4


@pytest.mark.parametrize("preset,hub", [
    ("clip-vit-base-patch32", dict()),
    ("clip-vit-base-patch16", dict(vision_config=dict(patch_size=16))),
    ("clip-vit-large-patch14", dict(projection_dim=768, text_config=dict(hidden_size=768, num_attention_heads=12,
                                                                         intermediate_size=3072),
                                    vision_config=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                       intermediate_size=4096, patch_size=14))),
])
def test_presets_have_the_released_shapes(preset, hub):
    with torch.device("meta"):
        theirs = transformers.CLIPModel(transformers.CLIPConfig(**hub)).num_parameters()
        ours = attnkit.Clip(attnkit.ClipConfig.from_preset(preset)).num_parameters()
    assert ours == theirs


def test_the_image_processor_is_clips(tmp_path):
    """Shortest edge to 224 (bicubic), the centre 224 × 224, OpenAI's mean and std: equal to
    CLIPImageProcessorPil on images of several shapes; its file round-trips through transformers."""
    from PIL import Image

    ours = ImageProcessor.for_model(attnkit.ClipConfig())
    theirs = transformers.CLIPImageProcessorPil()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in
              [(300, 451, 3), (500, 240, 3), (224, 224, 3), (100, 130, 3), (64, 300)]]
    for image in images:
        assert torch.equal(ours(image), theirs(image, return_tensors="pt")["pixel_values"])
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["crop_size"] == {"height": 224, "width": 224}
    reread = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    assert torch.equal(reread(images[0], return_tensors="pt")["pixel_values"], ours(images[0]))
    assert ImageProcessor.from_pretrained(tmp_path) == ours


def test_zero_shot_classification_is_the_softmax_of_the_image_text_logits(tmp_path):
    from PIL import Image
    from tokenizers import Tokenizer as Backend, models, pre_tokenizers, processors

    from attnkit.tokenizers import Tokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" ", ".", "_"]
    vocab = {"<pad>": PAD, **{c: i + 1 for i, c in enumerate(letters)}}
    bos, eos = vocab.setdefault("<s>", len(vocab)), vocab.setdefault("</s>", len(vocab))
    vocab["<unk>"] = len(vocab)
    backend = Backend(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", bos),
                                                                                                  ("</s>", eos)])
    backend.enable_padding(pad_id=PAD, pad_token="<pad>")
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(dict(bos_token="<s>", eos_token="</s>",
                                                                    pad_token="<pad>", unk_token="<unk>")))
    tok = Tokenizer.from_pretrained(tmp_path)
    hf = hf_clip(tmp_path / "model", max_position_embeddings=32, bos_token_id=bos, eos_token_id=eos)
    model = attnkit.from_pretrained(tmp_path / "model")
    labels = ["cat", "dog", "a red car"]
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(2)]
    got = attnkit.zero_shot_classify_image(model, tok, images, labels, hypothesis_template="a photo of {}.")
    batch = tok([f"a photo of {label}." for label in labels])
    assert int(batch["input_ids"][0, int(batch["attention_mask"][0].sum()) - 1]) == eos
    processor = ImageProcessor.for_model(model.config)
    with torch.no_grad():
        probs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=processor(images)).logits_per_image.softmax(-1)
    for ranked, row in zip(got, probs.tolist()):
        assert [d["label"] for d in ranked] == [labels[i] for i in np.argsort(row)[::-1]]
        assert np.allclose([d["score"] for d in ranked], sorted(row, reverse=True), atol=1e-5)
    single = attnkit.zero_shot_classify_image(model, tok, images[0], labels, hypothesis_template="a photo of {}.")
    assert single == got[0]
    # attnkit classify-image --labels: the same ranking from a directory with the model and its tokenizer
    from typer.testing import CliRunner

    from attnkit.cli import app

    tok.save_pretrained(tmp_path / "model")
    images[1].save(tmp_path / "b.png")
    result = CliRunner().invoke(app, ["classify-image", str(tmp_path / "model"), str(tmp_path / "b.png"), "--labels",
                                      "cat, dog,a red car", "--template", "a photo of {}.", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["labels"] == [dict(d, score=pytest.approx(d["score"], abs=1e-6))
                                                   for d in got[1][:2]]
    with pytest.raises(attnkit.InputError, match="dual encoder"):
        attnkit.zero_shot_classify_image(attnkit.ViT(attnkit.ViTConfig.from_preset("vit-tiny")), tok, images, labels)
    # embeddings: texts and images in one space, transformers' features normalised; the server serves the texts'
    texts = [f"a photo of {label}." for label in labels]
    with torch.no_grad():
        ref_text = hf.get_text_features(**{k: batch[k] for k in ("input_ids", "attention_mask")}).pooler_output
        ref_image = hf.get_image_features(pixel_values=processor(images)).pooler_output
    assert torch.allclose(attnkit.embed(model, texts, tokenizer=tok, batch_size=2),
                          torch.nn.functional.normalize(ref_text, dim=-1), atol=1e-5)
    assert torch.allclose(attnkit.embed_images(tmp_path / "model", images),
                          torch.nn.functional.normalize(ref_image, dim=-1), atol=1e-5)
    from attnkit.serve.server import ModelServer

    app = ModelServer(model, tok)
    assert app.health()["endpoints"] == ["/v1/embeddings"]
    served = app.embed(dict(input=texts))["data"]
    assert torch.allclose(torch.tensor([d["embedding"] for d in served]), attnkit.embed(model, texts, tokenizer=tok))
    with pytest.raises(attnkit.InputError, match="does not embed images"):
        attnkit.embed_images(attnkit.ViT(attnkit.ViTConfig.from_preset("vit-tiny")), images)
