"""GPT-Neo against `transformers`' GPTNeoForCausalLM with identical weights, both directions:
unscaled attention scores, a window on every other layer, biases on the output projection and
the feed-forward but not on the queries, keys and values."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, hidden_size=32, num_layers=3, num_heads=4, max_position_embeddings=64, window_size=4,
             attention_types=[[["global", "local", "local"], 1]], bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_neo(path, **overrides):
    """A random ``GPTNeoForCausalLM`` saved to ``path``, every weight and bias drawn."""
    torch.manual_seed(0)
    hf = transformers.GPTNeoForCausalLM(transformers.GPTNeoConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "ln" in n and n.endswith("weight") else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def test_gpt_neo_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_neo(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.GPTNeo and c.window_layers == (1, 2) and c.sliding_window == 4
    assert c.attn_scale_dim == 1.0 and model.lm_head.weight is model.wte.weight
    assert model.decoder.layers[0].attn.qkv_proj.bias is None and model.decoder.layers[0].attn.out_proj.bias is not None
    ids = batch(20)[0][:1]  # past the window and then some
    lm_loss_and_logits_match(model, hf, ids)
    theirs = torch.cat([getattr(hf.transformer.h[1].attn.attention, f"{x}_proj").weight.grad for x in "qkv"])
    assert (model.decoder.layers[1].attn.qkv_proj.weight.grad - theirs).abs().max() < 1e-4
    assert (model.wpe.weight.grad - hf.transformer.wpe.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # each feature matters: scaled scores, no window, the window everywhere
        ref = hf(ids).logits
        for change in [dict(attn_scale_dim=None), dict(sliding_window=None, sliding_layers=None),
                       dict(sliding_layers=(0, 1, 2))]:
            other = attnkit.GPTNeo(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_gpt_neo_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_neo(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


@pytest.mark.parametrize("change,match", [(dict(attention_types=[[["global", "sparse"], 1]]), "attention_types"),
                                          (dict(activation_function="mish"), "activation_function"),
                                          (dict(tie_word_embeddings=False), "tie_word_embeddings")])
def test_unsupported_gpt_neo_configs_are_refused(tmp_path, change, match):
    hf_neo(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("attention_layers", None)
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


def test_gpt_neo_125m_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.GPTNeo(attnkit.GPTNeoConfig.from_preset("gpt-neo-125m"))
        theirs = transformers.GPTNeoForCausalLM(transformers.GPTNeoConfig(
            hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]]))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs) == 125_198_592
