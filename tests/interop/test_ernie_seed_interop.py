"""ERNIE 4.5 (interleaved rotary pairs, biases everywhere or nowhere) and Seed-OSS (q/k/v biases)
against `transformers`' Ernie4_5ForCausalLM and SeedOssForCausalLM with identical weights."""

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

FAMILIES = {"Ernie4_5": dict(head_dim=8, use_bias=True, pad_token_id=0),
            "SeedOss": dict(head_dim=8, attention_bias=True, pad_token_id=0)}


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_loss_and_gradients_equal_transformers(tmp_path, family):
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is getattr(attnkit, family)
    ids = batch()[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    assert (ours.attn.qkv_proj.bias.grad[:32] - theirs.self_attn.q_proj.bias.grad).abs().max() < 1e-4
    if family == "Ernie4_5":  # biases everywhere; the interleaved rotation matters
        assert c.bias and c.rope_interleave
        assert (ours.ffn.fc_out.bias.grad - theirs.mlp.down_proj.bias.grad).abs().max() < 1e-4
        with torch.no_grad():
            other = attnkit.Ernie4_5(c.replace(rope_interleave=False))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
    else:  # q/k/v biases alone
        assert c.qkv_bias and not c.bias and ours.attn.out_proj.bias is None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, family, num_beams):
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_seed_oss_output_biases_are_refused(tmp_path):
    hf_model(tmp_path, "SeedOss", **FAMILIES["SeedOss"], attention_out_bias=True)
    with pytest.raises(ConfigError, match="attention_out_bias"):
        attnkit.from_pretrained(tmp_path)


ERNIE_MOE = dict(vocab_size=96, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, moe_num_experts=4, moe_k=2, moe_num_shared_experts=1,
                 moe_layer_start_index=1, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_ernie_moe(path):
    torch.manual_seed(0)
    hf = transformers.Ernie4_5_MoeForCausalLM(transformers.Ernie4_5_MoeConfig(**ERNIE_MOE)).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if n.endswith("e_score_correction_bias"):
                p.normal_(0.0, 0.3)  # large enough to change the choice
            else:
                p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def test_ernie4_5_moe_gives_transformers_logits_loss_gradients_and_generation(tmp_path):
    """ERNIE 4.5 MoE: softmax scores shifted by a learned bias for the choice (stored ``(1, E)``),
    a shared expert, the first layer dense, interleaved rotary pairs."""
    hf = hf_ernie_moe(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Ernie4_5Moe and c.score_bias and c.router_scoring == "softmax"
    assert c.moe_layers == (1, 2) and c.shared_expert_d_ff == 16 and c.dense_d_ff == 48
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    assert (model.decoder.layers[1].ffn.router.weight.grad - hf.model.layers[1].mlp.gate.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # the score bias matters
        other = attnkit.Ernie4_5Moe(c)
        other.load_state_dict({k: torch.zeros_like(v) if k.endswith("score_bias") else v
                               for k, v in model.state_dict().items()})
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
    assert generation_matches(model, hf, num_beams=1)
    model.save_pretrained(tmp_path / "again")
    again = transformers.Ernie4_5_MoeForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4
