"""T5 parity: random transformers ``T5ForConditionalGeneration`` checkpoints (T5 v1.0: ReLU,
LM head tied to the embeddings and fed d_model^-1/2 · h; v1.1 / Flan-T5: gated GELU, a head of
its own, no scaling) load into attnkit's T5 with the same logits, loss, hidden states, attention
weights and generated tokens, and attnkit saves what transformers loads."""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

import attnkit
from attnkit import ConfigError
from attnkit.models.t5 import T5, T5Config
from tests.interop.test_marian import frequent_token
from tests.models.test_t5 import spread_weights

transformers = pytest.importorskip("transformers")
V, D = 99, 32
# Which checkpoint: T5 v1.0; Flan-T5 as transformers 5 saves it (tie_word_embeddings: true,
# scale_decoder_outputs: false and its own lm_head.weight); Flan-T5 as released (tie_word_embeddings: false).
VARIANTS = {"v1.0": dict(feed_forward_proj="relu"),
            "flan-hf5": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
            "flan-released": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)}


def random_t5(tmp_path, variant="v1.0", seed=0, **overrides):
    """A small T5ForConditionalGeneration saved to ``tmp_path``, d_kv (12) unlike d_model / heads
    (8), its weights spread so that outputs depend on the input; the Flan variants get an LM
    head of their own."""
    torch.manual_seed(seed)
    fields = dict(vocab_size=V, d_model=D, d_kv=12, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                  relative_attention_max_distance=20, dropout_rate=0.0, decoder_start_token_id=0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**fields, **VARIANTS[variant], **overrides)).eval()
    spread_weights(hf.named_parameters(), "layer_norm", "relative_attention_bias", (".o.weight", ".wo.weight"),
                   "shared.weight")
    if variant != "v1.0":
        hf.lm_head.weight = torch.nn.Parameter(torch.randn(V, D) * 0.5)
    if variant == "flan-released":
        hf.config.tie_word_embeddings = False
    hf.save_pretrained(tmp_path)
    return hf


def padded_source(B=3, S=9):
    """Source ids with a right-padded and a left-padded row (relative positions allow both)."""
    src = torch.randint(2, V, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, :3] = 0
    return src.masked_fill(mask == 0, 0), mask


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_loss_and_encoder_states_match_transformers(tmp_path, variant):
    hf = random_t5(tmp_path, variant, num_decoder_layers=3)
    model = attnkit.from_pretrained(tmp_path)
    assert isinstance(model, T5)
    v10 = variant == "v1.0"
    assert (model.lm_head.weight is model.embed.weight) == v10 and model.config.scales_decoder_outputs == v10
    src, mask = padded_source()
    dec = torch.randint(2, V, (3, 7))
    dec_mask = torch.ones(3, 7, dtype=torch.long)
    dec_mask[0, 5:] = 0
    labels = torch.randint(2, V, (3, 6))
    labels[1, 4:] = -100
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        out = model(src, mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        ref_loss = hf(input_ids=src, attention_mask=mask, labels=labels).loss
        loss = model(src, mask, labels=labels).loss
    assert max_diff(out.logits, ref.logits) <= 1e-4
    assert max_diff(out.encoder_last_hidden_state, ref.encoder_last_hidden_state) <= 1e-4
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)


def test_attentions_and_hidden_states_of_every_kind_equal_transformers(tmp_path):
    random_t5(tmp_path, "flan-hf5", num_decoder_layers=3)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    dec = torch.randint(2, V, (3, 5))
    kw = dict(decoder_input_ids=dec, output_attentions=True, output_hidden_states=True)
    with torch.no_grad():
        ref, out = hf(input_ids=src, attention_mask=mask, **kw), model(src, mask, **kw)
    for name, n in [("encoder_attentions", 2), ("decoder_attentions", 3), ("cross_attentions", 3),
                    ("encoder_hidden_states", 3), ("decoder_hidden_states", 4)]:
        ours, theirs = getattr(out, name), getattr(ref, name)
        assert len(ours) == len(theirs) == n, name
        for a, b in zip(ours, theirs):
            assert max_diff(a, b) <= 1e-4, name


@pytest.mark.parametrize("variant, seed", [("v1.0", 0), ("v1.0", 1), ("flan-hf5", 0), ("flan-hf5", 2)])
def test_greedy_and_beam_search_return_transformers_tokens(tmp_path, variant, seed):
    hf = random_t5(tmp_path, variant, seed=seed)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    greedy = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=12, do_sample=False)
    assert torch.equal(model.generate(src, attention_mask=mask, max_new_tokens=12), greedy)
    assert len(set(greedy[:, 1:].flatten().tolist())) > 3  # not one repeated token
    eos = frequent_token(hf, src, mask)
    kw = dict(num_beams=4, max_new_tokens=12, eos_token_id=eos)
    expected = hf.generate(input_ids=src, attention_mask=mask, **kw)
    # transformers' beam search fills finished rows with `pad_token_id or eos`: EOS, since T5's pad is id 0.
    assert torch.equal(model.generate(src, attention_mask=mask, pad_token_id=eos, **kw), expected)
    assert (expected[:, 1:-1] == eos).any()  # hypotheses really finish early


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_decoder_prompt_is_continued_as_transformers_does(tmp_path, num_beams):
    """``decoder_input_ids`` in generate: the output starts with the prompt and max_length counts it."""
    hf = random_t5(tmp_path, "v1.0", seed=1)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    prompt = torch.tensor([[0, 17, 23]] * src.shape[0])
    kw = dict(num_beams=num_beams, max_length=10, eos_token_id=None)
    expected = hf.generate(input_ids=src, attention_mask=mask, decoder_input_ids=prompt, do_sample=False, **kw)
    assert expected.shape == (src.shape[0], 10) and torch.equal(expected[:, :3], prompt)
    assert torch.equal(model.generate(src, attention_mask=mask, decoder_input_ids=prompt, **kw), expected)


