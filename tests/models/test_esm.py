"""ESM-2: sizes against Hugging Face's, token dropout, padding, tying, errors, and a tiny model
that learns. (Numerical parity with `transformers` for every head is in
tests/interop/test_esm_interop.py.)"""

import pytest
import torch

from attnkit import Esm, EsmConfig, EsmForMaskedLM, EsmForSequenceClassification, EsmForTokenClassification
from attnkit.errors import ConfigError, InputError

CLS, PAD, EOS, MASK = 0, 1, 2, 32


def tiny(cls=Esm, **fields):
    torch.manual_seed(0)
    return cls(EsmConfig.from_preset("esm-tiny", **fields)).eval()


def protein(T=10, seed=0):
    """``<cls>`` + ``T - 2`` random residues + ``<eos>``: ``(1, T)``."""
    residues = torch.randint(4, 24, (1, T - 2), generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.tensor([[CLS]]), residues, torch.tensor([[EOS]])], dim=1)


@pytest.mark.parametrize("preset", ["esm2_t6_8M_UR50D", "esm2_t12_35M_UR50D", "esm2_t30_150M_UR50D",
                                    "esm2_t33_650M_UR50D", "esm1b_t33_650M_UR50S"])
def test_presets_match_transformers_parameter_counts(preset):
    transformers = pytest.importorskip("transformers")
    c = EsmConfig.from_preset(preset)
    with torch.device("meta"):
        ours = EsmForMaskedLM(c)
        hf = transformers.EsmForMaskedLM(transformers.EsmConfig(  # the facebook checkpoints' config fields
            vocab_size=33, mask_token_id=32, pad_token_id=1, hidden_size=c.d_model, num_hidden_layers=c.n_layers,
            num_attention_heads=c.n_heads, intermediate_size=c.d_ff, position_embedding_type=c.position_embedding,
            token_dropout=True, layer_norm_eps=1e-5, emb_layer_norm_before=c.embed_norm, max_position_embeddings=1026))
    assert ours.num_parameters() == hf.num_parameters()  # tied weights counted once by both


def test_t6_8M_preset_has_7512474_parameters():
    with torch.device("meta"):
        assert EsmForMaskedLM(EsmConfig.from_preset("esm2_t6_8M_UR50D")).num_parameters() == 7_512_474  # 7,512,353 + the contact head's 6 × 20 + 1


def test_token_dropout_zeroes_masks_and_rescales_by_the_observed_mask_ratio():
    model = tiny()
    ids = protein(10)
    ids[0, 3] = ids[0, 6] = MASK
    ids = torch.cat([ids, torch.tensor([[PAD, PAD]])], dim=1)  # 10 real tokens, 2 of them <mask>
    mask = (ids != PAD).long()
    with torch.no_grad():
        x = model.embed(ids, mask.bool())
        plain = model.word_embeddings(ids)
    scale = (1 - 0.15 * 0.8) / (1 - 2 / 10)
    real = (ids != MASK) & (ids != PAD)
    torch.testing.assert_close(x[real], plain[real] * scale)
    assert x[ids == MASK].abs().max() == 0 and x[ids == PAD].abs().max() == 0


def test_token_dropout_is_applied_in_training_too():
    model = tiny()
    ids = protein(12)
    ids[0, 4] = MASK
    with torch.no_grad():
        evaluated = model(ids).last_hidden_state
        model.train()  # dropout is 0 in esm-tiny: only token dropout could differ, and it must not
        trained = model(ids).last_hidden_state
    torch.testing.assert_close(trained, evaluated)
    no_dropout = tiny(token_dropout=False)
    with torch.no_grad():
        assert not torch.allclose(no_dropout(ids).last_hidden_state, evaluated, atol=1e-3)


def test_a_row_of_masks_or_padding_alone_stays_finite():
    model = tiny(cls=EsmForMaskedLM)
    ids = torch.tensor([[MASK, MASK, MASK], [CLS, 5, EOS]])
    with torch.no_grad():
        out = model(ids, attention_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]))
    assert torch.isfinite(out.logits).all()


