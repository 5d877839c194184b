"""Phi-1/1.5/2 against `transformers`' PhiForCausalLM with identical weights, both directions:
parallel sublayers on one shared LayerNorm, partial rotary embeddings, biases everywhere (the LM
head's too)."""

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

# 4 heads of 8, a quarter of each rotated (Phi-2: 32 of 80).
PHI = dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
           hidden_act="gelu_new", layer_norm_eps=1e-5, num_key_value_heads=4)


def test_phi_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Phi", **PHI)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Phi and c.rotary_dim == 4 and c.shared_norm and c.lm_head_bias
    layer = model.decoder.layers[1]
    assert layer.ffn_norm is None and model.lm_head.bias is not None
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = layer, hf.model.layers[1]
    for a, b in [(model.lm_head, hf.lm_head), (ours.attn_norm, theirs.input_layernorm),
                 (ours.ffn.fc_in, theirs.mlp.fc1), (ours.attn.out_proj, theirs.self_attn.dense)]:
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-4 and (a.bias.grad - b.bias.grad).abs().max() < 1e-4
    with torch.no_grad():  # sequential sublayers, or a head without its bias, give other logits
        ref = hf(ids).logits
        other = attnkit.Phi(c.replace(parallel_residual=False, shared_norm=False))
        assert other.load_state_dict(model.state_dict(), strict=False).missing_keys  # the second norm
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["lm_head.bias"].zero_()
        same = attnkit.Phi(c)
        same.load_state_dict(state)
        assert (same(ids).logits - ref).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_phi_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Phi", **PHI)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_phi_2_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.Phi(attnkit.PhiConfig.from_preset("phi-2"))
        theirs = transformers.PhiForCausalLM(transformers.PhiConfig(
            hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, partial_rotary_factor=0.4))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 2_779_683_840