@pytest.mark.parametrize("kw", [dict(temperature=0.8, top_k=20, top_p=0.9), dict(num_beams=2, top_k=10)])
def test_seeded_sampling_equals_transformers_with_the_same_seed(tmp_path, kw):
    hf = random_t5(tmp_path, "flan-hf5", seed=1)
    model = attnkit.from_pretrained(tmp_path)
    src, mask = padded_source()
    kw = dict(kw, do_sample=True, max_new_tokens=10)
    torch.manual_seed(123)
    expected = hf.generate(input_ids=src, attention_mask=mask, **kw)
    torch.manual_seed(123)
    assert torch.equal(model.generate(src, attention_mask=mask, pad_token_id=1, **kw), expected)


def test_generation_config_of_the_checkpoint_is_honoured(tmp_path):
    hf = random_t5(tmp_path, "v1.0", seed=1)
    hf.generation_config.update(num_beams=3, max_length=9, no_repeat_ngram_size=2, length_penalty=0.6)
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert model.generation_config.num_beams == 3
    src, mask = padded_source()
    expected = hf.generate(input_ids=src, attention_mask=mask)
    assert expected.shape[1] == 9
    assert torch.equal(model.generate(src, attention_mask=mask), expected)


@pytest.mark.parametrize("preset, overrides", [("t5-tiny", {}),
                                               ("t5-tiny", dict(activation="geglu_tanh", tie_word_embeddings=False))])
def test_attnkit_t5_round_trips_through_transformers(tmp_path, preset, overrides):
    config = T5Config.from_preset(preset, head_dim=6, n_decoder_layers=3, **overrides)
    model = T5(config).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "t5" and saved["architectures"] == ["T5ForConditionalGeneration"]
    hf, info = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    src = torch.randint(2, 256, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    dec = torch.randint(2, 256, (2, 5))
    with torch.no_grad():
        assert max_diff(hf.eval()(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits,
                        model(src, mask, decoder_input_ids=dec).logits) <= 1e-4
    hf.save_pretrained(tmp_path / "back")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = attnkit.from_pretrained(tmp_path / "back")
    # transformers 5 writes tie_word_embeddings: true for every T5: an untied head is read from the weights
    stale = [w for w in caught if "differ from the attnkit block" in str(w.message)]
    assert len(stale) == (not config.tie_word_embeddings)
    assert again.config == config
    assert again.state_dict().keys() == model.state_dict().keys()
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("variant", ["v1.0", "flan-released"])
def test_transformers_checkpoint_round_trips_through_attnkit(tmp_path, variant):
    random_t5(tmp_path / "hf", variant)
    model = attnkit.from_pretrained(tmp_path / "hf")
    model.save_pretrained(tmp_path / "ours")
    hf_keys = set(load_file(tmp_path / "hf" / "model.safetensors"))
    assert set(load_file(tmp_path / "ours" / "model.safetensors")) == hf_keys
    again = attnkit.from_pretrained(tmp_path / "ours")
    assert again.config == model.config
    src, mask = padded_source()
    dec = torch.randint(2, V, (3, 4))
    with torch.no_grad():
        assert torch.equal(again(src, mask, decoder_input_ids=dec).logits, model(src, mask, decoder_input_ids=dec).logits)


def test_tied_copies_and_the_unused_cross_attention_bias_of_old_checkpoints_load(tmp_path):
    """Older transformers wrote the tied embeddings under every name, and a relative bias for
    block 0's cross-attention that T5 never uses."""
    hf = random_t5(tmp_path, "v1.0")
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        state[name] = state["shared.weight"].clone()
    state["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.randn(8, 4)
    save_file(state, path, metadata={"format": "pt"})
    model = attnkit.from_pretrained(tmp_path)
    assert model.lm_head.weight is model.embed.weight
    src, mask = padded_source()
    dec = torch.randint(2, V, (3, 4))
    with torch.no_grad():
        assert max_diff(model(src, mask, decoder_input_ids=dec).logits,
                        hf(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits) <= 1e-4


@pytest.mark.parametrize("field, value", [("feed_forward_proj", "gated-tanh"), ("feed_forward_proj", "gelu_fast")])
def test_unsupported_feed_forward_proj_is_a_config_error_naming_the_allowed_values(tmp_path, field, value):
    random_t5(tmp_path, "v1.0")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(ConfigError, match=rf"{field} '{value}' is not supported by attnkit's T5; supported: .*'gated-gelu'"):
        attnkit.from_pretrained(tmp_path)
