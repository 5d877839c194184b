"""Llama 4 against `transformers`' Llama4ForCausalLM with identical weights, both directions:
chunked attention on the rotary layers (positions counted from each row's first token), global
layers without positions whose queries are temperature-tuned, weightless query/key norms,
interleaved rotary pairs, and a mixture of experts whose sigmoid weights scale the experts' input,
on every other layer; and the text model read out of a Llama4ForConditionalGeneration checkpoint."""

import json

import pytest
import torch

import attnkit
from attnkit import CheckpointError, ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
# 4 layers: the last without rotary positions, experts on layers 1 and 3 (4 of them, 2 per token),
# chunks of 4 positions, a temperature that changes every 4 positions.
LLAMA4 = dict(vocab_size=V, hidden_size=32, intermediate_size=16, intermediate_size_mlp=48, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_local_experts=4, num_experts_per_tok=2,
              interleave_moe_layer_step=2, attention_chunk_size=4, floor_scale=4, attn_scale=0.5,
              max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
VARIANTS = {"maverick-like": {}, "scout-like": dict(interleave_moe_layer_step=1, num_experts_per_tok=1),
            "no norms, no tuning, llama3 rope": dict(use_qk_norm=False, attn_temperature_tuning=False,
                                                     rope_parameters=LLAMA3_ROPE)}
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
              patch_size=14, vision_output_dim=32, projector_input_dim=32, projector_output_dim=32)


def _draw(hf):
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    return hf


def hf_llama4(path, **overrides):
    """A random ``Llama4ForCausalLM`` saved to ``path``, every weight drawn (norms around 1)."""
    torch.manual_seed(0)
    hf = _draw(transformers.Llama4ForCausalLM(transformers.Llama4TextConfig(**{**LLAMA4, **overrides})).eval())
    hf.save_pretrained(path)
    return hf


@pytest.mark.parametrize("variant", VARIANTS)
def test_llama4_gives_transformers_logits_loss_and_gradients(tmp_path, variant):
    hf = hf_llama4(tmp_path, **VARIANTS[variant])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Llama4 and c.nope_layers == (3,) and c.attention_chunk_size == 4
    assert c.local_layers == (0, 1, 2) and c.rope_interleave and c.shared_expert_d_ff == 16
    assert c.moe_layers == (None if variant == "scout-like" else (1, 3))
    ids = batch(14)[0][:1]  # 14 tokens: four chunks, three temperatures
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[3], hf.model.layers[3]
    pairs = [(ours.attn.out_proj, theirs.self_attn.o_proj), (ours.ffn.router, theirs.feed_forward.router),
             (ours.ffn.shared_expert.fc_in, theirs.feed_forward.shared_expert.up_proj),
             (model.decoder.layers[0].attn_norm, hf.model.layers[0].input_layernorm)]
    for a, b in pairs:
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-4
    gate_up, down = theirs.feed_forward.experts.gate_up_proj.grad, theirs.feed_forward.experts.down_proj.grad
    ran = [j for j in range(4) if ours.ffn.experts[j].fc_out.weight.grad is not None]
    assert len(ran) >= 2 and all(down[j].abs().max() == 0 for j in range(4) if j not in ran)
    for j in ran:  # transformers' (E, in, out) stacks hold attnkit's (out, in) weights
        e = ours.ffn.experts[j]
        assert (e.fc_out.weight.grad - down[j].t()).abs().max() < 1e-4
        assert (torch.cat([e.fc_gate.weight.grad, e.fc_in.weight.grad]) - gate_up[j].t()).abs().max() < 1e-4


