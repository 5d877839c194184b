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


GRANITE_MOE = dict(GRANITE, num_local_experts=4, num_experts_per_tok=2, intermediate_size=16)


def test_granitemoe_gives_transformers_logits_loss_and_gradients(tmp_path):
    """GraniteMoE: the multipliers with 4 experts, 2 per token, stacked gate-then-up in
    ``input_linear``."""
    hf = hf_model(tmp_path, "GraniteMoe", **GRANITE_MOE)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.GraniteMoe and c.n_experts == 4 and c.d_ff == 16 and c.residual_multiplier == 0.22
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1].ffn, hf.model.layers[1].block_sparse_moe
    assert (ours.router.weight.grad - theirs.router.weight.grad).abs().max() < 1e-4
    gate_up = theirs.experts.gate_up_proj.grad  # (E, 2 · d_ff, d_model): gate, then up
    for j in [j for j in range(4) if ours.experts[j].fc_gate.weight.grad is not None]:
        assert (torch.cat([ours.experts[j].fc_gate.weight.grad, ours.experts[j].fc_in.weight.grad]) - gate_up[j]
                ).abs().max() < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_granitemoe_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "GraniteMoe", **GRANITE_MOE)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)
