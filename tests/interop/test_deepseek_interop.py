"""DeepSeek-V3 against `transformers`' DeepseekV3ForCausalLM with identical weights, both
directions: multi-head latent attention (queries through a latent or not, interleaved rotary
pairs or not, YaRN with DeepSeek's score correction) and DeepSeekMoE (dense first layers, sigmoid
scores with a bias for the choice, group-limited routing, scaled weights, ungated shared experts)."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
# 3 layers, the first dense; 8 experts in 4 groups, 2 groups and 2 experts per token; 4 heads of
# 8 + 4 (rotary) query/key dimensions and 6 value dimensions.
DEEPSEEK = dict(vocab_size=V, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=4, n_shared_experts=2, n_routed_experts=8,
                routed_scaling_factor=2.5, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=4, qk_nope_head_dim=8,
                v_head_dim=6, n_group=4, topk_group=2, num_experts_per_tok=2, first_k_dense_replace=1,
                max_position_embeddings=64, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16,
        "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1}
VARIANTS = {"latent queries, interleaved": {}, "direct queries, halves": dict(q_lora_rank=None, rope_interleave=False),
            "yarn": dict(rope_parameters=YARN)}


@torch.no_grad()
def draw_weights(hf, vector_std: float | None = None):
    """Every weight of ``hf`` drawn (norm weights around 1; 1-D ones with ``vector_std`` when given),
    and the routers' score biases too, so that a missed tensor shows in the logits. Returns ``hf``."""
    for n, p in hf.named_parameters():
        std = vector_std if vector_std is not None and p.dim() == 1 else p.shape[-1] ** -0.5
        p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, std)
    for n, b in hf.named_buffers():
        if n.endswith("e_score_correction_bias"):
            b.normal_(0.0, 0.3)
    return hf


def hf_deepseek(path, **overrides):
    """A random ``DeepseekV3ForCausalLM`` saved to ``path`` (:func:`draw_weights`)."""
    torch.manual_seed(0)
    hf = draw_weights(transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(**{**DEEPSEEK, **overrides})))
    hf.eval().save_pretrained(path)
    return hf


@pytest.mark.parametrize("variant", VARIANTS)
def test_deepseek_v3_gives_transformers_logits_loss_and_gradients(tmp_path, variant):
    hf = hf_deepseek(tmp_path, **VARIANTS[variant])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.DeepseekV3 and c.kv_lora_rank == 16 and c.head_dim == 12 and c.rotary_dim == 4
    assert c.moe_layers == (1, 2) and c.dense_d_ff == 48 and c.shared_expert_d_ff == 32 and c.expert_groups == 4
    ids = batch(20)[0][:1]  # 20 tokens: past YaRN's original 16
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    pairs = [(ours.attn.kv_b_proj, theirs.self_attn.kv_b_proj), (ours.attn.kv_a_norm, theirs.self_attn.kv_a_layernorm),
             (ours.attn.kv_a_proj, theirs.self_attn.kv_a_proj_with_mqa), (ours.attn.out_proj, theirs.self_attn.o_proj),
             (ours.ffn.router, theirs.mlp.gate), (ours.ffn.shared_expert.fc_out, theirs.mlp.shared_experts.down_proj),
             (model.decoder.layers[0].ffn.fc_gate, hf.model.layers[0].mlp.gate_proj)]
    for a, b in pairs:
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-4
    experts = theirs.mlp.experts.down_proj.grad  # (8, 32, 16): transformers' fused expert tensors
    ran = [j for j in range(8) if ours.ffn.experts[j].fc_out.weight.grad is not None]  # the others: no token chose them
    assert len(ran) >= 4 and all(experts[j].abs().max() == 0 for j in range(8) if j not in ran)
    assert max((ours.ffn.experts[j].fc_out.weight.grad - experts[j]).abs().max() for j in ran) < 1e-4
    if c.q_lora_rank is not None:
        assert (ours.attn.q_a_norm.weight.grad - theirs.self_attn.q_a_layernorm.weight.grad).abs().max() < 1e-4
    if variant == "yarn":  # transformers scales the scores by mscale(4, mscale_all_dim)² too
        assert c.attn_scale_dim == pytest.approx(12 / (1 + 0.1 * torch.log(torch.tensor(4.0)).item()) ** 4)


