"""GPT-OSS against `transformers`' GptOssForCausalLM with identical weights, both directions:
attention sinks (as one more key, on the fused kernel), a window on every other layer, YaRN, the
router's bias, the clamped-SwiGLU experts with biases stacked with their gate and up outputs
alternating; and quantised checkpoints refused by name."""

import json

import pytest
import torch

import attnkit
from attnkit import CheckpointError, ConfigError
from attnkit.nn import attention as attention_module, scaled_dot_product_attention
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
YARN = {"rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
        "original_max_position_embeddings": 16, "rope_theta": 10000.0}
GPT_OSS = dict(vocab_size=V, hidden_size=32, intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
               max_position_embeddings=64, rope_parameters=YARN, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def hf_gpt_oss(path, **overrides):
    """A random ``GptOssForCausalLM`` saved to ``path``: every weight, bias and sink drawn, the
    experts' large enough that the SwiGLU's clamps bite."""
    torch.manual_seed(0)
    hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(**{**GPT_OSS, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if "norm" in n:
                p.normal_(1.0, 0.3)
            elif "experts" in n:
                p.normal_(0.0, 1.5)
            else:
                p.normal_(0.0, p.shape[-1] ** -0.5 if p.dim() > 1 else 1.0)
    hf.save_pretrained(path)
    return hf


def test_sinks_equal_the_softmax_with_one_more_logit():
    """The fused kernel with the sink key equals the formula written out, weights included."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    sinks = torch.randn(4, generator=g)
    scores = q @ k.transpose(-1, -2) / 8 ** 0.5
    scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    full = torch.cat([scores, sinks.view(1, 4, 1, 1).expand(2, 4, 5, 1)], dim=-1).softmax(-1)[..., :-1]
    y = scaled_dot_product_attention(q, k, v, is_causal=True, sinks=sinks)
    y_ref, w = scaled_dot_product_attention(q, k, v, is_causal=True, sinks=sinks, need_weights=True)
    assert (y - full @ v).abs().max() < 1e-5 and (y_ref - full @ v).abs().max() < 1e-5
    assert (w - full).abs().max() < 1e-6 and (w.sum(-1) < 1).all()


@pytest.mark.parametrize("block", [128, 1])
def test_gpt_oss_gives_transformers_logits_loss_and_gradients(tmp_path, monkeypatch, block):
    """With the window as a band mask, and block by block (``WINDOW_BLOCK`` 1: blocks of one
    query, the sinks in each)."""
    monkeypatch.setattr(attention_module, "WINDOW_BLOCK", block)
    hf = hf_gpt_oss(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.GptOss and c.attn_sinks and c.router_bias and c.window_layers == (0,)
    assert c.activation == "swiglu_clamped" and c.rope_scaling["rope_type"] == "yarn"
    ids = batch(20)[0][:1]  # past YaRN's original 16 and the window of 4
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    for a, b in [(ours.attn.sinks, theirs.self_attn.sinks), (ours.ffn.router.bias, theirs.mlp.router.bias),
                 (ours.attn.out_proj.bias, theirs.self_attn.o_proj.bias)]:
        assert (a.grad - b.grad).abs().max() < 1e-4
    gate_up = theirs.mlp.experts.gate_up_proj.grad  # (E, in, 2 · d_ff): gate and up outputs alternating
    for j in [j for j in range(4) if ours.ffn.experts[j].fc_gate.weight.grad is not None]:
        e = ours.ffn.experts[j]
        assert (e.fc_gate.weight.grad - gate_up[j][:, 0::2].t()).abs().max() < 1e-4
        assert (e.fc_in.weight.grad - gate_up[j][:, 1::2].t()).abs().max() < 1e-4
        assert (e.fc_in.bias.grad - theirs.mlp.experts.gate_up_proj_bias.grad[j][1::2]).abs().max() < 1e-4
        assert (e.fc_out.bias.grad - theirs.mlp.experts.down_proj_bias.grad[j]).abs().max() < 1e-4


def test_each_gpt_oss_feature_matters(tmp_path):
    """Without the sinks, the window, the router's bias, the clamps or YaRN the logits differ."""
    hf = hf_gpt_oss(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    ids = batch(20)[0][:1]
    state = model.state_dict()
    with torch.no_grad():
        ref = hf(ids).logits
        for change, drop in [(dict(attn_sinks=False), "sinks"), (dict(sliding_window=None, sliding_layers=None), None),
                             (dict(router_bias=False), "router.bias"), (dict(activation="swiglu"), None),
                             (dict(rope_scaling=None), None)]:
            other = attnkit.GptOss(model.config.replace(**change))
            other.load_state_dict({k: v for k, v in state.items() if drop is None or not k.endswith(drop)})
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_gpt_oss_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_gpt_oss(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_quantized_and_unsupported_gpt_oss_checkpoints_are_refused(tmp_path):
    hf_gpt_oss(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "mxfp4"}}))
    with pytest.raises(CheckpointError, match="quantization_config: 'mxfp4'"):
        attnkit.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "swiglu_limit": 10.0}))
    with pytest.raises(ConfigError, match="swiglu_limit"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("preset,hf_fields,count", [
    ("gpt-oss-120b", {}, 116_829_156_672),
    ("gpt-oss-20b", dict(num_hidden_layers=24, num_local_experts=32), 20_914_757_184)])
def test_gpt_oss_presets_have_transformers_parameter_counts(preset, hf_fields, count):
    with torch.device("meta"):
        ours = attnkit.GptOss(attnkit.GptOssConfig.from_preset(preset))
        theirs = transformers.GptOssForCausalLM(transformers.GptOssConfig(**hf_fields))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == count
