"""BERT: sizes against Hugging Face's, padding invariance, tying, mean pooling, and errors.
(Numerical parity with `transformers` for every head is in tests/interop/test_bert_interop.py.)"""

import pytest
import torch
import torch.nn.functional as F

from attnkit import Bert, BertConfig, BertForMaskedLM, BertForQuestionAnswering, BertForSequenceClassification
from attnkit.errors import ConfigError, InputError
from attnkit.nn import mean_pool


def tiny(cls=Bert, **fields):
    return cls(BertConfig.from_preset("bert-tiny", dropout=0.0, attn_dropout=0.0, **fields)).eval()


def test_bert_base_preset_has_109482240_parameters():
    with torch.device("meta"):
        assert Bert(BertConfig.from_preset("bert-base-uncased")).num_parameters() == 109_482_240


@pytest.mark.parametrize("preset,layers,heads,width,ff", [
    ("bert-base-uncased", 12, 12, 768, 3072), ("bert-large-uncased", 24, 16, 1024, 4096)])
def test_presets_match_transformers_parameter_counts(preset, layers, heads, width, ff):
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        ours = BertForMaskedLM(BertConfig.from_preset(preset))
        hf = transformers.BertForMaskedLM(transformers.BertConfig(
            num_hidden_layers=layers, num_attention_heads=heads, hidden_size=width, intermediate_size=ff))
    hf_params = {id(p): p.numel() for p in hf.parameters()}  # tied weights counted once
    assert ours.num_parameters() == sum(hf_params.values())


def test_padding_does_not_change_real_token_states():
    model = tiny()
    ids = torch.randint(1, 256, (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        with_pad = model(padded, attention_mask=mask).last_hidden_state[:, :9]
    assert torch.allclose(alone, with_pad, atol=1e-5)


def test_bidirectional_attention_sees_later_tokens():
    model = tiny()
    ids = torch.randint(1, 256, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 256
    with torch.no_grad():
        assert not torch.allclose(model(ids).last_hidden_state[0, 0], model(changed).last_hidden_state[0, 0])


def test_masked_lm_decoder_is_tied_to_word_embeddings():
    model = tiny(BertForMaskedLM)
    assert model.decoder.weight is model.bert.word_embeddings.weight
    assert model.bert.pooler is None


def test_masked_lm_loss_is_cross_entropy_over_labelled_positions():
    model = tiny(BertForMaskedLM)
    ids = torch.randint(1, 256, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 4] = 7, 9
    out = model(ids, labels=labels)
    picked = out.logits[[0, 1], [2, 4]]
    assert torch.allclose(out.loss, F.cross_entropy(picked, torch.tensor([7, 9])), atol=1e-6)


def test_mean_pool_averages_real_tokens_only():
    h = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = mean_pool(h, mask)
    assert torch.allclose(pooled[0], h[0, :2].mean(0)) and torch.allclose(pooled[1], h[1].mean(0))
    unit = mean_pool(h, mask, normalize=True)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(2)) and torch.allclose(unit, pooled / pooled.norm(dim=-1, keepdim=True))
    assert torch.equal(mean_pool(h, torch.zeros(2, 4)), torch.zeros(2, 3))  # no real token: zeros, not NaN
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(mean_pool(h.to(dtype), torch.zeros(2, 4)), torch.zeros(2, 3, dtype=dtype))


def test_sentence_embedding_is_mean_pooled_last_hidden_state():
    model = tiny(BertForSequenceClassification)
    ids, mask = torch.randint(1, 256, (2, 5)), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        h = model.bert(ids, attention_mask=mask).last_hidden_state
        expected = F.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
        assert torch.allclose(model.sentence_embedding(ids, mask), expected, atol=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="d_model"):
        BertConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="activation"):
        BertConfig(activation="swiglu")
    model = tiny(BertForQuestionAnswering)
    with pytest.raises(InputError, match="longer"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(InputError, match="token_type_ids"):
        model(torch.zeros(1, 5, dtype=torch.long), token_type_ids=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(InputError, match="both"):
        model(torch.zeros(1, 5, dtype=torch.long), start_positions=torch.tensor([1]))
    with pytest.raises(InputError, match=r"token_type_ids must lie in \[0, 2\) \(type_vocab_size\)"):
        model(torch.zeros(1, 5, dtype=torch.long), token_type_ids=torch.full((1, 5), 2))
    with pytest.raises(InputError, match=r"input_ids must lie in \[0, 256\) \(vocab_size\)"):
        model(torch.full((1, 5), 256))


def test_head_labels_are_checked_and_int32_class_ids_are_taken():
    from attnkit.models.bert import BertForTokenClassification

    ids = torch.randint(0, 256, (4, 6))
    seq = tiny(BertForSequenceClassification, num_labels=3)
    labels = torch.tensor([0, 2, 1, -100])
    assert torch.equal(seq(ids, labels=labels.int()).loss, seq(ids, labels=labels).loss)
    with pytest.raises(InputError, match=r"labels must lie in \[0, 3\) or be -100, got 3"):
        seq(ids, labels=torch.tensor([0, 3, 1, 1]))
    with pytest.raises(InputError, match=r"float labels \(4,\) are read as multi-label.*must be an integer tensor"):
        seq(ids, labels=torch.tensor([0.0, 2.0, 1.0, 1.0]))
    regression = tiny(BertForSequenceClassification, num_labels=1)
    with pytest.raises(InputError, match=r"labels must have shape \(4,\), got \(1,\)"):
        regression(ids, labels=torch.tensor([0.5]))  # would broadcast over the batch
    with pytest.raises(InputError, match=r"labels must lie in \[0, 2\) or be -100, got 7"):
        tiny(BertForTokenClassification)(ids, labels=torch.full((4, 6), 7))
    with pytest.raises(InputError, match=r"labels must lie in \[0, 256\) or be -100, got 300"):
        tiny(BertForMaskedLM)(ids, labels=torch.full((4, 6), 300))
    with pytest.raises(InputError, match="end_positions must be integer class ids, got torch.float32"):
        tiny(BertForQuestionAnswering)(ids, start_positions=torch.tensor([1, 2, 3, 4]),
                                       end_positions=torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_feedforward_hidden_units_are_not_dropped_as_in_bert():
    """BERT drops out attention weights and sublayer outputs, never the intermediate activations."""
    model = Bert(BertConfig.from_preset("bert-tiny", dropout=0.1))
    for layer in model.encoder.layers:
        assert layer.drop.p == 0.1 and layer.ffn.dropout.p == 0.0
