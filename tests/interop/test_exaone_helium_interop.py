"""EXAONE 4.0 and Helium against `transformers`' Exaone4ForCausalLM and HeliumForCausalLM with
identical weights, both directions. EXAONE 4.0: OLMo 2's output norms with per-head query/key
norms, windows with rotary positions on three layers of four and the fourth global without
positions (or, with no window, every layer global with positions). Helium: interleaved rotary
pairs, q/k/v biases."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

EXAONE = dict(num_hidden_layers=4, sliding_window=4, sliding_window_pattern=4, pad_token_id=0)


@pytest.mark.parametrize("window", [True, False])
def test_exaone4_gives_transformers_logits_loss_and_gradients(tmp_path, window):
    hf = hf_model(tmp_path, "Exaone4", **(EXAONE if window else dict(EXAONE, sliding_window=None,
                                                                    layer_types=["full_attention"] * 4)))
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Exaone4 and c.qk_norm and c.qk_norm_per_head and c.sandwich_norm
    assert not c.input_norm and (c.window_layers, c.nope_layers) == (((0, 1, 2), (3,)) if window else ((), None))
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[3], hf.model.layers[3]
    assert (ours.attn.q_norm.weight.grad - theirs.self_attn.q_norm.weight.grad).abs().max() < 1e-4
    assert (ours.ffn_post_norm.weight.grad - theirs.post_feedforward_layernorm.weight.grad).abs().max() < 1e-4
    if window:
        with torch.no_grad():  # the window and the global layer without positions matter
            ref = hf(ids).logits
            for change in (dict(sliding_window=None, sliding_layers=None, nope_layers=None), dict(nope_layers=None)):
                other = attnkit.Exaone4(c.replace(**change))
                other.load_state_dict(model.state_dict())
                assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_exaone4_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Exaone4", **EXAONE)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_exaone4_window_patterns_as_strings(tmp_path):
    hf_model(tmp_path, "Exaone4", **EXAONE)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("layer_types")
    (tmp_path / "config.json").write_text(json.dumps({**config, "sliding_window_pattern": "LG"}))
    c = attnkit.from_pretrained(tmp_path).config
    assert c.window_layers == (0, 2) and c.nope_layers == (1, 3)
    (tmp_path / "config.json").write_text(json.dumps({**config, "sliding_window_pattern": "LXG"}))
    with pytest.raises(ConfigError, match="sliding_window_pattern"):
        attnkit.from_pretrained(tmp_path)


def test_helium_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Helium", head_dim=8, attention_bias=True, pad_token_id=0)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Helium and c.rope_interleave and c.qkv_bias and not c.bias
    assert model.decoder.layers[0].attn.out_proj.bias is None
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    theirs = torch.cat([getattr(hf.model.layers[1].self_attn, f"{x}_proj").bias.grad for x in "qkv"])
    assert (model.decoder.layers[1].attn.qkv_proj.bias.grad - theirs).abs().max() < 1e-4
    with torch.no_grad():  # the interleaved pairs matter
        other = attnkit.Helium(c.replace(rope_interleave=False))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_helium_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Helium", head_dim=8, pad_token_id=0)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)
