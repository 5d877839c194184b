"""GPT-J against `transformers`' GPTJForCausalLM with identical weights, both directions: parallel
sublayers on one LayerNorm, partial rotary positions in interleaved pairs, no attention biases,
biases on the feed-forward and the LM head."""

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96


def hf_gptj(path, **overrides):
    """A random ``GPTJForCausalLM`` (4 heads of 8, 4 dimensions rotated) saved to ``path``, every
    weight and bias drawn (LayerNorm weights around 1)."""
    torch.manual_seed(0)
    config = transformers.GPTJConfig(vocab_size=V, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64,
                                     bos_token_id=1, eos_token_id=2, **overrides)
    hf = transformers.GPTJForCausalLM(config).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "ln_" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def test_gptj_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_gptj(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.GPTJ and c.rotary_dim == 4 and c.rope_interleave and c.shared_norm
    layer = model.decoder.layers[1]
    assert layer.attn.qkv_proj.bias is None and layer.attn.out_proj.bias is None and layer.ffn.fc_in.bias is not None
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    theirs = hf.transformer.h[1]
    for a, b in [(layer.attn_norm, theirs.ln_1), (layer.ffn.fc_out, theirs.mlp.fc_out), (model.lm_head, hf.lm_head)]:
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-4 and (a.bias.grad - b.bias.grad).abs().max() < 1e-4
    with torch.no_grad():  # the interleaved pairs matter
        other = attnkit.GPTJ(c.replace(rope_interleave=False))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_gptj_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_gptj(tmp_path, pad_token_id=0)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_gpt_j_6b_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours, theirs = attnkit.GPTJ(attnkit.GPTJConfig.from_preset("gpt-j-6b")), transformers.GPTJForCausalLM(
            transformers.GPTJConfig())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 6_050_882_784
