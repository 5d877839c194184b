"""Arcee, Nemotron and Ministral against `transformers`' ArceeForCausalLM, NemotronForCausalLM
and MinistralForCausalLM with identical weights, both directions. Arcee: a squared-ReLU
feed-forward without a gate. Nemotron: the same, LayerNorms with biases whose weights are offsets
from 1, half of each head rotated. Ministral: Mistral's window on the layers ``layer_types``
names."""


import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

FAMILIES = {
    "Arcee": dict(head_dim=8, pad_token_id=0),
    "Nemotron": dict(norm_eps=1e-5, pad_token_id=0,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.5}),
    "Ministral": dict(head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"],
                      pad_token_id=0),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_gives_transformers_logits_loss_and_gradients(tmp_path, family):
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is getattr(attnkit, family)
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    if family != "Ministral":
        assert c.activation == "relu2" and ours.ffn.fc_gate is None
        assert (ours.ffn.fc_in.weight.grad - theirs.mlp.up_proj.weight.grad).abs().max() < 1e-4
    changes = {"Arcee": [dict(activation="relu")], "Ministral": [dict(sliding_layers=(0, 1))],
               "Nemotron": [dict(rotary_dim=None), dict(norm="layernorm")]}[family]
    if family == "Nemotron":
        assert c.norm == "layernorm_offset" and c.norm_bias and c.rotary_dim == 4
        assert (ours.attn_norm.bias.grad - theirs.input_layernorm.bias.grad).abs().max() < 1e-4
        assert (ours.attn_norm.weight.grad - theirs.input_layernorm.weight.grad).abs().max() < 1e-4
    if family == "Ministral":
        assert c.window_layers == (0,) and c.sliding_window == 4
    with torch.no_grad():  # each feature matters
        ref = hf(ids).logits
        for change in changes:
            other = getattr(attnkit, family)(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, family, num_beams):
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_attention_biases_without_feed_forward_biases_are_refused(tmp_path):
    hf_model(tmp_path, "Arcee", head_dim=8, attention_bias=True)
    with pytest.raises(ConfigError, match="attention_bias and mlp_bias differ"):
        attnkit.from_pretrained(tmp_path)
