"""DistilBERT and each head against `transformers` with identical weights, both directions: no
segment embeddings or pooler, DistilBERT's own key names and classification head."""

import json

import pytest
import torch

import attnkit
from attnkit.models import distilbert as ours

transformers = pytest.importorskip("transformers")

V = 120
HEADS = {  # transformers class -> attnkit class
    "DistilBertModel": ours.DistilBert,
    "DistilBertForMaskedLM": ours.DistilBertForMaskedLM,
    "DistilBertForSequenceClassification": ours.DistilBertForSequenceClassification,
    "DistilBertForTokenClassification": ours.DistilBertForTokenClassification,
    "DistilBertForQuestionAnswering": ours.DistilBertForQuestionAnswering,
}


def hf_distilbert(name: str, **overrides):
    """A random transformers DistilBERT, every bias and norm drawn (so a wrong mapping shows)."""
    cfg = dict(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=20,
               num_labels=2 if name.endswith("Answering") else 3, activation="gelu", dropout=0.0, attention_dropout=0.0)
    cfg.update(overrides)
    model = getattr(transformers, name)(transformers.DistilBertConfig(**cfg)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                norm = "norm.weight" in n.lower()
                p.normal_(0.0, 0.1 if norm else 0.5).add_(1.0 if norm else 0.0)
    return model


def padded_batch(T=11):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, V, (3, T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor([[T], [7], [2]])).long()
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_transformers_distilbert_checkpoint_gives_same_outputs(tmp_path, hf_name, outputs_of, close_on_real_tokens):
    hf = hf_distilbert(hf_name)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is HEADS[hf_name] and model.config.type_vocab_size == 0
    ids, mask = padded_batch()
    with torch.no_grad():
        got, ref = outputs_of(model, ids, mask), outputs_of(hf, ids, mask)
        # segment ids mean nothing to DistilBERT: they are ignored, as its tokenizer never sends them
        assert torch.equal(outputs_of(model, ids, mask, torch.ones_like(ids))[next(iter(got))], got[next(iter(got))])
    expected = {"DistilBertModel": {"last_hidden_state"}, "DistilBertForQuestionAnswering": {"start_logits", "end_logits"}}
    assert expected.get(hf_name, {"logits"}) <= set(got) & set(ref)
    close_on_real_tokens(got, ref, mask)


LABELS = {
    "DistilBertForMaskedLM": lambda ids, mask: dict(labels=torch.where(torch.rand(ids.shape) < 0.3, ids, -100)),
    "DistilBertForSequenceClassification": lambda ids, mask: dict(labels=torch.tensor([0, 2, 1])),
    "DistilBertForTokenClassification": lambda ids, mask: dict(
        labels=torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)),
    "DistilBertForQuestionAnswering": lambda ids, mask: dict(start_positions=torch.tensor([1, 3, 50]),
                                                              end_positions=torch.tensor([4, 6, 0])),
}


@pytest.mark.parametrize("hf_name", list(LABELS))
def test_head_losses_and_gradients_equal_transformers(tmp_path, hf_name, head_loss_and_gradients_match):
    hf = hf_distilbert(hf_name)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch()
    head_loss_and_gradients_match(hf, model, "distilbert", ids, mask, LABELS[hf_name](ids, mask))


def test_dropouts_are_distilbert_s(tmp_path):
    """Training-time dropout where DistilBERT puts it: seq_classif_dropout after the ReLU (none
    before the dense layer), qa_dropout before qa_outputs, the model's rate in the token head."""
    hf = hf_distilbert("DistilBertForSequenceClassification", seq_classif_dropout=0.3, qa_dropout=0.4, dropout=0.05)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert model.head_drop.p == 0.3 and not model.head_drop_first
    assert ours.DistilBertForQuestionAnswering(model.config).qa_drop.p == 0.4
    assert ours.DistilBertForTokenClassification(model.config).head_drop.p == 0.05


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_attnkit_distilbert_saved_loads_in_transformers_with_same_outputs(tmp_path, hf_name, outputs_of,
                                                                          close_on_real_tokens):
    cfg = attnkit.DistilBertConfig.from_preset("distilbert-tiny", num_labels=2 if hf_name.endswith("Answering") else 4)
    model = HEADS[hf_name](cfg).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [hf_name] and saved["model_type"] == "distilbert"
    hf, info = getattr(transformers, hf_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = padded_batch(T=20)
    with torch.no_grad():
        close_on_real_tokens(outputs_of(model, ids, mask), outputs_of(hf.eval(), ids, mask), mask)
