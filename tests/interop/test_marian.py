"""MarianMT parity: a random transformers ``MarianMTModel`` loads into attnkit's Transformer
with the same logits and the same beam-search tokens, and attnkit saves what transformers loads."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from attnkit.models.transformer import Transformer, TransformerConfig

transformers = pytest.importorskip("transformers")
PAD, EOS = 98, 0


def random_marian(tmp_path, seed=0, **overrides):
    """A small MarianMTModel (init_std large enough for input-dependent outputs), saved to ``tmp_path``."""
    torch.manual_seed(seed)
    fields = dict(vocab_size=99, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                  pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=EOS, forced_eos_token_id=None,
                  scale_embedding=True, activation_function="swish", init_std=0.3)
    hf = transformers.MarianMTModel(transformers.MarianConfig(**{**fields, **overrides})).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_(0.0, 0.5)
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    hf.save_pretrained(tmp_path)
    return hf


def frequent_token(hf, src, mask):
    """A token greedy decoding emits, used as EOS so that beams really finish early."""
    out = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=8, num_beams=1)[:, 1:]
    return int(out.flatten().mode().values)


def padded_source(B=3, S=9):
    src = torch.randint(1, PAD, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    return src.masked_fill(mask == 0, PAD), mask


@pytest.mark.parametrize("overrides", [{}, {"scale_embedding": False, "activation_function": "gelu"},
                                       {"activation_function": "relu", "share_encoder_decoder_embeddings": False,
                                        "tie_word_embeddings": False}])
def test_logits_match_transformers_on_padded_batch(tmp_path, overrides):
    hf = random_marian(tmp_path, **overrides)
    model = attnkit.from_pretrained(tmp_path)
    assert isinstance(model, Transformer) and model.config.sinusoid_layout == "split"
    src, mask = padded_source()
    dec = torch.randint(1, PAD, (3, 7))
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask, decoder_input_ids=dec)
        out = model(src, mask, decoder_input_ids=dec)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=0)
    real = mask.bool()
    torch.testing.assert_close(out.encoder_last_hidden_state[real], ref.encoder_last_hidden_state[real],
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("seed, length_penalty", [(0, 1.0), (3, 0.6), (4, 0.6), (2, 2.0)])
def test_beam_search_returns_transformers_tokens(tmp_path, seed, length_penalty):
    hf = random_marian(tmp_path, seed=seed)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    eos = frequent_token(hf, src, mask)
    kw = dict(num_beams=4, length_penalty=length_penalty, max_new_tokens=12, eos_token_id=eos)
    expected = hf.generate(input_ids=src, attention_mask=mask, **kw)
    got = model.generate(src, attention_mask=mask, pad_token_id=PAD, **kw)
    assert torch.equal(got, expected)
    assert (expected[:, 1:] == eos).any()  # hypotheses really finish early
    greedy = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=12, num_beams=1, do_sample=False)
    assert torch.equal(model.generate(src, attention_mask=mask, max_new_tokens=12, eos_token_id=EOS,
                                      pad_token_id=PAD), greedy)


def test_attnkit_model_round_trips_to_transformers(tmp_path):
    config = TransformerConfig(vocab_size=99, n_positions=64, d_model=16, n_heads=4, d_ff=32, n_encoder_layers=2,
                               n_decoder_layers=3, activation="silu", sinusoid_layout="split", final_logits_bias=True,
                               pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None, decoder_start_token_id=PAD)
    model = Transformer(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "marian" and saved["architectures"] == ["MarianMTModel"]
    hf, info = transformers.MarianMTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    src, mask = padded_source()
    dec = torch.randint(1, PAD, (3, 5))
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits,
                                   model(src, mask, decoder_input_ids=dec).logits, atol=1e-4, rtol=0)
    hf.save_pretrained(tmp_path / "back")
    again = attnkit.from_pretrained(tmp_path / "back")
    assert again.config.replace(label_smoothing=config.label_smoothing, dropout=config.dropout) == config
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_paper_transformer_saves_in_attnkit_layout(tmp_path):
    """The paper's variant (interleaved sinusoids, no logits bias) has no Marian equivalent:
    it is saved with attnkit's names and loads back exactly."""
    model = Transformer(TransformerConfig.from_preset("transformer-tiny")).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "attnkit"
    again = attnkit.from_pretrained(tmp_path)
    assert again.config == model.config
    src = torch.randint(3, 256, (2, 5))
    dec = torch.randint(3, 256, (2, 4))
    with torch.no_grad():
        assert torch.equal(model(src, decoder_input_ids=dec).logits, again(src, decoder_input_ids=dec).logits)


