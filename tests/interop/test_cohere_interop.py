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


# Command R7B's layout in small: a window of 4 with rotary positions on layers 0-2, the last layer
# global without positions.
COHERE2 = dict(COHERE, num_hidden_layers=4, sliding_window=4,
               layer_types=["sliding_attention"] * 3 + ["full_attention"])


def test_cohere2_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Cohere2", **COHERE2)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Cohere2 and c.window_layers == (0, 1, 2) and c.nope_layers == (3,)
    assert c.sliding_window == 4 and c.rope_interleave and c.logits_scaling == 4.0
    ids = batch(20)[0][:1]  # past the window
    lm_loss_and_logits_match(model, hf, ids)
    theirs = hf.model.layers[3].self_attn.q_proj.weight.grad
    assert (model.decoder.layers[3].attn.qkv_proj.weight.grad[:32] - theirs).abs().max() < 1e-4
    with torch.no_grad():  # the window and the layer without positions matter
        ref = hf(ids).logits
        for change in (dict(sliding_window=None, sliding_layers=None), dict(nope_layers=None)):
            other = attnkit.Cohere2(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cohere2_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Cohere2", **COHERE2)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_older_cohere2_configs_give_the_pattern_with_sliding_window_pattern(tmp_path):
    import json

    hf_model(tmp_path, "Cohere2", **COHERE2)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("layer_types")
    (tmp_path / "config.json").write_text(json.dumps({**config, "sliding_window_pattern": 2}))
    c = attnkit.from_pretrained(tmp_path).config
    assert c.window_layers == (0, 2) and c.nope_layers == (1, 3)


def test_command_r7b_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.Cohere2(attnkit.Cohere2Config.from_preset("command-r7b"))
        theirs = transformers.Cohere2ForCausalLM(transformers.Cohere2Config(
            vocab_size=256000, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
            intermediate_size=14336))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 8_028_033_024
