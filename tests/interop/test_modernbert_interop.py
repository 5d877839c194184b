"""ModernBERT against `transformers`' ModernBert models with identical weights, both directions:
global layers every third from the first (RoPE base 160,000) and windowed ones in between (a
bidirectional window, base 10,000), no norm before the first layer's attention, the GeGLU split
out of ``Wi``, no biases; the masked LM, both poolings of the sequence classifier, the token
classifier."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from attnkit.nn import attention as attention_module

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             max_position_embeddings=64, local_attention=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             cls_token_id=1, sep_token_id=2)


def hf_modernbert(path, cls="ModernBertForMaskedLM", **overrides):
    """A random ModernBert model saved to ``path``, every weight drawn (norm weights around 1)."""
    torch.manual_seed(0)
    config = transformers.ModernBertConfig(**{**SMALL, **overrides})
    hf = getattr(transformers, cls)(config).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n and n.endswith("weight") else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def padded_batch(T=20):
    """Three rows past the window of 8, the second and third right-padded."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (3, T), generator=g)
    mask = torch.ones_like(ids)
    mask[1, T - 6:], mask[2, 5:] = 0, 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("block", [128, 1])
def test_masked_lm_gives_transformers_logits_loss_gradients_and_saves(tmp_path, monkeypatch, block):
    """In one block of queries or several (``WINDOW_BLOCK``: the windowed attention's blocks, of
    8 queries here, 3 for 20 tokens)."""
    monkeypatch.setattr(attention_module, "WINDOW_BLOCK", block)
    hf = hf_modernbert(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.ModernBertForMaskedLM and c.local_layers == (1, 2) and c.local_attention == 8
    assert model.model.encoder.layers[0].attn_norm is None and model.decoder.weight is model.model.tok_embeddings.weight
    ids, mask = padded_batch()
    labels = ids.masked_fill((torch.rand(ids.shape, generator=torch.Generator().manual_seed(2)) > 0.3) | (mask == 0),
                             -100)
    got, ref = model(ids, mask, labels=labels), hf(ids, attention_mask=mask, labels=labels)
    real = mask.bool()
    assert (got.logits - ref.logits)[real].abs().max() < 1e-4 and torch.allclose(got.loss, ref.loss, atol=1e-5)
    got.loss.backward()
    ref.loss.backward()
    ours, theirs = model.model.encoder.layers[1].ffn.fc_gate.weight.grad, hf.model.layers[1].mlp.Wi.weight.grad[:48]
    assert (ours - theirs).abs().max() < 1e-4 and ours.abs().sum() > 0
    model.save_pretrained(tmp_path / "saved")
    again, info = transformers.ModernBertForMaskedLM.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys"))
    with torch.no_grad():
        assert (again.eval()(ids, attention_mask=mask).logits - ref.logits)[real].abs().max() < 1e-4
        # each feature matters: the window, the local base, where the global layers are
        for change in [dict(local_attention=64), dict(local_rope_theta=160_000.0), dict(global_every=2)]:
            other = attnkit.ModernBertForMaskedLM(c.replace(**change)).eval()
            other.load_state_dict(model.state_dict())
            assert (other(ids, mask).logits - ref.logits)[real].abs().max() > 1e-3, change


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sequence_and_token_classifiers_give_transformers_logits_and_losses(tmp_path, pooling):
    ids, mask = padded_batch()
    hf = hf_modernbert(tmp_path / "seq", "ModernBertForSequenceClassification", classifier_pooling=pooling,
                       num_labels=3, classifier_bias=True)
    model = attnkit.from_pretrained(tmp_path / "seq")
    assert type(model) is attnkit.ModernBertForSequenceClassification and model.config.classifier_pooling == pooling
    labels = torch.tensor([0, 2, 1])
    got, ref = model(ids, mask, labels=labels), hf(ids, attention_mask=mask, labels=labels)
    assert (got.logits - ref.logits).abs().max() < 1e-4 and torch.allclose(got.loss, ref.loss, atol=1e-5)
    hf = hf_modernbert(tmp_path / "tok", "ModernBertForTokenClassification", num_labels=5)
    model = attnkit.from_pretrained(tmp_path / "tok")
    labels = torch.randint(0, 5, ids.shape).masked_fill(mask == 0, -100)
    got, ref = model(ids, mask, labels=labels), hf(ids, attention_mask=mask, labels=labels)
    assert (got.logits - ref.logits)[mask.bool()].abs().max() < 1e-4 and torch.allclose(got.loss, ref.loss, atol=1e-5)


def test_the_bare_encoder_and_sentence_embeddings(tmp_path):
    hf = hf_modernbert(tmp_path, "ModernBertModel")
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch()
    with torch.no_grad():
        got, ref = model(ids, mask).last_hidden_state, hf(ids, attention_mask=mask).last_hidden_state
        assert type(model) is attnkit.ModernBert and (got - ref)[mask.bool()].abs().max() < 1e-4
        pooled = (ref * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        assert (model.sentence_embedding(ids, mask) - pooled).abs().max() < 1e-4


@pytest.mark.parametrize("change,match", [
    (dict(layer_types=["full_attention", "sliding_attention", "full_attention", "full_attention"]), "layer_types"),
    (dict(rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
                           "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}), "rope_type"),
    (dict(attention_bias=True), "attention_bias and mlp_bias"),
    (dict(hidden_activation="mish"), "hidden_activation"),
])
def test_unsupported_configs_are_refused(tmp_path, change, match):
    hf_modernbert(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields,count", [
    ("modernbert-base", {}, 149_655_232),
    ("modernbert-large", dict(hidden_size=1024, intermediate_size=2624, num_hidden_layers=28, num_attention_heads=16),
     395_881_664),
])
def test_presets_have_transformers_parameter_counts(preset, hf_fields, count):
    with torch.device("meta"):
        ours = attnkit.ModernBertForMaskedLM(attnkit.ModernBertConfig.from_preset(preset))
        theirs = transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(**hf_fields))
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(ours) == total(theirs) == count
