"""ESM-2 and its heads against `transformers` with identical weights, both directions: outputs on
padded batches with <mask> tokens (token dropout active), losses, gradients, attentions, hidden
states, checkpoint layouts and the variants attnkit refuses."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import attnkit
from attnkit.errors import ConfigError
from attnkit.models import esm as ours_esm

transformers = pytest.importorskip("transformers")

HEADS = {"EsmModel": ours_esm.Esm, "EsmForMaskedLM": ours_esm.EsmForMaskedLM,
         "EsmForSequenceClassification": ours_esm.EsmForSequenceClassification,
         "EsmForTokenClassification": ours_esm.EsmForTokenClassification}
OUTPUTS = ("last_hidden_state", "pooler_output", "logits")
CLS, PAD, EOS, MASK = 0, 1, 2, 32


def hf_config(**overrides):
    """An ESM-2-shaped random config: rotary positions, token dropout, no embedding LayerNorm;
    only 16 positions, so that the batch below runs past them (Hugging Face does not refuse)."""
    cfg = dict(vocab_size=33, mask_token_id=MASK, pad_token_id=PAD, hidden_size=32, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=64, position_embedding_type="rotary", token_dropout=True,
               layer_norm_eps=1e-5, emb_layer_norm_before=False, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, max_position_embeddings=16, num_labels=3)
    cfg.update(overrides)
    return transformers.EsmConfig(**cfg, attn_implementation="eager")


def hf_esm(name: str, **overrides):
    """A random ``transformers`` ESM whose attentions can be returned (eager attention)."""
    torch.manual_seed(0)
    model = getattr(transformers, name)(hf_config(**overrides)).eval()
    with torch.no_grad():  # random LayerNorm and bias values, so that a wrong mapping cannot hide
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.5).add_(1.0 if "norm" in n.lower() and "weight" in n else 0.0)
    return model


def padded_batch():
    """Three proteins of 20, 16 and 12 tokens (longer than the 16 positions), right-padded, with
    one, two and no <mask> tokens."""
    g = torch.Generator().manual_seed(1)
    ids = torch.full((3, 20), PAD)
    for row, n in enumerate((20, 16, 12)):
        ids[row, :n] = torch.cat([torch.tensor([CLS]), torch.randint(4, 29, (n - 2,), generator=g), torch.tensor([EOS])])
    ids[0, 5] = ids[1, 3] = ids[1, 9] = MASK
    return ids, (ids != PAD).long()


def load_twin(tmp_path, hf_name, **overrides):
    hf = hf_esm(hf_name, **overrides)
    hf.save_pretrained(tmp_path)
    return hf, attnkit.from_pretrained(tmp_path)


def max_diffs(ours, hf, ids, mask) -> dict:
    with torch.no_grad():
        got, ref = ours(ids, attention_mask=mask), hf(ids, attention_mask=mask)
    shared = [n for n in OUTPUTS if getattr(got, n, None) is not None and getattr(ref, n, None) is not None]
    return {n: (getattr(got, n) - getattr(ref, n)).abs().max().item() for n in shared}


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_transformers_esm_checkpoint_gives_same_outputs(tmp_path, hf_name):
    hf, ours = load_twin(tmp_path, hf_name)
    assert type(ours) is HEADS[hf_name]
    diffs = max_diffs(ours, hf, *padded_batch())
    expected = {"EsmModel": {"last_hidden_state", "pooler_output"}}.get(hf_name, {"logits"})
    assert expected <= set(diffs) and max(diffs.values()) <= 1e-4, diffs


@pytest.mark.parametrize("overrides", [dict(token_dropout=False), dict(rope_theta=500.0, layer_norm_eps=1e-12)])
def test_config_variants_give_same_outputs(tmp_path, overrides):
    hf, ours = load_twin(tmp_path, "EsmForMaskedLM", **overrides)
    assert ours.config.token_dropout == hf.config.token_dropout
    diffs = max_diffs(ours, hf, *padded_batch())
    assert max(diffs.values()) <= 1e-4, diffs


def test_without_attention_mask_every_token_counts(tmp_path):
    hf, ours = load_twin(tmp_path, "EsmForMaskedLM")
    ids, _ = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_attentions_and_hidden_states_equal_transformers(tmp_path):
    hf, ours = load_twin(tmp_path, "EsmForMaskedLM")
    ids, mask = padded_batch()
    kw = dict(attention_mask=mask, output_attentions=True, output_hidden_states=True)
    with torch.no_grad():
        ref, got = hf(ids, **kw), ours(ids, **kw)
    assert len(got.attentions) == len(ref.attentions) == 2 and len(got.hidden_states) == len(ref.hidden_states) == 3
    for a, b in [*zip(got.attentions, ref.attentions), *zip(got.hidden_states, ref.hidden_states)]:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hf_name", ["EsmModel", "EsmForMaskedLM", "EsmForTokenClassification"])
def test_predicted_contacts_equal_transformers(tmp_path, hf_name):
    """``predict_contacts`` on a padded batch (an interior <eos> and padding in the shorter rows)
    with a regression whose weights are far from zero, so every layer's and head's map counts."""
    hf = hf_esm(hf_name)
    with torch.no_grad():
        base = hf if hf_name == "EsmModel" else hf.esm
        base.contact_head.regression.weight.normal_(0.0, 50.0)  # the corrected maps are small (~0.01)
        base.contact_head.regression.bias.zero_()
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch()
    with torch.no_grad():
        ref, got = base.predict_contacts(ids, mask), ours.predict_contacts(ids, mask)
    assert got.shape == ref.shape == (3, 18, 18)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert torch.allclose(got, got.transpose(1, 2)) and got[0].std() > 0.05  # symmetric, and not a constant
    with torch.no_grad():  # no mask: every position is real (HF needs one of ones)
        torch.testing.assert_close(ours.predict_contacts(ids[:1]), base.predict_contacts(ids[:1], mask[:1]),
                                   atol=1e-5, rtol=1e-4)


def test_masked_lm_loss_and_gradients_equal_transformers(tmp_path):
    hf, ours = load_twin(tmp_path, "EsmForMaskedLM")
    ids, mask = padded_batch()
    labels = torch.full_like(ids, -100)
    labels[0, 5], labels[1, 3], labels[1, 9], labels[2, 4] = 7, 12, 4, int(ids[2, 4])
    ref, got = hf(ids, attention_mask=mask, labels=labels).loss, ours(ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    ref.backward(), got.backward()
    torch.testing.assert_close(ours.esm.word_embeddings.weight.grad, hf.esm.embeddings.word_embeddings.weight.grad,
                               atol=1e-5, rtol=1e-4)
    q_grad = ours.esm.encoder.layers[0].attn.qkv_proj.weight.grad[:32]  # the query rows of the fused matrix
    torch.testing.assert_close(q_grad, hf.esm.encoder.layer[0].attention.self.query.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.decoder.bias.grad, hf.lm_head.bias.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hf_name,num_labels,problem_type,labels", [
    ("EsmForSequenceClassification", 3, None, torch.tensor([0, 2, 1])),
    ("EsmForSequenceClassification", 1, None, torch.randn(3)),
    ("EsmForSequenceClassification", 3, "multi_label_classification", torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1]])),
    ("EsmForTokenClassification", 3, None, torch.randint(0, 3, (3, 20)).masked_fill(padded_batch()[1] == 0, -100)),
])
def test_head_losses_and_gradients_equal_transformers(tmp_path, hf_name, num_labels, problem_type, labels):
    hf, ours = load_twin(tmp_path, hf_name, num_labels=num_labels, problem_type=problem_type)
    ids, mask = padded_batch()
    ref, got = hf(ids, attention_mask=mask, labels=labels).loss, ours(ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    ref.backward(), got.backward()
    hf_classifier = hf.classifier.out_proj if hf_name == "EsmForSequenceClassification" else hf.classifier
    torch.testing.assert_close(ours.classifier.weight.grad, hf_classifier.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.esm.encoder.norm.weight.grad, hf.esm.encoder.emb_layer_norm_after.weight.grad,
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_attnkit_esm_saved_loads_in_transformers_with_same_outputs(tmp_path, hf_name):
    torch.manual_seed(3)
    ours = HEADS[hf_name](ours_esm.EsmConfig.from_preset("esm-tiny", num_labels=3)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours.save_pretrained(tmp_path)
    hf, info = getattr(transformers, hf_name).from_pretrained(tmp_path, output_loading_info=True,
                                                               attn_implementation="eager")
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert all("inv_freq" in k for k in info["missing_keys"]), info["missing_keys"]  # a buffer transformers computes
    diffs = max_diffs(ours, hf.eval(), *padded_batch())
    assert diffs and max(diffs.values()) <= 1e-4, diffs
    again = attnkit.from_pretrained(tmp_path)
    assert again.config == ours.config
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))


def test_checkpoint_with_layernorm_weight_names_loads(tmp_path):
    """transformers 5 saves the layers' LayerNorms as ``LayerNorm.gamma``/``beta``; the facebook
    checkpoints (and transformers 4) call them ``weight``/``bias``: both load alike."""
    hf, ours = load_twin(tmp_path, "EsmForMaskedLM")
    state = load_file(tmp_path / "model.safetensors")
    assert any(k.endswith("LayerNorm.gamma") for k in state)
    renamed = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
               for k, v in state.items()}
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    again = attnkit.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))


def test_esm_model_saved_without_its_pooler_loads_and_round_trips(tmp_path):
    hf = transformers.EsmModel(hf_config(), add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    assert ours.pooler is None
    diffs = max_diffs(ours, hf, *padded_batch())
    assert diffs["last_hidden_state"] <= 1e-4
    ours.save_pretrained(tmp_path / "again")
    assert attnkit.from_pretrained(tmp_path / "again").pooler is None


@pytest.mark.parametrize("overrides,field", [
    (dict(position_embedding_type="relative_key"), "position_embedding_type"),
    (dict(is_folding_model=True), "is_folding_model"),
    (dict(is_decoder=True), "is_decoder"),
])
def test_unsupported_variants_are_refused_naming_the_field(tmp_path, overrides, field):
    hf_esm("EsmForMaskedLM").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **overrides}))
    with pytest.raises(ConfigError, match=field):
        attnkit.from_pretrained(tmp_path)


ESM1B = dict(position_embedding_type="absolute", emb_layer_norm_before=True, max_position_embeddings=40)


@pytest.mark.parametrize("hf_name", list(HEADS))
def test_esm1b_learned_positions_and_embedding_norm_give_transformers_outputs(tmp_path, hf_name):
    """ESM-1b's variant: a learned position table counted from the padding id (fairseq's), and a
    LayerNorm on the embeddings, on the padded batch with <mask> tokens (token dropout on)."""
    hf, ours = load_twin(tmp_path, hf_name, **ESM1B)
    assert ours.config.position_embedding == "absolute" and ours.config.embed_norm
    diffs = max_diffs(ours, hf, *padded_batch())
    assert max(diffs.values()) <= 1e-4, diffs
    ours.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert (saved["position_embedding_type"], saved["emb_layer_norm_before"]) == ("absolute", True)
    again = getattr(transformers, hf_name).from_pretrained(tmp_path / "again").eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        first = next(n for n in OUTPUTS if getattr(hf(ids, attention_mask=mask), n, None) is not None)
        torch.testing.assert_close(getattr(again(ids, attention_mask=mask), first),
                                   getattr(hf(ids, attention_mask=mask), first), atol=1e-5, rtol=1e-4)


def test_esm1b_contacts_and_the_position_table_limit(tmp_path):
    hf = hf_esm("EsmForMaskedLM", **ESM1B)
    with torch.no_grad():
        hf.esm.contact_head.regression.weight.normal_(0.0, 50.0)
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    ids, mask = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours.predict_contacts(ids, mask), hf.esm.predict_contacts(ids, mask),
                                   atol=1e-5, rtol=1e-4)
    too_long = torch.full((1, 39), 5)  # positions 2 .. 40: past the 40-row table
    with pytest.raises(attnkit.InputError, match="longer than the model's 38 positions"):
        ours(too_long)


def test_missing_position_embedding_type_means_absolute_as_in_transformers(tmp_path):
    """transformers' EsmConfig defaults to ESM-1b's learned positions: a config.json without the
    field loads as such (with the table it then needs)."""
    hf = hf_esm("EsmForMaskedLM", **ESM1B)
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["position_embedding_type"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert attnkit.from_pretrained(tmp_path).config.position_embedding == "absolute"


def test_label_names_round_trip_both_ways(tmp_path):
    hf = hf_esm("EsmForSequenceClassification", id2label={0: "cytoplasm", 1: "membrane", 2: "nucleus"})
    hf.save_pretrained(tmp_path)
    ours = attnkit.from_pretrained(tmp_path)
    assert ours.config.label_names == ("cytoplasm", "membrane", "nucleus")
    ours.save_pretrained(tmp_path / "again")
    back = transformers.AutoConfig.from_pretrained(tmp_path / "again")
    assert back.id2label == {0: "cytoplasm", 1: "membrane", 2: "nucleus"}
