"""GPT-NeoX / Pythia against `transformers`' GPTNeoXForCausalLM with identical weights, both
directions: parallel (and sequential) residuals, rotary positions on part of each head, and the
fused q/k/v matrix whose rows Hugging Face interleaves head by head."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
# Heads of 16 with a quarter rotated (4 dimensions), Pythia's shape in small.
SMALL = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             rope_parameters={"rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.25})


def hf_model(tmp_path, **overrides):
    """A random ``GPTNeoXForCausalLM`` saved to ``tmp_path``, every weight and bias drawn."""
    torch.manual_seed(0)
    hf = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n and n.endswith("weight") else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(tmp_path)
    return hf


@pytest.mark.parametrize("parallel", [True, False])
def test_checkpoint_gives_transformers_logits_loss_and_gradients(tmp_path, parallel):
    hf = hf_model(tmp_path, use_parallel_residual=parallel)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.GPTNeoX and c.parallel_residual is parallel and c.rotary_dim == 4
    assert c.rope_base == 1000.0 and not c.tie_word_embeddings
    lm_loss_and_logits_match(model, hf, batch(20)[0][:1])  # and both have gradients now
    theirs = hf.gpt_neox.layers[1].attention.query_key_value.weight.grad.view(4, 3, 16, 64)  # (head, q/k/v, ...)
    ours = model.decoder.layers[1].attn.qkv_proj.weight.grad.view(3, 4, 16, 64)  # (q/k/v, head, ...)
    assert (ours.transpose(0, 1) - theirs).abs().max() < 1e-4
    if parallel:  # the layout matters: sequential sublayers give other logits
        other = attnkit.GPTNeoX(c.replace(parallel_residual=False))
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            ids = batch(20)[0][:1]
            assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_attnkit_model_saved_loads_in_transformers_with_same_logits(tmp_path):
    torch.manual_seed(0)
    model = attnkit.GPTNeoX(attnkit.GPTNeoXConfig.from_preset("pythia-tiny")).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "gpt_neox" and saved["architectures"] == ["GPTNeoXForCausalLM"]
    hf, info = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = batch(length=20)[0]
    with torch.no_grad():
        assert (model(ids).logits - hf.eval()(ids).logits).abs().max() < 1e-4
    again = attnkit.from_pretrained(tmp_path)
    assert type(again) is attnkit.GPTNeoX and again.config == model.config


def test_older_checkpoints_with_attention_buffers_and_rotary_pct_load(tmp_path):
    """Pythia as released: ``rotary_pct`` and ``rotary_emb_base`` in config.json, the causal-mask
    and rotary buffers among the weights."""
    hf = hf_model(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_parameters")
    config.update(rotary_pct=0.5, rotary_emb_base=500.0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    weights = load_file(tmp_path / "model.safetensors")
    for i in range(2):
        weights[f"gpt_neox.layers.{i}.attention.bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
        weights[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
        weights[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.ones(4)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.rotary_dim == 8 and model.config.rope_base == 500.0
    ref = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{
        **SMALL, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}}))
    ref.load_state_dict(hf.state_dict())
    ids = batch(20)[0][:1]
    with torch.no_grad():
        assert (model(ids).logits - ref.eval()(ids).logits).abs().max() < 1e-4


def test_attention_without_biases_is_refused(tmp_path):
    hf_model(tmp_path, attention_bias=False)
    with pytest.raises(ConfigError, match="attention_bias=false"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields", [
    ("pythia-70m", dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048)),
    ("pythia-160m", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    ("pythia-410m", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)),
    ("pythia-1b", dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8, intermediate_size=8192)),
])
def test_presets_have_the_parameter_counts_of_transformers_models_of_that_shape(preset, hf_fields):
    with torch.device("meta"):
        ours = attnkit.GPTNeoX(attnkit.GPTNeoXConfig.from_preset(preset))
        theirs = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(vocab_size=50304, **hf_fields))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs) and ours.config.rotary_dim == ours.config.dim_per_head // 4
