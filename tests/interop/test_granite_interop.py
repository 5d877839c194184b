"""Granite against `transformers`' GraniteForCausalLM with identical weights, both directions:
Llama's layers with scaled embeddings, residual branches, attention scores and logits."""

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

# Granite 3's multipliers (the attention's is its score scale: 1/128 there, 1/8 here for 8-wide heads
# would be the default, so another value).
GRANITE = dict(embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=8.0, attention_multiplier=0.05)


def test_granite_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Granite", **GRANITE)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Granite and (c.embedding_multiplier, c.residual_multiplier, c.logits_scaling) == (
        12.0, 0.22, 8.0) and c.attn_scale_dim == pytest.approx(400.0)
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    assert (model.wte.weight.grad - hf.model.embed_tokens.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # each multiplier matters
        ref = hf(ids).logits
        for field in ("embedding_multiplier", "residual_multiplier", "logits_scaling", "attn_scale_dim"):
            other = attnkit.Granite(c.replace(**{field: None if field == "attn_scale_dim" else 1.0}))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, field
        out = model(ids, output_hidden_states=True)  # the last hidden state is the head's input before the division
        assert (out.last_hidden_state - hf(ids, output_hidden_states=True).hidden_states[-1]).abs().max() < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_granite_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Granite", **GRANITE)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)
