"""RoBERTa (and XLM-RoBERTa) and each head against `transformers` with identical weights, both
directions: positions counted over the real tokens from pad_token_id + 1, RoBERTa's own
classification and LM heads."""

import json

import pytest
import torch

import attnkit
from attnkit.models import roberta as ours

transformers = pytest.importorskip("transformers")

V, PAD = 120, 1
HEADS = {  # transformers class -> attnkit class
    "RobertaModel": ours.Roberta,
    "RobertaForMaskedLM": ours.RobertaForMaskedLM,
    "RobertaForSequenceClassification": ours.RobertaForSequenceClassification,
    "RobertaForTokenClassification": ours.RobertaForTokenClassification,
    "RobertaForQuestionAnswering": ours.RobertaForQuestionAnswering,
}


def hf_roberta(name: str, **overrides):
    """A random transformers RoBERTa in the released checkpoints' layout (514-style positions: the
    longest input plus the padding offset; one token type; eps 1e-5), every bias and norm drawn."""
    cfg = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=16, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=PAD,
               bos_token_id=0, eos_token_id=2, num_labels=2 if name.endswith("Answering") else 3,
               hidden_act="relu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.update(overrides)
    model = getattr(transformers, name)(transformers.RobertaConfig(**cfg)).eval()
    with torch.no_grad():  # random LayerNorm and bias values, so that a wrong mapping cannot hide
        for n, p in model.named_parameters():
            if p.dim() == 1:
                norm = "LayerNorm.weight" in n
                p.normal_(0.0, 0.1 if norm else 0.5).add_(1.0 if norm else 0.0)
            elif "position_embeddings" in n:
                p.normal_(0.0, 1.0)  # positions that matter: an off-by-offset numbering shows
    return model


def padded_batch(T=14):
    """Right-padded rows of 14, 9 and 3 tokens (14 = 16 positions - the offset of 2)."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, V, (3, T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor([[T], [9], [3]])).long()
    return ids.masked_fill(mask == 0, PAD), mask


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_transformers_roberta_checkpoint_gives_same_outputs(tmp_path, hf_name, outputs_of, close_on_real_tokens):
    hf = hf_roberta(hf_name)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is HEADS[hf_name] and model.config.n_positions == 16
    ids, mask = padded_batch()
    with torch.no_grad():
        got, ref = outputs_of(model, ids, mask), outputs_of(hf, ids, mask)
    expected = {"RobertaModel": {"last_hidden_state", "pooler_output"},
                "RobertaForQuestionAnswering": {"start_logits", "end_logits"}}
    assert expected.get(hf_name, {"logits"}) <= set(got) & set(ref)
    close_on_real_tokens(got, ref, mask)


def test_positions_count_real_tokens_from_after_the_padding_id(tmp_path):
    """Left padding shifts nothing: a row's real tokens get the same positions (pad + 1, ...)
    wherever the padding is, as in fairseq and transformers; the longest input is n_positions - 2."""
    hf = hf_roberta("RobertaModel")
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch()
    left_ids, left_mask = ids[1:2].roll(5, dims=1), mask[1:2].roll(5, dims=1)  # 9 tokens after 5 pads
    assert model.position_ids(left_ids).tolist() == [[PAD] * 5 + list(range(PAD + 1, PAD + 10))]
    with torch.no_grad():
        right = model(ids[1:2], attention_mask=mask[1:2]).last_hidden_state[0, :9]
        left = model(left_ids, attention_mask=left_mask).last_hidden_state[0, 5:]
        ref = hf(left_ids, attention_mask=left_mask).last_hidden_state[0, 5:]
    assert (left - right).abs().max() < 1e-5 and (left - ref).abs().max() < 1e-4
    with pytest.raises(attnkit.InputError, match="longer than the model's 14 positions"):
        model(torch.full((1, 15), 5))


LABELS = {
    "RobertaForMaskedLM": lambda ids, mask: dict(labels=torch.where(torch.rand(ids.shape) < 0.3, ids, -100)),
    "RobertaForSequenceClassification": lambda ids, mask: dict(labels=torch.tensor([0, 2, 1])),
    "RobertaForTokenClassification": lambda ids, mask: dict(
        labels=torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)),
    "RobertaForQuestionAnswering": lambda ids, mask: dict(start_positions=torch.tensor([1, 3, 50]),
                                                           end_positions=torch.tensor([4, 6, 0])),
}


@pytest.mark.parametrize("hf_name", list(LABELS))
def test_head_losses_and_gradients_equal_transformers(tmp_path, hf_name, head_loss_and_gradients_match):
    hf = hf_roberta(hf_name)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch()
    head_loss_and_gradients_match(hf, model, "roberta", ids, mask, LABELS[hf_name](ids, mask))


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_attnkit_roberta_saved_loads_in_transformers_with_same_outputs(tmp_path, hf_name, outputs_of,
                                                                      close_on_real_tokens):
    cfg = attnkit.RobertaConfig.from_preset("roberta-tiny", num_labels=2 if hf_name.endswith("Answering") else 4)
    model = HEADS[hf_name](cfg).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [hf_name] and saved["model_type"] == "roberta"
    hf, info = getattr(transformers, hf_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = padded_batch(T=20)
    with torch.no_grad():
        close_on_real_tokens(outputs_of(model, ids, mask), outputs_of(hf.eval(), ids, mask), mask)


def test_xlm_roberta_checkpoints_load_as_roberta(tmp_path, outputs_of, close_on_real_tokens):
    """``model_type: xlm-roberta`` (XLM-RoBERTa's layout is RoBERTa's): the same outputs as
    transformers' ``XLMRobertaForSequenceClassification``, saved back as a RoBERTa checkpoint."""
    cfg = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=16, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=PAD, num_labels=3)
    torch.manual_seed(0)
    hf = transformers.XLMRobertaForSequenceClassification(transformers.XLMRobertaConfig(**cfg)).eval()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is ours.RobertaForSequenceClassification
    ids, mask = padded_batch()
    with torch.no_grad():
        close_on_real_tokens(outputs_of(model, ids, mask), outputs_of(hf, ids, mask), mask)
    model.save_pretrained(tmp_path / "again")
    again = transformers.RobertaForSequenceClassification.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        close_on_real_tokens(outputs_of(again, ids, mask), outputs_of(hf, ids, mask), mask)


def test_a_classifier_starts_from_a_roberta_encoder_checkpoint(tmp_path):
    """``RobertaForSequenceClassification.from_pretrained`` of a bare encoder: the encoder's
    weights, a new head (as ``AutoModelForSequenceClassification`` does for fine-tuning)."""
    hf = hf_roberta("RobertaModel")
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="initialised afresh.*head_dense"):
        model = ours.RobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    ids, mask = padded_batch()
    with torch.no_grad():
        assert (model.encode(ids, mask).last_hidden_state - hf(ids, attention_mask=mask).last_hidden_state)[
            mask.bool()].abs().max() < 1e-4
        assert model(ids, attention_mask=mask).logits.shape == (3, 5)
