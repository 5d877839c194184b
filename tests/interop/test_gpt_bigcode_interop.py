"""GPTBigCode (SantaCoder, StarCoder) against `transformers`' GPTBigCodeForCausalLM with identical
weights, both directions: multi-query attention (one key/value head in ``c_attn`` after the
queries) and, without ``multi_query``, every head's query, key and value in turn."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from attnkit.interop import gpt_bigcode, keymap
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2,
             pad_token_id=0)


def hf_bigcode(path, **overrides):
    """A random ``GPTBigCodeForCausalLM`` saved to ``path``, every weight and bias drawn."""
    torch.manual_seed(0)
    hf = transformers.GPTBigCodeForCausalLM(transformers.GPTBigCodeConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "ln" in n and n.endswith("weight") else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


@pytest.mark.parametrize("multi_query", [True, False], ids=["multi-query", "multi-head"])
def test_gpt_bigcode_gives_transformers_logits_loss_gradients_and_saves(tmp_path, multi_query):
    hf = hf_bigcode(tmp_path, multi_query=multi_query)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.GPTBigCode and c.n_kv_heads == (1 if multi_query else 4)
    assert model.decoder.layers[0].attn.qkv_proj.weight.shape == ((32 + 2 * 8) if multi_query else 96, 32)
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    assert (model.wpe.weight.grad - hf.transformer.wpe.weight.grad).abs().max() < 1e-4
    ours = {"decoder.layers.1.attn.qkv_proj.weight": model.decoder.layers[1].attn.qkv_proj.weight.grad}
    ours = keymap.to_hf(gpt_bigcode.key_rules(model), ours)["transformer.h.1.attn.c_attn.weight"]  # HF's row order
    assert (ours - hf.transformer.h[1].attn.c_attn.weight.grad).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["multi_query"] is multi_query and saved["model_type"] == "gpt_bigcode"
    again = transformers.GPTBigCodeForCausalLM.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4
        # the scale matters (the key/value head count is in the weights' shapes)
        other = attnkit.GPTBigCode(c.replace(attn_scale_dim=1.0))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_gpt_bigcode_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_bigcode(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_unscaled_scores_and_unsupported_configs(tmp_path):
    hf = hf_bigcode(tmp_path, scale_attn_weights=False)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.attn_scale_dim == 1.0
    lm_loss_and_logits_match(model, hf, batch(12)[0][:1])
    config = json.loads((tmp_path / "config.json").read_text())
    for change, match in [(dict(activation_function="mish"), "activation_function"),
                          (dict(add_cross_attention=True), "add_cross_attention")]:
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=match):
            attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields,count", [
    ("santacoder", dict(vocab_size=49280, n_positions=2048, n_embd=2048, n_layer=24, n_head=16, n_inner=8192),
     1_124_886_528),
    ("starcoder", dict(vocab_size=49152, n_positions=8192, n_embd=6144, n_layer=40, n_head=48, n_inner=24576),
     15_517_456_384),
])
def test_presets_have_transformers_parameter_counts(preset, hf_fields, count):
    with torch.device("meta"):
        ours = attnkit.GPTBigCode(attnkit.GPTBigCodeConfig.from_preset(preset))
        theirs = transformers.GPTBigCodeForCausalLM(transformers.GPTBigCodeConfig(
            **hf_fields, bos_token_id=0, eos_token_id=0))
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(ours) == total(theirs) == count
