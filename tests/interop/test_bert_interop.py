"""BERT and each head against `transformers` with identical weights, both directions."""

import json

import pytest
import torch

import attnkit
from attnkit.models import bert as ours_bert

transformers = pytest.importorskip("transformers")

V = 120
HEADS = {  # transformers class -> attnkit class
    "BertModel": ours_bert.Bert,
    "BertForMaskedLM": ours_bert.BertForMaskedLM,
    "BertForSequenceClassification": ours_bert.BertForSequenceClassification,
    "BertForTokenClassification": ours_bert.BertForTokenClassification,
    "BertForQuestionAnswering": ours_bert.BertForQuestionAnswering,
}


def hf_bert(name: str, **overrides):
    cfg = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=40, type_vocab_size=2, num_labels=2 if name.endswith("Answering") else 3,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.update(overrides)
    model = getattr(transformers, name)(transformers.BertConfig(**cfg)).eval()
    with torch.no_grad():  # random LayerNorm and bias values, so that a wrong mapping cannot hide
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.5 if "LayerNorm.weight" not in n else 0.1).add_(1.0 if "LayerNorm.weight" in n else 0.0)
    return model


def padded_batch():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, V, (3, 11), generator=g)
    mask = (torch.arange(11)[None] < torch.tensor([[11], [7], [2]])).long()
    types = (torch.arange(11)[None] >= 5).long().expand(3, -1).clone()
    return ids.masked_fill(mask == 0, 0), mask, types


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_transformers_bert_checkpoint_gives_same_outputs(tmp_path, hf_name, outputs_of, close_on_real_tokens):
    hf = hf_bert(hf_name)
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    assert type(ours) is HEADS[hf_name]
    ids, mask, types = padded_batch()
    with torch.no_grad():
        got, ref = outputs_of(ours, ids, mask, types), outputs_of(hf, ids, mask, types)
    expected = {"BertModel": {"last_hidden_state", "pooler_output"}, "BertForQuestionAnswering": {"start_logits", "end_logits"}}
    assert expected.get(hf_name, {"logits"}) <= set(got) & set(ref)
    close_on_real_tokens(got, ref, mask)


LABELS = {
    "BertForMaskedLM": lambda ids, mask: dict(labels=torch.where(torch.rand(ids.shape) < 0.3, ids, -100)),
    "BertForSequenceClassification": lambda ids, mask: dict(labels=torch.tensor([0, 2, 1])),
    "BertForTokenClassification": lambda ids, mask: dict(labels=torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)),
    "BertForQuestionAnswering": lambda ids, mask: dict(start_positions=torch.tensor([1, 3, 50]),
                                                        end_positions=torch.tensor([4, 6, 0])),
}


@pytest.mark.parametrize("hf_name", list(LABELS))
def test_head_losses_equal_transformers(tmp_path, hf_name):
    hf = hf_bert(hf_name)
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    ids, mask, types = padded_batch()
    labels = LABELS[hf_name](ids, mask)
    with torch.no_grad():
        got = ours(ids, attention_mask=mask, token_type_ids=types, **labels).loss
        ref = hf(ids, attention_mask=mask, token_type_ids=types, **labels).loss
    assert torch.allclose(got, ref, atol=1e-5)


def test_regression_and_multilabel_losses_equal_transformers(tmp_path):
    ids, mask, types = padded_batch()
    for num_labels, labels, problem in [(1, torch.randn(3), "regression"),
                                        (3, torch.randint(0, 2, (3, 3)).float(), "multi_label_classification")]:
        hf = hf_bert("BertForSequenceClassification", num_labels=num_labels, problem_type=problem)
        hf.save_pretrained(tmp_path / problem)
        ours = attnkit.from_pretrained(tmp_path / problem)
        with torch.no_grad():
            got = ours(ids, attention_mask=mask, labels=labels).loss
            ref = hf(ids, attention_mask=mask, labels=labels).loss
        assert torch.allclose(got, ref, atol=1e-5), problem


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_attnkit_bert_saved_loads_in_transformers_with_same_outputs(tmp_path, hf_name, outputs_of,
                                                                   close_on_real_tokens):
    cfg = attnkit.BertConfig.from_preset("bert-tiny", num_labels=2 if hf_name.endswith("Answering") else 4)
    ours = HEADS[hf_name](cfg).eval()
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [hf_name]
    hf, info = getattr(transformers, hf_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask, types = padded_batch()
    with torch.no_grad():
        close_on_real_tokens(outputs_of(ours, ids, mask, types), outputs_of(hf.eval(), ids, mask, types), mask)


def test_pretraining_checkpoint_loads_as_masked_lm(tmp_path):
    hf = hf_bert("BertForPreTraining")
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    assert isinstance(ours, ours_bert.BertForMaskedLM)
    ids, mask, types = padded_batch()
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=types).prediction_logits
        got = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert (got - ref).abs()[mask.bool()].max() <= 1e-4


