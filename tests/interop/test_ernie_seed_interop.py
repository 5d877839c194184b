"""ERNIE 4.5 (interleaved rotary pairs, biases everywhere or nowhere) and Seed-OSS (q/k/v biases)
against `transformers`' Ernie4_5ForCausalLM and SeedOssForCausalLM with identical weights."""

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

FAMILIES = {"Ernie4_5": dict(head_dim=8, use_bias=True, pad_token_id=0),
            "SeedOss": dict(head_dim=8, attention_bias=True, pad_token_id=0)}


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_loss_and_gradients_equal_transformers(tmp_path, family):
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is getattr(attnkit, family)
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    assert (ours.attn.qkv_proj.bias.grad[:32] - theirs.self_attn.q_proj.bias.grad).abs().max() < 1e-4
    if family == "Ernie4_5":  # biases everywhere; the interleaved rotation matters
        assert c.bias and c.rope_interleave
        assert (ours.ffn.fc_out.bias.grad - theirs.mlp.down_proj.bias.grad).abs().max() < 1e-4
        with torch.no_grad():
            other = attnkit.Ernie4_5(c.replace(rope_interleave=False))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
    else:  # q/k/v biases alone
        assert c.qkv_bias and not c.bias and ours.attn.out_proj.bias is None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, family, num_beams):
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_seed_oss_output_biases_are_refused(tmp_path):
    hf_model(tmp_path, "SeedOss", **FAMILIES["SeedOss"], attention_out_bias=True)
    with pytest.raises(ConfigError, match="attention_out_bias"):
        attnkit.from_pretrained(tmp_path)