def test_each_deepseek_feature_matters(tmp_path):
    """Leaving out any one feature gives other logits than transformers': the group limit, the
    score bias, the routed scaling, the renormalisation, the interleaved rotary pairs, YaRN's score
    correction."""
    hf = hf_deepseek(tmp_path, rope_parameters=YARN)
    model = attnkit.from_pretrained(tmp_path)
    ids = batch(20)[0][:1]
    with torch.no_grad():
        ref = hf(ids).logits
        assert (model(ids).logits - ref).abs().max() < 1e-4
        state = model.state_dict()
        for change in [dict(expert_groups=None, expert_groups_per_token=None), dict(routed_scaling_factor=1.0),
                       dict(normalize_expert_weights=False), dict(rope_interleave=False), dict(attn_scale_dim=None)]:
            other = attnkit.DeepseekV3(model.config.replace(**change))
            other.load_state_dict(state)
            assert (other(ids).logits - ref).abs().max() > 1e-3, change
        other = attnkit.DeepseekV3(model.config)
        other.load_state_dict({k: torch.zeros_like(v) if k.endswith("score_bias") else v for k, v in state.items()})
        assert (other(ids).logits - ref).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_deepseek_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_deepseek(tmp_path, rope_parameters=YARN)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_cached_decoding_equals_the_full_forward_and_the_cache_holds_latents():
    """Each decoding step (the heads folded into one shared-key head) gives the logits of the
    full forward; the cache holds a latent of kv_lora_rank + rotary_dim keys and kv_lora_rank
    values per position, one head, whatever the number of heads."""
    model = attnkit.DeepseekV3(attnkit.DeepseekV3Config.from_preset("deepseek-v3-tiny")).eval()
    ids = torch.randint(3, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(2, 12)
        steps = [model(ids[:, :5], cache=cache).logits]
        steps += [model(ids[:, t:t + 1], cache=cache).logits for t in range(5, 12)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5
    k, v = cache.layer(0)[0].keys_values()
    assert k.shape == (2, 1, 12, 16 + 4) and v.shape == (2, 1, 12, 16)


def test_unsupported_deepseek_configs_are_refused(tmp_path):
    hf_deepseek(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for change, match in [(dict(attention_bias=True), "attention_bias"), (dict(output_router_logits=True), "auxiliary"),
                          (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), "YaRN")]:
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=match):
            attnkit.from_pretrained(tmp_path)


# GLM-4.5 in small: 3 layers, the first dense; 8 experts in 4 groups; q/k/v biases and per-head
# query/key norms; half of each 8-wide head rotated.
GLM = dict(vocab_size=V, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
           num_attention_heads=4, num_key_value_heads=2, head_dim=8, n_shared_experts=1, n_routed_experts=8,
           routed_scaling_factor=2.5, n_group=4, topk_group=2, num_experts_per_tok=2, first_k_dense_replace=1,
           attention_bias=True, use_qk_norm=True, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=1,
           eos_token_id=2, pad_token_id=0,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})


def hf_glm(path, **overrides):
    """A random ``Glm4MoeForCausalLM`` saved to ``path``, weights, biases and score biases drawn."""
    torch.manual_seed(0)
    hf = draw_weights(transformers.Glm4MoeForCausalLM(transformers.Glm4MoeConfig(**{**GLM, **overrides})), 0.5)
    hf.eval().save_pretrained(path)
    return hf


def test_glm4_moe_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_glm(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Glm4Moe and c.rotary_dim == 4 and c.qkv_bias and c.qk_norm and c.moe_layers == (1, 2)
    assert c.expert_groups == 4 and c.routed_scaling_factor == 2.5 and c.shared_expert_d_ff == 16
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    for a, b in [(ours.attn.q_norm, theirs.self_attn.q_norm), (ours.ffn.router, theirs.mlp.gate),
                 (ours.ffn.shared_expert.fc_out, theirs.mlp.shared_experts.down_proj)]:
        assert (a.weight.grad - b.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # the partial rotation, the norms, the score bias matter
        ref = hf(ids).logits
        for change in [dict(rotary_dim=None), dict(expert_groups=None, expert_groups_per_token=None)]:
            other = attnkit.Glm4Moe(c.replace(**change))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, change


@pytest.mark.parametrize("num_beams", [1, 3])
def test_glm4_moe_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_glm(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


def test_multi_token_prediction_layers_are_skipped(tmp_path):
    """A checkpoint with a layer past num_hidden_layers (GLM-4.5's and DeepSeek-V3's
    multi-token-prediction layer, with keys of its own) loads, with the same logits."""
    from safetensors.torch import load_file, save_file

    hf = hf_glm(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    extra = {k.replace("model.layers.2.", "model.layers.3."): v.clone() for k, v in state.items()
             if "model.layers.2." in k}
    extra.update({"model.layers.3.eh_proj.weight": torch.zeros(32, 64), "model.layers.3.enorm.weight": torch.ones(32)})
    save_file({**state, **extra}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = attnkit.from_pretrained(tmp_path)
    ids = batch(12)[0][:1]
    with torch.no_grad():
        assert (model(ids).logits - hf(ids).logits).abs().max() < 1e-4


DOTS = dict(vocab_size=V, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, n_shared_experts=2, n_routed_experts=8,
            num_experts_per_tok=2, first_k_dense_replace=1, routed_scaling_factor=2.0, max_position_embeddings=64,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, sliding_window=4,
            layer_types=["full_attention", "sliding_attention", "full_attention"])


def test_dots1_gives_transformers_logits_loss_gradients_and_generation(tmp_path):
    """dots.llm1: Qwen3's attention (per-head query/key norms, a window on layer 1 here) and
    DeepSeekMoE without renormalised weights."""
    torch.manual_seed(0)
    hf = draw_weights(transformers.Dots1ForCausalLM(transformers.Dots1Config(**DOTS))).eval()
    hf.save_pretrained(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Dots1 and c.qk_norm and not c.normalize_expert_weights and c.window_layers == (1,)
    assert c.shared_expert_d_ff == 32 and c.moe_layers == (1, 2) and c.routed_scaling_factor == 2.0
    lm_loss_and_logits_match(model, hf, batch(20)[0][:1])
    theirs = hf.model.layers[1].self_attn.k_norm.weight.grad
    assert (model.decoder.layers[1].attn.k_norm.weight.grad - theirs).abs().max() < 1e-4
    assert generation_matches(model, hf, num_beams=1)