def test_each_llama4_feature_matters(tmp_path):
    """Leaving out any one feature gives other logits than transformers': the chunks, the
    query/key norms, the temperature, the layer without positions, the interleaved pairs, the
    weights on the experts' input, the chunks counted from a row's first real token."""
    hf = hf_llama4(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids = batch(14)[0][:1]
    with torch.no_grad():
        ref = hf(ids).logits
        assert (model(ids).logits - ref).abs().max() < 1e-4
        for change in [dict(attention_chunk_size=None), dict(qk_l2_norm=False), dict(attn_temperature_floor=None),
                       dict(attn_temperature_scale=0.1), dict(nope_layers=None, attn_temperature_floor=None),
                       dict(rope_interleave=False), dict(expert_input_weights=False)]:
            other = attnkit.Llama4(model.config.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change
        # Left padding: the chunks start at each row's first real token, not at slot 0.
        ids, mask = batch(14)
        theirs = hf(ids, attention_mask=mask).logits
        ours = model(ids, attention_mask=mask).logits
        assert (torch.where(mask.bool()[..., None], ours - theirs, 0.0)).abs().max() < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_llama4_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_llama4(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_cached_decoding_equals_the_full_forward():
    """Step by step through the cache, chunk masks and temperatures follow the slots: the logits
    of the full forward."""
    model = attnkit.Llama4(attnkit.Llama4Config.from_preset("llama4-tiny")).eval()
    ids = torch.randint(3, 256, (2, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(2, 13)
        steps = [model(ids[:, :5], cache=cache).logits]
        steps += [model(ids[:, t:t + 1], cache=cache).logits for t in range(5, 13)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5


def test_text_model_loads_from_a_conditional_generation_checkpoint(tmp_path):
    """A released-layout checkpoint (``Llama4ForConditionalGeneration``: a vision encoder and
    the text model under ``language_model.``) loads as the text model with the same text
    logits, and saves as ``Llama4ForCausalLM``."""
    torch.manual_seed(0)
    config = transformers.Llama4Config(text_config=LLAMA4, vision_config=VISION)
    hf = _draw(transformers.Llama4ForConditionalGeneration(config).eval())
    hf.save_pretrained(tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert type(model) is attnkit.Llama4 and model.config.moe_layers == (1, 3)
    ids = batch(14)[0]
    with torch.no_grad():
        ref = hf.language_model(input_ids=ids).logits  # its own text-only forward fails in transformers 5.24
        assert (model(ids).logits - ref).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "llama4_text" and saved["architectures"] == ["Llama4ForCausalLM"]
    text = transformers.Llama4ForCausalLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (text(ids).logits - ref).abs().max() < 1e-4


@pytest.mark.parametrize("change,match", [
    (dict(attention_bias=True), "attention_bias"),
    (dict(layer_types=["full_attention"] * 4), "layer_types"),
    (dict(no_rope_layers=[1, 2, 1, 0]), "no_rope_layers"),
    (dict(moe_layers=[7]), "moe_layers"),
])
def test_unsupported_llama4_configs_are_refused(tmp_path, change, match):
    hf_llama4(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


def test_malformed_stacked_experts_are_refused(tmp_path):
    hf_llama4(tmp_path)
    from safetensors.torch import load_file, save_file
    state = load_file(tmp_path / "model.safetensors")
    state["model.layers.1.feed_forward.experts.down_proj"] = torch.zeros(3, 16, 32)  # 3 experts, not 4
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="down_proj of shape \\(3, 16, 32\\) is not 4 stacked"):
        attnkit.from_pretrained(tmp_path)


def test_a_conditional_generation_config_without_text_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama4", "architectures": [
        "Llama4ForConditionalGeneration"]}))
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match="text_config"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields,count", [
    ("llama-4-scout-17b-16e", {}, 107_769_861_120),
    ("llama-4-maverick-17b-128e", dict(num_local_experts=128, interleave_moe_layer_step=2, use_qk_norm=False),
     400_711_848_960)])
def test_llama4_presets_have_transformers_parameter_counts(preset, hf_fields, count):
    with torch.device("meta"):
        ours = attnkit.Llama4(attnkit.Llama4Config.from_preset(preset))
        theirs = transformers.Llama4ForCausalLM(transformers.Llama4TextConfig(**hf_fields))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == count