def test_unsupported_position_embedding_type_is_refused(tmp_path):
    hf_bert("BertModel", position_embedding_type="relative_key").save_pretrained(tmp_path)
    with pytest.raises(attnkit.ConfigError, match="position_embedding_type"):
        attnkit.from_pretrained(tmp_path)


def test_bert_model_saved_without_its_pooler_loads_and_round_trips(tmp_path, outputs_of, close_on_real_tokens):
    hf = transformers.BertModel(hf_bert("BertModel").config, add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert isinstance(model, ours_bert.Bert) and model.pooler is None
    ids, mask, types = padded_batch()
    with torch.no_grad():
        close_on_real_tokens(outputs_of(model, ids, mask, types), outputs_of(hf, ids, mask, types), mask)
    model.save_pretrained(tmp_path / "again")
    again = attnkit.from_pretrained(tmp_path / "again")
    assert again.pooler is None and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                           again.state_dict().values()))


def test_untied_masked_lm_head_is_refused_without_impossible_advice(tmp_path):
    hf_bert("BertForMaskedLM", tie_word_embeddings=False).save_pretrained(tmp_path)
    with pytest.raises(attnkit.CheckpointError, match="untied.*BertForMaskedLM has no untied variant"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("num_labels,problem_type,labels", [
    (3, "regression", torch.randn(3, 3)), (1, "multi_label_classification", torch.tensor([[1.0], [0.0], [1.0]])),
    (3, "single_label_classification", torch.tensor([0, 2, 1])), (1, None, torch.randn(3)),
])
def test_sequence_classification_loss_follows_problem_type_as_in_transformers(tmp_path, num_labels, problem_type, labels):
    hf = hf_bert("BertForSequenceClassification", num_labels=num_labels, problem_type=problem_type)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.problem_type == json.loads((tmp_path / "config.json").read_text()).get("problem_type")
    ids, mask, types = padded_batch()
    ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
    got = model(ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    ref.backward(), got.backward()
    torch.testing.assert_close(model.classifier.weight.grad, hf.classifier.weight.grad, atol=1e-5, rtol=1e-4)
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()).get("problem_type") == problem_type


def test_question_answering_saves_two_outputs_whatever_num_labels(tmp_path):
    model = ours_bert.BertForQuestionAnswering(ours_bert.BertConfig.from_preset("bert-tiny", vocab_size=V, num_labels=3))
    model.save_pretrained(tmp_path)
    hf, info = transformers.BertForQuestionAnswering.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask, types = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types).start_logits,
                                   model.eval()(ids, attention_mask=mask, token_type_ids=types).start_logits,
                                   atol=1e-5, rtol=1e-5)


def test_label_names_round_trip_both_ways(tmp_path):
    """A fine-tuned classifier's id2label survives transformers -> attnkit -> transformers."""
    names = {0: "negative", 1: "neutral", 2: "positive"}
    hf = hf_bert("BertForSequenceClassification", id2label=names, label2id={v: k for k, v in names.items()})
    hf.save_pretrained(tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert model.config.label_names == ("negative", "neutral", "positive")
    assert model.config.id2label == names and model.config.label2id["neutral"] == 1
    model.save_pretrained(tmp_path / "ours")
    back = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours")
    assert back.config.id2label == names and back.config.label2id == {v: k for k, v in names.items()}
    default = hf_bert("BertForSequenceClassification")  # transformers' LABEL_i names stay implicit
    default.save_pretrained(tmp_path / "default")
    assert attnkit.from_pretrained(tmp_path / "default").config.label_names is None
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "2": "b", "5": "c"}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(attnkit.ConfigError, match="id2label must name the classes 0..2"):
        attnkit.from_pretrained(tmp_path / "hf")


def test_hidden_states_equal_transformers(tmp_path):
    hf = hf_bert("BertForSequenceClassification")
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    ids, mask, types = padded_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states
        got = ours(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states
    assert len(got) == len(ref) == 3
    for a, b in zip(got, ref):
        assert (a - b).abs()[mask.bool()].max() <= 1e-4
