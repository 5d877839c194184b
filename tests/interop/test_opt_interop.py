"""OPT against `transformers`' OPTForCausalLM with identical weights, both directions: the
position table offset by two rows (positions counted from each row's first real token), ReLU
feed-forwards, biases everywhere, tied embeddings."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0, bos_token_id=1, eos_token_id=2,
             pad_token_id=0)


def hf_opt(path, **overrides):
    """A random ``OPTForCausalLM`` saved to ``path``, every weight and bias drawn."""
    torch.manual_seed(0)
    hf = transformers.OPTForCausalLM(transformers.OPTConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n and n.endswith("weight") else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def test_opt_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_opt(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.OPT and c.position_offset == 2 and c.activation == "relu"
    assert model.wpe.weight.shape == (66, 32) and model.lm_head.weight is model.wte.weight
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    theirs = hf.model.decoder.embed_positions.weight.grad
    assert (model.wpe.weight.grad - theirs).abs().max() < 1e-4 and theirs[:2].abs().max() == 0  # rows 0, 1: unused
    with torch.no_grad():  # without the offset, the positions are off by two
        other = attnkit.OPT(c.replace(position_offset=0, n_positions=66))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
        ids, mask = batch(12)  # left padding: the positions start at each row's first token
        ours, ref = model(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits
        assert torch.where(mask.bool()[..., None], ours - ref, 0.0).abs().max() < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_opt_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_opt(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


@pytest.mark.parametrize("change,match", [
    (dict(do_layer_norm_before=False), "do_layer_norm_before=false"), (dict(word_embed_proj_dim=16), "OPT-350M"),
    (dict(enable_bias=False), "enable_bias"), (dict(activation_function="mish"), "activation_function")])
def test_unsupported_opt_configs_are_refused(tmp_path, change, match):
    hf_opt(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


def test_opt_125m_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.OPT(attnkit.OPTConfig.from_preset("opt-125m"))
        theirs = transformers.OPTForCausalLM(transformers.OPTConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs) == 125_239_296
