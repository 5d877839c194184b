"""Command R / Aya against `transformers`' CohereForCausalLM with identical weights, both
directions: parallel sublayers on one LayerNorm without bias, rotary positions in interleaved
pairs, scaled logits, tied embeddings."""

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

COHERE = dict(logit_scale=0.25, layer_norm_eps=1e-5, pad_token_id=0)


def test_cohere_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Cohere", **COHERE)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Cohere and c.rope_interleave and c.shared_norm and c.logits_scaling == 4.0
    assert c.norm == "layernorm" and not c.bias and model.lm_head.weight is model.wte.weight
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    assert (ours.attn_norm.weight.grad - theirs.input_layernorm.weight.grad).abs().max() < 1e-4
    assert (ours.attn.qkv_proj.weight.grad[:32] - theirs.self_attn.q_proj.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # the interleaved rotation and the logit scale matter
        ref = hf(ids).logits
        for change in (dict(rope_interleave=False), dict(logits_scaling=1.0)):
            other = attnkit.Cohere(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cohere_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Cohere", **COHERE)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_cohere_query_key_norms_are_refused(tmp_path):
    hf_model(tmp_path, "Cohere", **COHERE, use_qk_norm=True)
    with pytest.raises(ConfigError, match="use_qk_norm"):
        attnkit.from_pretrained(tmp_path)
