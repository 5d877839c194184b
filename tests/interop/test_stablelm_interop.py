"""StableLM against `transformers`' StableLmForCausalLM with identical weights, both directions:
LayerNorms with biases (and no biases on the linear layers), half of each head rotated, q/k/v
biases (StableLM 2), and parallel sublayers under one norm."""


import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

STABLELM = dict(layer_norm_eps=1e-5, use_qkv_bias=True, pad_token_id=0,
                rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.5})


@pytest.mark.parametrize("parallel", [False, True])
def test_stablelm_gives_transformers_logits_loss_and_gradients(tmp_path, parallel):
    hf = hf_model(tmp_path, "StableLm", **STABLELM, use_parallel_residual=parallel)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.StableLm and c.norm == "layernorm" and c.norm_bias and not c.bias
    assert c.qkv_bias and c.rotary_dim == 4 and c.parallel_residual is parallel
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    assert (ours.attn_norm.bias.grad - theirs.input_layernorm.bias.grad).abs().max() < 1e-4
    assert (model.decoder.norm.bias.grad - hf.model.norm.bias.grad).abs().max() < 1e-4
    q_bias = torch.cat([getattr(theirs.self_attn, f"{x}_proj").bias.grad for x in "qkv"])
    assert (ours.attn.qkv_proj.bias.grad - q_bias).abs().max() < 1e-4
    with torch.no_grad():  # each feature matters
        ref = hf(ids).logits
        for change in [dict(rotary_dim=None), dict(norm_bias=False), dict(qkv_bias=False)]:
            other = attnkit.StableLm(c.replace(**change))
            other.load_state_dict(model.state_dict(), strict=False)
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_stablelm_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "StableLm", **STABLELM)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_per_head_query_key_norms_are_refused(tmp_path):
    hf_model(tmp_path, "StableLm", **STABLELM, qk_layernorm=True)
    with pytest.raises(ConfigError, match="qk_layernorm"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields,count", [
    ("stablelm-3b-4e1t", {}, 2_795_443_200),
    ("stablelm-2-1.6b", dict(vocab_size=100352, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                             num_attention_heads=32, num_key_value_heads=32, use_qkv_bias=True), 1_644_515_328)])
def test_stablelm_presets_have_transformers_parameter_counts(preset, hf_fields, count):
    with torch.device("meta"):
        ours = attnkit.StableLm(attnkit.StableLmConfig.from_preset(preset))
        theirs = transformers.StableLmForCausalLM(transformers.StableLmConfig(**hf_fields))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == count
