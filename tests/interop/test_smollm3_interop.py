"""SmolLM3 against `transformers`' SmolLM3ForCausalLM with identical weights, both directions: a
Llama whose every fourth layer has no rotary positions."""

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

SMOLLM3 = dict(num_hidden_layers=4, pad_token_id=0)  # no_rope_layers: transformers' default, [1, 1, 1, 0]


def test_smollm3_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "SmolLM3", **SMOLLM3, no_rope_layers=[1, 0, 1, 0])
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.SmolLM3 and model.config.nope_layers == (1, 3)
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    with torch.no_grad():  # which layers go without positions matters
        ref = hf(ids).logits
        for layers in ((3,), None):
            other = attnkit.SmolLM3(model.config.replace(nope_layers=layers))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, layers


@pytest.mark.parametrize("num_beams", [1, 3])
def test_smollm3_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "SmolLM3", **SMOLLM3)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.nope_layers == (3,) and generation_matches(model, hf, num_beams)


def test_smollm3_preset_count_and_refusals(tmp_path):
    with torch.device("meta"):
        ours, theirs = attnkit.SmolLM3(attnkit.SmolLM3Config()), transformers.SmolLM3ForCausalLM(
            transformers.SmolLM3Config())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 3_075_098_624
    hf_model(tmp_path, "SmolLM3", **SMOLLM3, no_rope_layers=[1, 1, 2, 0])
    with pytest.raises(ConfigError, match="no_rope_layers must list 4 flags of 0 or 1"):
        attnkit.from_pretrained(tmp_path)