def test_unsupported_marian_config_is_a_config_error(tmp_path):
    random_marian(tmp_path, decoder_ffn_dim=64)
    with pytest.raises(ConfigError, match="decoder_ffn_dim"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("kw", [dict(temperature=0.8, top_k=20, top_p=0.9), dict(num_beams=2, top_k=10)])
def test_seeded_sampling_equals_transformers_with_the_same_seed(tmp_path, kw):
    hf = random_marian(tmp_path, seed=3)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(kw, do_sample=True, max_new_tokens=10, eos_token_id=frequent_token(hf, src, mask))
    torch.manual_seed(123)
    expected = hf.generate(input_ids=src, attention_mask=mask, **kw)
    torch.manual_seed(123)
    assert torch.equal(model.generate(src, attention_mask=mask, pad_token_id=PAD, **kw), expected)


@pytest.mark.parametrize("kw", [dict(num_beams=1), dict(num_beams=4, length_penalty=0.6),
                                dict(num_beams=1, do_sample=True, top_k=20), dict(num_beams=2, do_sample=True)])
def test_forced_eos_of_marian_checkpoints_ends_long_hypotheses_as_transformers_does(tmp_path, kw):
    """OPUS-MT configs set forced_eos_token_id (MarianConfig's default): a hypothesis still running
    at max_new_tokens ends with EOS."""
    hf = random_marian(tmp_path, seed=1, forced_eos_token_id=EOS)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.forced_eos_token_id == EOS
    src, mask = padded_source()
    kw = dict(kw, max_new_tokens=4)
    torch.manual_seed(7)
    expected = hf.generate(input_ids=src, attention_mask=mask, **kw)
    torch.manual_seed(7)
    got = model.generate(src, attention_mask=mask, **kw)
    assert torch.equal(got, expected) and (got[:, -1] == EOS).all()
    torch.manual_seed(7)
    unforced = model.generate(src, attention_mask=mask, forced_eos_token_id=None, **kw)
    assert not (unforced[:, -1] == EOS).all()  # what forcing changed
    model.save_pretrained(tmp_path / "again")
    assert attnkit.from_pretrained(tmp_path / "again").config.forced_eos_token_id == EOS


def test_decoder_fills_its_positions_exactly_as_transformers_does(tmp_path):
    """The start token and every new token but the last are fed: n_positions new tokens fit."""
    hf = random_marian(tmp_path, max_position_embeddings=10)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    for kw in (dict(num_beams=1), dict(num_beams=3)):
        expected = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=10, eos_token_id=None, **kw)
        got = model.generate(src, attention_mask=mask, max_new_tokens=10, eos_token_id=None, pad_token_id=PAD, **kw)
        assert got.shape[1] == 11 and torch.equal(got, expected)
    with pytest.raises(attnkit.InputError, match="cannot decode 11 new tokens"):
        model.generate(src, attention_mask=mask, max_new_tokens=11)


def test_attentions_and_hidden_states_of_every_kind_equal_transformers(tmp_path):
    random_marian(tmp_path)
    hf = transformers.MarianMTModel.from_pretrained(tmp_path, attn_implementation="eager").eval()  # returns weights
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    dec = torch.randint(1, PAD, (3, 5))
    kw = dict(decoder_input_ids=dec, output_attentions=True, output_hidden_states=True)
    with torch.no_grad():
        ref, out = hf(input_ids=src, attention_mask=mask, **kw), model(src, mask, **kw)
    real_sources = {"encoder_attentions": mask.bool()[:, None, :, None], "encoder_hidden_states": mask.bool()[..., None]}
    for name, n in [("encoder_attentions", 2), ("decoder_attentions", 2), ("cross_attentions", 2),
                    ("encoder_hidden_states", 3), ("decoder_hidden_states", 3)]:
        ours, theirs = getattr(out, name), getattr(ref, name)
        assert len(ours) == len(theirs) == n, name
        for a, b in zip(ours, theirs):  # padded queries: zeros here, uniform rows in transformers
            assert ((a - b).abs() * real_sources.get(name, True)).max() <= 1e-4, name
