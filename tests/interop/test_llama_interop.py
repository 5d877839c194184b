"""Llama against `transformers`' LlamaForCausalLM with identical weights, both directions:
RMSNorm, rotary positions, grouped-query attention, SwiGLU, untied or tied LM head."""

import json
import math

import pytest
import torch

import attnkit
from attnkit import ConfigError

transformers = pytest.importorskip("transformers")

V = 96


def hf_llama(tmp_path, **overrides):
    """A random LlamaForCausalLM saved to ``tmp_path``: 4 query heads sharing 2 key/value heads,
    a non-default rotary base, RMSNorm weights drawn around 1."""
    cfg = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
               rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, bos_token_id=1, eos_token_id=2)
    cfg.update(overrides)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if p.dim() == 1:
                p.normal_(1.0, 0.3)
            else:
                p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(tmp_path)
    return hf


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (3, 12), generator=g)
    mask = (torch.arange(12)[None] >= torch.tensor([[0], [4], [9]])).long()  # left padding: 12, 8, 3 real tokens
    return ids.masked_fill(mask == 0, 0), mask


def test_llama_checkpoint_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_llama(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Llama
    c = model.config
    assert (c.n_kv_heads, c.rope_base, c.norm_eps, c.tie_word_embeddings) == (2, 500000.0, 1e-5, False)
    ids = batch()[0][:1]  # no padding: transformers' forward numbers positions 0..T-1 whatever the mask
    got = model(ids, labels=ids)
    ref = hf(ids, labels=ids)
    assert (got.logits - ref.logits).abs().max() < 1e-4
    assert torch.allclose(got.loss, ref.loss, atol=1e-5)
    got.loss.backward()
    ref.loss.backward()
    ours = model.decoder.layers[0].attn.qkv_proj.weight.grad
    theirs = torch.cat([getattr(hf.model.layers[0].self_attn, f"{x}_proj").weight.grad for x in "qkv"])
    assert ours.shape == (32 + 16 + 16, 32) and (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("num_beams,overrides", [(1, {}), (3, {}), (3, dict(head_dim=16))])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams, overrides):
    """``head_dim=16``: 4 heads of 16 on a 32-wide model (as Mistral-Nemo's 32 of 128 on 5,120)."""
    hf = hf_llama(tmp_path, **overrides)
    model = attnkit.from_pretrained(tmp_path)
    ids, mask = batch()
    got = model.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=num_beams, do_sample=False)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=num_beams, do_sample=False,
                          pad_token_id=0)
    assert torch.equal(got, ref)


LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 0.1,
          "high_freq_factor": 0.5, "original_max_position_embeddings": 16}


# YaRN with transformers' defaults (β 32 and 1, cos and sin scaled by 0.1 ln 4 + 1), and with
# DeepSeek's fields: the scale from mscale / mscale_all_dim, other βs, the ramp not rounded.
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16}
YARN_DEEPSEEK = {**YARN, "rope_theta": 1000.0, "mscale": 1.0, "mscale_all_dim": 0.5, "beta_fast": 8, "beta_slow": 2,
                 "truncate": False}


@pytest.mark.parametrize("rope", [LLAMA3, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, YARN,
                                  YARN_DEEPSEEK])
def test_scaled_rope_gives_transformers_logits_and_generation_beyond_the_original_context(tmp_path, rope):
    """Llama 3.1's frequency scaling, linear position interpolation and YaRN: 40 positions, past
    the 16 of the original context. The wavelengths of an 8-wide head at base 10^4 (6, 63, 628,
    6283) fall in all three of llama3's bands: below 16 / 0.5 kept, between that and 16 / 0.1
    blended, above it divided by the factor; and on both sides of YaRN's ramp."""
    hf = hf_llama(tmp_path, hidden_size=32, num_attention_heads=4, rope_parameters=rope)
    model = attnkit.from_pretrained(tmp_path)
    scaling = model.config.rope_scaling
    if rope["rope_type"] == "yarn":  # transformers' defaults and the derived scale are filled in
        scale = (1 + 0.1 * math.log(4)) / (1 + 0.05 * math.log(4)) if "mscale" in rope else 1 + 0.1 * math.log(4)
        assert scaling["attention_factor"] == pytest.approx(scale)
        assert (scaling["beta_fast"], scaling["beta_slow"]) == (rope.get("beta_fast", 32), rope.get("beta_slow", 1))
    else:
        assert scaling == {k: v for k, v in rope.items() if k != "rope_theta"}
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, V, (1, 40), generator=g)
    with torch.no_grad():
        ref = hf(ids).logits
        assert (model(ids).logits - ref).abs().max() < 1e-4
        plain = attnkit.Llama(model.config.replace(rope_scaling=None))
        plain.load_state_dict(model.state_dict())
        assert (plain(ids).logits - ref).abs().max() > 1e-2  # the scaling changes the logits
        got = model.generate(ids[:, :30], max_new_tokens=12, do_sample=False)
        assert torch.equal(got, hf.generate(ids[:, :30], max_new_tokens=12, do_sample=False, pad_token_id=0))
    model.save_pretrained(tmp_path / "again")
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (back(ids).logits - ref).abs().max() < 1e-4


@pytest.mark.parametrize("tied", [False, True])
def test_attnkit_llama_saved_loads_in_transformers_with_same_logits(tmp_path, tied):
    model = attnkit.Llama(attnkit.LlamaConfig.from_preset("llama-tiny", tie_word_embeddings=tied)).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "llama" and saved["architectures"] == ["LlamaForCausalLM"]
    hf, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = batch()[0]
    with torch.no_grad():
        assert (model(ids).logits - hf.eval()(ids).logits).abs().max() < 1e-4
    again = attnkit.from_pretrained(tmp_path)
    assert again.config == model.config and (again(ids).logits - model(ids).logits).abs().max() == 0


@pytest.mark.parametrize("overrides,match", [
    (dict(rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}), "RoPE scaling 'dynamic'"),
    (dict(attention_bias=True), "attention_bias and mlp_bias differ"),
    (dict(hidden_act="tanh"), "hidden_act='tanh' is not supported"),
])
def test_unsupported_llama_variants_are_refused_naming_the_field(tmp_path, overrides, match):
    hf_llama(tmp_path, **overrides)
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


def test_presets_have_the_released_checkpoints_parameter_counts():
    for name, count in (("tinyllama-1.1b", 1_100_048_384), ("smollm-135m", 134_515_008), ("llama-3.2-1b", 1_235_814_400)):
        with torch.device("meta"):
            model = attnkit.Llama(attnkit.LlamaConfig.from_preset(name))
        assert sum(p.numel() for p in model.parameters()) == count, name