def test_padding_does_not_change_real_token_states():
    model = tiny()
    ids = protein(9)
    ids[0, 2] = MASK  # the mask ratio counts real tokens only
    padded = torch.cat([ids, torch.full((1, 4), PAD)], dim=1)
    mask = (padded != PAD).long()
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        out = model(padded, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(out.last_hidden_state[:, :9], alone, atol=1e-5, rtol=1e-5)
    assert all(w[..., 9:].abs().max() == 0 for w in out.attentions)  # no weight on padded keys


def test_rotary_positions_make_states_depend_on_order():
    model = tiny()
    ids = protein(8)
    with torch.no_grad():
        forward = model(ids).last_hidden_state
        backward = model(ids.flip(1)).last_hidden_state.flip(1)
    assert not torch.allclose(forward, backward, atol=1e-3)  # no position table, yet not a bag of residues


def test_masked_lm_decoder_is_tied_to_the_word_embeddings():
    model = tiny(cls=EsmForMaskedLM)
    assert model.decoder.weight is model.esm.word_embeddings.weight
    assert model.esm.pooler is None


def test_masked_lm_loss_ignores_minus_100_labels():
    model = tiny(cls=EsmForMaskedLM)
    ids = protein(10)
    labels = torch.full_like(ids, -100)
    labels[0, 4] = int(ids[0, 4])
    ids[0, 4] = MASK
    with torch.no_grad():
        out = model(ids, labels=labels)
    expected = -out.logits[0, 4].log_softmax(-1)[labels[0, 4]]
    torch.testing.assert_close(out.loss, expected)


def test_tokenizer_output_can_be_passed_whole():
    from attnkit.tokenizers import Tokenizer

    tok = Tokenizer.esm()
    batch = tok(["MKTAYIAK", "MKT"])
    model = tiny(cls=EsmForSequenceClassification)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (2, 2)


@pytest.mark.parametrize("call,message", [
    (lambda m: m(torch.tensor([1, 2, 3])), "integer tensor"),
    (lambda m: m(torch.tensor([[0, 5, 33]])), r"\[0, 33\)"),
    (lambda m: m(torch.tensor([[0, 5, 2]]), attention_mask=torch.ones(1, 4)), "attention_mask"),
    (lambda m: m(torch.tensor([[0, 5, 2]]), token_type_ids=torch.tensor([[0, 1, 1]])), "token_type_ids"),
    (lambda m: m(torch.tensor([[0, 5, 2]]), labels=torch.tensor([0, 5, 2])), "labels"),
])
def test_bad_inputs_are_input_errors(call, message):
    with pytest.raises(InputError, match=message):
        call(tiny(cls=EsmForMaskedLM))


def test_token_classifier_rejects_out_of_range_labels():
    with pytest.raises(InputError, match="labels"):
        tiny(cls=EsmForTokenClassification, num_labels=3)(protein(5), labels=torch.tensor([[-100, 0, 3, 1, -100]]))


@pytest.mark.parametrize("fields,field", [
    (dict(d_model=36, n_heads=4), "d_model"),  # head dim 9: rotary needs an even one
    (dict(token_dropout=True, mask_token_id=None), "mask_token_id"),
    (dict(mask_token_id=33), "mask_token_id"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_configs_name_the_field(fields, field):
    with pytest.raises(ConfigError, match=f"EsmConfig.{field}"):
        EsmConfig.from_preset("esm-tiny", **fields)


def test_config_json_round_trip():
    c = EsmConfig.from_preset("esm2_t12_35M_UR50D", num_labels=3, label_names=("a", "b", "c"))
    assert EsmConfig.from_json(c.to_json()) == c


def test_tiny_esm_learns_to_recover_masked_residues_of_a_repeated_motif():
    """Each protein is a random 4-residue motif repeated 5 times; 15% of the residues are masked.
    A masked residue is the one 4 positions away, which attention with rotary positions can
    find: accuracy must end far above chance (1/20)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        seq = torch.randint(4, 24, (n, 4), generator=g).repeat(1, 5)
        ids = torch.cat([torch.full((n, 1), CLS), seq, torch.full((n, 1), EOS)], dim=1)
        pick = torch.rand(ids.shape, generator=g) < 0.15
        pick[:, [0, -1]] = False
        return ids.masked_fill(pick, MASK), ids.masked_fill(~pick, -100)

    model = EsmForMaskedLM(EsmConfig.from_preset("esm-tiny"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        ids, labels = batch(32)
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids, labels = batch(256)
    with torch.no_grad():
        predicted = model.eval()(ids).logits.argmax(-1)
    picked = labels != -100
    accuracy = (predicted[picked] == labels[picked]).float().mean().item()
    assert accuracy > 0.6, accuracy


def test_masked_log_probs_mask_one_position_at_a_time():
    model = tiny(cls=EsmForMaskedLM)
    ids = torch.cat([protein(7, seed=1), torch.cat([protein(5, seed=2), torch.full((1, 2), PAD)], dim=1)])
    mask = (ids != PAD).long()
    lp = model.masked_log_probs(ids, mask, batch_size=3)  # batches cut across rows
    assert lp.shape == (2, 7, 33) and lp[1, 5:].abs().max() == 0
    for b, t in [(0, 0), (0, 3), (1, 2), (1, 4)]:
        row = ids[b:b + 1, : int(mask[b].sum())].clone()
        row[0, t] = MASK
        with torch.no_grad():
            expected = model(row).logits[0, t].log_softmax(-1)
        torch.testing.assert_close(lp[b, t], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lp[mask.bool()].exp().sum(-1), torch.ones(12))
