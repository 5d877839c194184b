"""GLM-4 (``glm``) and GLM-4-0414 (``glm4``) against `transformers`' GlmForCausalLM and
Glm4ForCausalLM with identical weights: half of each head rotated in interleaved pairs, q/k/v
biases, the fused gate/up matrix, and GLM-4-0414's output norms."""

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

GLM = dict(head_dim=8, pad_token_id=0, eos_token_id=2, attention_bias=True,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})


@pytest.mark.parametrize("family", ["Glm", "Glm4"])
def test_glm_gives_transformers_logits_loss_and_gradients(tmp_path, family):
    hf = hf_model(tmp_path, family, **GLM)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is getattr(attnkit, family) and c.rotary_dim == 4 and c.rope_interleave and c.qkv_bias
    assert c.sandwich_norm == (family == "Glm4")
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    gate_up = theirs.mlp.gate_up_proj.weight.grad  # gate rows, then up rows
    assert (torch.cat([ours.ffn.fc_gate.weight.grad, ours.ffn.fc_in.weight.grad]) - gate_up).abs().max() < 1e-4
    if family == "Glm4":
        assert (ours.ffn_post_norm.weight.grad - theirs.post_mlp_layernorm.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # the interleaved pairs and the rotated share matter
        ref = hf(ids).logits
        for change in (dict(rope_interleave=False), dict(rotary_dim=None)):
            other = type(model)(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("family", ["Glm", "Glm4"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_glm_generation_equals_transformers_on_a_left_padded_batch(tmp_path, family, num_beams):
    hf = hf_model(tmp_path, family, **GLM)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)
