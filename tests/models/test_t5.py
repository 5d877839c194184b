"""T5 against the paper's parameter arithmetic, transformers' relative position bias, its own
uncached computation (cached decoding, the bias of a cached step) and the formulas of its head
and loss. Checkpoint parity with transformers is in tests/interop/test_t5_interop.py."""

import pytest
import torch

from attnkit import ConfigError, InputError
from attnkit.models.t5 import T5, T5Config

TINY = dict(vocab_size=60, d_model=32, head_dim=12, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
            num_buckets=8, max_distance=20, dropout=0.0)
FLAN = dict(activation="geglu_tanh", tie_word_embeddings=False)


def tiny(**overrides) -> T5:
    model = T5(T5Config(**{**TINY, **overrides})).eval()
    spread_weights(model.named_parameters(), "norm", "position_bias", ("out_proj.weight", "fc_out.weight"), "embed.weight")
    return model


@torch.no_grad()
def spread_weights(named_parameters, norm: str, position_bias: str, outputs: tuple[str, ...], embedding: str) -> None:
    """Spread a T5's weights, named by the given name parts, so that its outputs depend on the
    whole input (with its unit-variance, tied embeddings a random T5 mostly repeats its input
    token): norm weights around 1, a stronger position bias and sublayer outputs, weaker embeddings."""
    for name, p in named_parameters:
        if norm in name:
            p.normal_(1.0, 0.5)
        elif position_bias in name:
            p.mul_(5.0)
        elif name.endswith(outputs):
            p.mul_(4.0)
        elif name == embedding:
            p.mul_(0.2)


def padded_batch(B=3, S=8, vocab=60):
    src = torch.randint(2, vocab, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, :2] = 0
    return src.masked_fill(mask == 0, 0), mask


# -- sizes ---------------------------------------------------------------------------------------

def t5_param_count(V, d, d_kv, H, d_ff, L_enc, L_dec, gated, tied, buckets=32):
    """Raffel et al. 2020 §2.1 / §3.2: one embedding matrix (plus a head unless tied); per layer
    attention q, k, v, o of d × H·d_kv, a feed-forward of 2 (gated: 3) d × d_ff matrices, one
    scale-only norm per sublayer; a final norm and a (buckets × H) relative bias per stack."""
    attn, ffn = 4 * d * H * d_kv, (3 if gated else 2) * d * d_ff
    encoder = L_enc * (attn + ffn + 2 * d) + d + buckets * H
    decoder = L_dec * (2 * attn + ffn + 3 * d) + d + buckets * H
    return V * d * (1 if tied else 2) + encoder + decoder


@pytest.mark.parametrize("preset, shape, released", [
    ("t5-small", (512, 64, 8, 2048, 6, 6, False, True), 60_506_624),
    ("t5-base", (768, 64, 12, 3072, 12, 12, False, True), 222_903_552),
    ("t5-large", (1024, 64, 16, 4096, 24, 24, False, True), 737_668_096),
    ("flan-t5-small", (512, 64, 6, 1024, 8, 8, True, False), 76_961_152),
    ("flan-t5-base", (768, 64, 12, 2048, 12, 12, True, False), 247_577_856),
])
def test_presets_have_the_released_checkpoints_parameter_counts(preset, shape, released):
    config = T5Config.from_preset(preset)
    with torch.device("meta"):
        model = T5(config)
    assert model.num_parameters() == t5_param_count(32128, *shape) == released


def test_config_json_round_trip_and_validation_errors_name_the_field():
    config = T5Config.from_preset("flan-t5-small")
    assert T5Config.from_json(config.to_json()) == config
    for fields, name in [(dict(head_dim=0), "head_dim"), (dict(activation="geglu"), "activation"),
                         (dict(num_buckets=2), "num_buckets"), (dict(max_distance=16), "max_distance"),
                         (dict(dropout=1.0), "dropout"), (dict(eos_token_id=32128), "eos_token_id")]:
        with pytest.raises(ConfigError, match=rf"T5Config\.{name}"):
            T5Config(**fields)
    with pytest.raises(ConfigError, match="'relu', 'gelu'"):  # the allowed values
        T5Config(activation="gelu_fast")


# -- head, loss ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, tied, scale", [({}, True, 32 ** -0.5), (FLAN, False, 1.0),
                                                    (dict(FLAN, tie_word_embeddings=True, scale_decoder_outputs=False), True, 1.0)])
