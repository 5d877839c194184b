"""OLMo 3 against `transformers`' Olmo3ForCausalLM with identical weights, both directions: OLMo 2's
layers with a sliding window on three layers of four, and RoPE per layer type (YaRN scaling on the
global layers only)."""

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

# 4 layers: 0-2 slide over 4 positions with a base of 1,000; layer 3 is global, YaRN-scaled.
OLMO3 = dict(num_hidden_layers=4, sliding_window=4, pad_token_id=0,
             rope_parameters={"full_attention": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                 "original_max_position_embeddings": 8},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0}})


def test_olmo3_gives_transformers_logits_loss_and_gradients_past_the_window(tmp_path):
    hf = hf_model(tmp_path, "Olmo3", **OLMO3)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Olmo3 and c.window_layers == (0, 1, 2) and c.sliding_layers is None
    assert c.rope_local_base == 1000.0 and c.rope_scaling["rope_type"] == "yarn" and c.qk_norm and c.sandwich_norm
    ids = batch(20)[0][:1]  # past the window and YaRN's original 8
    lm_loss_and_logits_match(model, hf, ids)
    with torch.no_grad():  # the window, its layers and the sliding layers' own RoPE all matter
        ref = hf(ids).logits
        for change in (dict(sliding_window=None), dict(sliding_layers=(1, 2, 3)), dict(rope_local_base=None)):
            other = attnkit.Olmo3(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_olmo3_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Olmo3", **OLMO3)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)
