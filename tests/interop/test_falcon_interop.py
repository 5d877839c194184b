"""Falcon against `transformers`' FalconForCausalLM with identical weights, both directions, in
each of its layouts: multi-query attention with parallel sublayers under one norm (Falcon-7B),
the new decoder architecture (grouped-query attention, the q/k/v rows group by group, one or two
norms: Falcon-40B, 180B, Falcon 2), and multi-head attention with sequential sublayers and
biases."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, hidden_size=32, ffn_hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
LAYOUTS = {
    "7b": (dict(multi_query=True, parallel_attn=True), dict(n_kv_heads=1, parallel_residual=True, shared_norm=True)),
    "40b": (dict(new_decoder_architecture=True, num_kv_heads=2), dict(n_kv_heads=2, shared_norm=False)),
    "new, one norm": (dict(new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=1),
                      dict(n_kv_heads=2, shared_norm=True)),
    "sequential, biases": (dict(multi_query=False, parallel_attn=False, bias=True),
                           dict(n_kv_heads=4, parallel_residual=False, bias=True)),
}


def hf_falcon(path, **overrides):
    """A random ``FalconForCausalLM`` saved to ``path``, every weight and bias drawn."""
    torch.manual_seed(0)
    hf = transformers.FalconForCausalLM(transformers.FalconConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if ("ln" in n or "layernorm" in n) and n.endswith("weight") else \
                p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


@pytest.mark.parametrize("layout", LAYOUTS)
def test_falcon_gives_transformers_logits_loss_and_gradients(tmp_path, layout):
    hf_fields, expected = LAYOUTS[layout]
    hf = hf_falcon(tmp_path, **hf_fields)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Falcon and c.norm_bias and all(getattr(c, k) == v for k, v in expected.items())
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.transformer.h[1]
    assert (ours.attn.out_proj.weight.grad - theirs.self_attention.dense.weight.grad).abs().max() < 1e-4
    assert (ours.attn_norm.bias.grad - (theirs.ln_attn if layout == "40b" else theirs.input_layernorm).bias.grad
            ).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "again")  # and back in the same layout
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    again = transformers.FalconForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4
    assert saved["new_decoder_architecture"] == hf.config.new_decoder_architecture


@pytest.mark.parametrize("layout", ["7b", "40b"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_falcon_generation_equals_transformers_on_a_left_padded_batch(tmp_path, layout, num_beams):
    hf = hf_falcon(tmp_path, **LAYOUTS[layout][0])
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


@pytest.mark.parametrize("change,match", [(dict(alibi=True), "alibi"),
                                          (dict(tie_word_embeddings=False), "tie_word_embeddings")])
def test_unsupported_falcon_configs_are_refused(tmp_path, change, match):
    hf_falcon(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields,count", [
    ("falcon-7b", {}, 6_921_720_704),
    ("falcon-40b", dict(hidden_size=8192, num_hidden_layers=60, num_attention_heads=128, num_kv_heads=8,
                        ffn_hidden_size=32768, new_decoder_architecture=True), 41_303_293_952)])
def test_falcon_presets_have_transformers_parameter_counts(preset, hf_fields, count):
    with torch.device("meta"):
        ours = attnkit.Falcon(attnkit.FalconConfig.from_preset(preset))
        theirs = transformers.FalconForCausalLM(transformers.FalconConfig(**hf_fields))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == count