def test_lm_head_is_tied_and_scaled_as_configured(overrides, tied, scale):
    """T5 v1.0: logits = (d_model^-1/2 · h) Eᵀ with E the embeddings; v1.1: h Wᵀ with W its own."""
    model = tiny(**overrides)
    assert (model.lm_head.weight is model.embed.weight) == tied
    src, mask = padded_batch()
    with torch.no_grad():
        out = model(src, mask, decoder_input_ids=torch.randint(2, 60, (3, 4)))
    torch.testing.assert_close(out.logits, (out.last_hidden_state * scale) @ model.lm_head.weight.T)


def test_labels_are_shifted_right_after_the_pad_token_and_ignored_labels_are_left_out_of_the_loss():
    model = tiny()
    src, mask = padded_batch()
    labels = torch.randint(2, 60, (3, 5))
    labels[1, 3:] = -100
    with torch.no_grad():
        out = model(src, mask, labels=labels)
        shifted = torch.cat([torch.zeros(3, 1, dtype=torch.long), labels[:, :-1].clamp(min=0)], dim=1)
        explicit = model(src, mask, decoder_input_ids=shifted).logits
    torch.testing.assert_close(out.logits, explicit)
    keep = labels != -100
    expected = -out.logits.log_softmax(-1)[keep].gather(-1, labels[keep][:, None]).mean()
    torch.testing.assert_close(out.loss, expected)


# -- relative positions and cached decoding --------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [True, False])
def test_position_bias_of_a_cached_step_equals_transformers_compute_bias(bidirectional):
    """Queries at positions past ... past + T - 1 against keys 0 ... S - 1, as T5Attention.compute_bias
    with past_seen_tokens (the decoder's bias while decoding with a cache)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    config = transformers.T5Config(d_model=32, num_heads=4, relative_attention_num_buckets=8,
                                   relative_attention_max_distance=20, is_decoder=not bidirectional)
    theirs = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
    model = tiny()
    ours = model.encoder_position_bias if bidirectional else model.decoder_position_bias
    with torch.no_grad():
        theirs.relative_attention_bias.weight.copy_(ours.embedding.weight)
        for T, S in [(1, 1), (1, 17), (3, 40), (40, 40)]:
            torch.testing.assert_close(ours(T, S), theirs.compute_bias(T, S, past_seen_tokens=S - T), rtol=0, atol=0)
        assert torch.equal(ours(1, 40)[..., 0, :], ours(40, 40)[..., -1, :])  # cached step = last row uncached


@pytest.mark.parametrize("overrides", [{}, FLAN])
def test_cached_decoding_matches_full_recompute(overrides):
    model = tiny(**overrides)
    src, mask = padded_batch()
    out = model.generate(src, attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(out[:, 0], torch.zeros(3, dtype=torch.long))  # decoding starts from the pad token
    with torch.no_grad():
        full = model(src, mask, decoder_input_ids=out[:, :-1]).logits
        memory = model.encode(src, mask).last_hidden_state
        cache = model.decoder.new_cache(10)
        steps = [model.decode(out[:, t:t + 1], memory, mask, cache=cache).logits for t in range(10)]
    assert torch.equal(full.argmax(-1), out[:, 1:])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert len(set(out[:, 1:].flatten().tolist())) > 3


def test_stream_and_packed_weights_give_the_tokens_of_generate():
    model = tiny(**FLAN)
    src, mask = padded_batch()
    expected = model.generate(src, attention_mask=mask, max_new_tokens=8, pack_weights=False)
    streamed = torch.stack(list(model.stream(src, attention_mask=mask, max_new_tokens=8)), dim=1)
    assert torch.equal(streamed, expected[:, 1:1 + streamed.shape[1]])
    assert torch.equal(model.generate(src, attention_mask=mask, max_new_tokens=8, pack_weights=True), expected)


def test_beam_search_projects_each_source_once_for_cross_attention():
    model = tiny(**FLAN)
    src, mask = padded_batch()
    rows = []
    hook = model.decoder.layers[0].cross_attn.kv_proj.register_forward_hook(lambda m, a, out: rows.append(a[0].shape[0]))
    try:
        out = model.generate(src, attention_mask=mask, max_new_tokens=5, num_beams=3, num_return_sequences=3)
    finally:
        hook.remove()
    assert rows == [src.shape[0]] and out.shape[0] == 3 * src.shape[0]


def test_bad_inputs_are_input_errors():
    model = tiny()
    with pytest.raises(InputError, match="vocab_size"):
        model(torch.tensor([[3, 60]]), decoder_input_ids=torch.tensor([[0]]))
    with pytest.raises(InputError, match="decoder_input_ids or labels"):
        model(torch.tensor([[3]]))
    with pytest.raises(InputError, match="attention_mask"):
        model(torch.tensor([[3, 4]]), torch.tensor([[0.5, 1.0]]), decoder_input_ids=torch.tensor([[0]]))
