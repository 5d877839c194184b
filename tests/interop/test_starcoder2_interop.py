"""StarCoder2 against `transformers`' Starcoder2ForCausalLM with identical weights, both
directions: rotary positions, grouped-query attention, biases and LayerNorms, the ungated
feed-forward, the sliding window."""

import pytest
import torch

import attnkit
from attnkit import ConfigError
from attnkit.nn import attention as attention_module
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

WINDOW = dict(sliding_window=4, norm_epsilon=1e-5, hidden_act="gelu_pytorch_tanh")


@pytest.mark.parametrize("block", [128, 1])
def test_starcoder2_gives_transformers_logits_loss_and_gradients_past_the_window(tmp_path, monkeypatch, block):
    """Past the window, in one block of queries or several (``WINDOW_BLOCK``: the windowed
    attention's blocks of at least ``max(block, window - 1)`` queries, here 3 for 12 tokens)."""
    monkeypatch.setattr(attention_module, "WINDOW_BLOCK", block)
    hf = hf_model(tmp_path, "Starcoder2", **WINDOW)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Starcoder2 and c.sliding_window == 4 and c.n_kv_heads == 2 and c.bias
    assert c.norm == "layernorm" and c.activation == "gelu_tanh" and model.lm_head.weight is model.wte.weight
    ids = batch()[0][:1]  # 12 tokens: past the window
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    for a, b in [(ours.ffn.fc_in, theirs.mlp.c_fc), (ours.attn_norm, theirs.input_layernorm),
                 (ours.attn.out_proj, theirs.self_attn.o_proj)]:
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-4 and (a.bias.grad - b.bias.grad).abs().max() < 1e-4
    kv = 2 * 8  # the value heads' bias rows: the last of the fused q/k/v bias
    assert (ours.attn.qkv_proj.bias.grad[-kv:] - theirs.self_attn.v_proj.bias.grad).abs().max() < 1e-4
    with torch.no_grad():  # the window matters
        full = attnkit.Starcoder2(c.replace(sliding_window=None))
        full.load_state_dict(model.state_dict())
        assert (full(ids).logits - hf(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_starcoder2_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_model(tmp_path, "Starcoder2", **WINDOW, tie_word_embeddings=False)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_starcoder2_without_biases_is_refused(tmp_path):
    hf_model(tmp_path, "Starcoder2", **WINDOW, use_bias=False)
    with pytest.raises(ConfigError, match="use_bias=false"):
        attnkit.from_pretrained(tmp_path)


def test_starcoder2_3b_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.Starcoder2(attnkit.Starcoder2Config.from_preset("starcoder2-3b"))
        theirs = transformers.Starcoder2ForCausalLM(transformers.Starcoder2Config(
            max_position_embeddings=16384, sliding_window=4096, bos_token_id=0, eos_token_id=0))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 3_030_371_328
