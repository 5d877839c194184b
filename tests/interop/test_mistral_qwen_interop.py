"""Mistral (sliding-window attention), Qwen2 (q/k/v biases), Qwen3 (query/key norms, its own
head size) and Phi-3 (fused q/k/v and gate/up matrices) against `transformers`'
MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and Phi3ForCausalLM with identical
weights, both directions."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
             rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, bos_token_id=1, eos_token_id=2)


CONFIG_NAMES = {"Gemma3": "Gemma3TextConfig"}


def hf_model(tmp_path, family, **overrides):
    """A random ``{Mistral,Qwen2,Qwen3,Phi3}ForCausalLM`` saved to ``tmp_path``, every weight and bias drawn
    (norm weights around 1) so that a missed or misplaced tensor shows in the logits."""
    torch.manual_seed(0)
    config = getattr(transformers, CONFIG_NAMES.get(family, f"{family}Config"))(**{**SMALL, **overrides})
    hf = getattr(transformers, f"{family}ForCausalLM")(config).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(tmp_path)
    return hf


def lm_loss_and_logits_match(model, hf, ids):
    """Logits (1e-4) and next-token loss (1e-5) equal transformers'; backpropagates both losses."""
    got, ref = model(ids, labels=ids), hf(ids, labels=ids)
    assert (got.logits - ref.logits).abs().max() < 1e-4
    assert torch.allclose(got.loss, ref.loss, atol=1e-5)
    got.loss.backward()
    ref.loss.backward()


def generation_matches(model, hf, num_beams):
    """Greedy or beam-search tokens on the left-padded :func:`batch` equal transformers' ``generate``."""
    ids, mask = batch()
    # transformers' beam search fills finished rows with `pad_token_id or eos`: EOS (2), since the pad is id 0.
    got = model.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=num_beams, do_sample=False,
                         pad_token_id=2 if num_beams > 1 else 0)
    with torch.no_grad():
        ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=num_beams, do_sample=False,
                          pad_token_id=0)
    return torch.equal(got, ref)


def batch(length=12):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (3, length), generator=g)
    starts = torch.tensor([[0], [4], [length - 3]])
    mask = (torch.arange(length)[None] >= starts).long()  # left padding
    return ids.masked_fill(mask == 0, 0), mask


def test_qwen2_checkpoint_gives_transformers_logits_loss_and_bias_gradients(tmp_path):
    hf = hf_model(tmp_path, "Qwen2")
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Qwen2 and model.config.qkv_bias and not model.config.bias
    attn = model.decoder.layers[0].attn
    assert attn.qkv_proj.bias is not None and attn.out_proj.bias is None and model.decoder.layers[0].ffn.fc_in.bias is None
    lm_loss_and_logits_match(model, hf, batch()[0][:1])  # and both have gradients now
    theirs = torch.cat([getattr(hf.model.layers[0].self_attn, f"{x}_proj").bias.grad for x in "qkv"])
    assert (attn.qkv_proj.bias.grad - theirs).abs().max() < 1e-4


def test_qwen3_query_key_norms_and_head_size_give_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Qwen3", head_dim=16)  # 4 heads of 16 on a 32-wide model
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Qwen3 and model.config.qk_norm and model.config.head_dim == 16
    attn = model.decoder.layers[1].attn
    assert attn.qkv_proj.weight.shape == (4 * 16 + 2 * 2 * 16, 32) and attn.out_proj.weight.shape == (32, 64)
    lm_loss_and_logits_match(model, hf, batch()[0][:1])  # and both have gradients now
    for x in "qk":
        theirs = getattr(hf.model.layers[1].self_attn, f"{x}_norm").weight.grad
        assert (getattr(attn, f"{x}_norm").weight.grad - theirs).abs().max() < 1e-4


def test_olmo2_output_norms_and_whole_projection_qk_norms_give_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Olmo2")
    model = attnkit.from_pretrained(tmp_path)
    layer = model.decoder.layers[1]
    assert type(model) is attnkit.Olmo2 and layer.attn_norm is None and layer.ffn_norm is None
    assert layer.attn.q_norm.weight.shape == (32,) and layer.attn.k_norm.weight.shape == (16,)  # 4 and 2 heads of 8
    lm_loss_and_logits_match(model, hf, batch()[0][:1])  # and both have gradients now
    theirs = hf.model.layers[1]
    for ours, ref in ((layer.attn.k_norm, theirs.self_attn.k_norm), (layer.ffn_post_norm, theirs.post_feedforward_layernorm),
                      (layer.attn_post_norm, theirs.post_attention_layernorm)):
        assert (ours.weight.grad - ref.weight.grad).abs().max() < 1e-4


def test_mixtral_experts_give_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Mixtral", num_local_experts=4)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Mixtral and model.config.n_experts == 4 and model.config.experts_per_token == 2
    lm_loss_and_logits_match(model, hf, batch(20)[0][:1])  # and both have gradients now
    ours, theirs = model.decoder.layers[1].ffn, hf.model.layers[1].mlp
    assert (ours.router.weight.grad - theirs.gate.weight.grad).abs().max() < 1e-4
    for j, expert in enumerate(ours.experts):  # transformers holds each expert's gate and up rows in one tensor
        joined = torch.cat([expert.fc_gate.weight.grad, expert.fc_in.weight.grad])
        assert (joined - theirs.experts.gate_up_proj.grad[j]).abs().max() < 1e-4
        assert (expert.fc_out.weight.grad - theirs.experts.down_proj.grad[j]).abs().max() < 1e-4


QWEN3_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, head_dim=8)


@pytest.mark.parametrize("normalize", [True, False])
def test_qwen3_moe_experts_give_transformers_logits_loss_and_gradients(tmp_path, normalize):
    hf = hf_model(tmp_path, "Qwen3Moe", **QWEN3_MOE, norm_topk_prob=normalize)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Qwen3Moe and c.n_experts == 4 and c.d_ff == 24
    assert c.normalize_expert_weights is normalize and c.qk_norm
    lm_loss_and_logits_match(model, hf, batch(20)[0][:1])
    ours, theirs = model.decoder.layers[0].ffn, hf.model.layers[0].mlp
    assert (ours.router.weight.grad - theirs.gate.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # whether the weights are renormalised matters
        other = attnkit.Qwen3Moe(c.replace(normalize_expert_weights=not normalize))
        other.load_state_dict(model.state_dict())
        ids = batch(20)[0][:1]
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3


QWEN2_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, shared_expert_intermediate_size=40)


def test_qwen2_moe_shared_expert_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Qwen2Moe", **QWEN2_MOE)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Qwen2Moe and c.shared_expert_d_ff == 40 and c.qkv_bias
    assert not c.normalize_expert_weights
    lm_loss_and_logits_match(model, hf, batch(20)[0][:1])
    ours, theirs = model.decoder.layers[1].ffn, hf.model.layers[1].mlp
    assert (ours.shared_gate.weight.grad - theirs.shared_expert_gate.weight.grad).abs().max() < 1e-4
    assert (ours.shared_expert.fc_out.weight.grad - theirs.shared_expert.down_proj.weight.grad).abs().max() < 1e-4


@pytest.mark.parametrize("family,overrides", [("Mixtral", dict(num_local_experts=4)), ("Qwen2Moe", QWEN2_MOE)])
def test_router_balance_loss_is_transformers_auxiliary_loss_with_padding(tmp_path, family, overrides):
    hf = hf_model(tmp_path, family, **overrides, output_router_logits=True, router_aux_loss_coef=0.5)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.router_aux_loss_coef == 0.5
    ids, mask = batch(16)
    labels = ids.masked_fill(mask == 0, -100)
    got = model(ids, attention_mask=mask, labels=labels).loss
    ref = hf(ids, attention_mask=mask, labels=labels)
    assert torch.allclose(got, ref.loss, atol=1e-5) and ref.aux_loss > 1.0  # the auxiliary part counts
    without = type(model)(model.config.replace(router_aux_loss_coef=0.0))
    without.load_state_dict(model.state_dict())
    assert torch.allclose(got - without(ids, attention_mask=mask, labels=labels).loss, 0.5 * ref.aux_loss, atol=1e-5)
    got.backward()
    ref.loss.backward()
    ours, theirs = model.decoder.layers[0].ffn.router.weight.grad, hf.model.layers[0].mlp.gate.weight.grad
    assert (ours - theirs).abs().max() < 1e-4


def test_mixtral_router_jitter_equals_transformers_in_training(tmp_path):
    """``router_jitter_noise``: in training, the same noise for the same seed (drawn in the same
    order) gives transformers' loss and gradients; in evaluation there is none."""
    hf = hf_model(tmp_path, "Mixtral", num_local_experts=4, router_jitter_noise=0.3)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.router_jitter_noise == 0.3
    ids = batch(16)[0][:1]
    with torch.no_grad():
        assert (model(ids).logits - hf(ids).logits).abs().max() < 1e-4  # eval: no jitter
    model.train(), hf.train()
    torch.manual_seed(5)
    got = model(ids, labels=ids).loss
    torch.manual_seed(5)
    ref = hf(ids, labels=ids).loss
    assert torch.allclose(got, ref, atol=1e-5)
    torch.manual_seed(6)
    assert not torch.allclose(model(ids, labels=ids).loss, got, atol=1e-5)  # other noise, another loss
    got.backward()
    ref.backward()
    ours, theirs = model.decoder.layers[1].ffn.router.weight.grad, hf.model.layers[1].mlp.gate.weight.grad
    assert (ours - theirs).abs().max() < 1e-4


OLMOE = dict(num_experts=4, num_experts_per_tok=2, pad_token_id=0)


def test_olmoe_norms_and_experts_give_transformers_logits_loss_and_gradients(tmp_path):
    """OLMoE: query/key RMSNorms over all heads (the key norm as wide as the key heads) and
    experts whose weights are not renormalised, against ``OlmoeForCausalLM``."""
    hf = hf_model(tmp_path, "Olmoe", **OLMOE)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Olmoe and c.n_experts == 4 and c.d_ff == 48 and not c.normalize_expert_weights
    assert c.qk_norm and not c.qk_norm_per_head
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    ours, theirs = model.decoder.layers[1], hf.model.layers[1]
    assert (ours.attn.k_norm.weight.grad - theirs.self_attn.k_norm.weight.grad).abs().max() < 1e-4
    assert (ours.ffn.router.weight.grad - theirs.mlp.gate.weight.grad).abs().max() < 1e-4
    with torch.no_grad():  # renormalising the chosen experts' weights would give other logits
        other = attnkit.Olmoe(c.replace(normalize_expert_weights=True))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
    (tmp_path / "config.json").write_text(json.dumps({**json.loads((tmp_path / "config.json").read_text()),
                                                      "attention_bias": True}))
    with pytest.raises(ConfigError, match="attention_bias"):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("family,overrides,sparse", [
    ("Qwen3Moe", dict(QWEN3_MOE, mlp_only_layers=[0]), (1,)),
    ("Qwen2Moe", dict(QWEN2_MOE, num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[3]), (1,)),
])
def test_moe_dense_layers_give_transformers_logits_and_gradients_and_save_back(tmp_path, family, overrides, sparse):
    """``mlp_only_layers`` / ``decoder_sparse_step``: the other layers are dense feed-forwards of
    ``intermediate_size`` (48), read into ``moe_layers`` and ``dense_d_ff`` and written back."""
    hf = hf_model(tmp_path / "hf", family, **overrides)
    model = attnkit.from_pretrained(tmp_path / "hf")
    c = model.config
    assert c.moe_layers == sparse and c.dense_d_ff == 48 and c.d_ff == 24
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    dense, theirs = model.decoder.layers[0].ffn, hf.model.layers[0].mlp
    assert dense.fc_in.weight.shape == (48, 32)
    assert (dense.fc_out.weight.grad - theirs.down_proj.weight.grad).abs().max() < 1e-4
    assert (model.decoder.layers[1].ffn.router.weight.grad - hf.model.layers[1].mlp.gate.weight.grad).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "ours")
    again = getattr(transformers, f"{family}ForCausalLM").from_pretrained(tmp_path / "ours").eval()
    assert [i for i in range(c.n_layers) if i not in sparse] == again.config.mlp_only_layers
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4
    assert attnkit.from_pretrained(tmp_path / "ours").config == c


def test_phi3_fused_gate_up_matrix_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Phi3", pad_token_id=0)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Phi3
    lm_loss_and_logits_match(model, hf, batch()[0][:1])  # and both have gradients now
    ffn = model.decoder.layers[1].ffn
    theirs = hf.model.layers[1].mlp.gate_up_proj.weight.grad  # gate rows, then up rows
    assert (torch.cat([ffn.fc_gate.weight.grad, ffn.fc_in.weight.grad]) - theirs).abs().max() < 1e-4
    qkv = hf.model.layers[1].self_attn.qkv_proj.weight.grad
    assert (model.decoder.layers[1].attn.qkv_proj.weight.grad - qkv).abs().max() < 1e-4


def test_mistral_sliding_window_gives_transformers_logits_beyond_the_window(tmp_path):
    hf = hf_model(tmp_path, "Mistral", sliding_window=4)
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Mistral and model.config.sliding_window == 4
    ids = batch()[0][:1]  # 12 tokens: 8 of them see only part of the sequence
    with torch.no_grad():
        got, ref = model(ids).logits, hf(ids).logits
        assert (got - ref).abs().max() < 1e-4
        # The window matters here: without it attnkit gives other logits.
        full = attnkit.Mistral(model.config.replace(sliding_window=None))
        full.load_state_dict(model.state_dict())
        assert (full(ids).logits - ref).abs().max() > 1e-2


# LongRoPE for heads of 8 (4 frequencies), trained on 16 positions and stretched to 64: the long
# factors from the 17th position on, cos and sin scaled by sqrt(1 + ln 4 / ln 16).
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.5, 3.0, 5.0],
            "long_factor": [1.0, 4.0, 9.0, 20.0]}
PHI3_LONG = dict(pad_token_id=0, original_max_position_embeddings=16, rope_parameters=LONGROPE)
# Phi-4-mini's partial rotary embedding: the first half of each head rotates (2 frequencies).
PHI4 = dict(pad_token_id=0, original_max_position_embeddings=16,
            rope_parameters={**LONGROPE, "short_factor": [1.0, 3.0], "long_factor": [2.0, 11.0],
                             "partial_rotary_factor": 0.5})


@pytest.mark.parametrize("length", [12, 20])  # short factors; long ones (past 16 positions)
def test_phi3_longrope_gives_transformers_logits_with_short_and_long_factors(tmp_path, length):
    hf = hf_model(tmp_path, "Phi3", **PHI3_LONG)
    model = attnkit.from_pretrained(tmp_path)
    scaling = model.config.rope_scaling
    assert scaling["rope_type"] == "longrope" and scaling["original_max_position_embeddings"] == 16
    assert scaling["factor"] == 4.0 and abs(scaling["attention_factor"] - 1.5 ** 0.5) < 1e-12
    ids = batch(length)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    with torch.no_grad():  # the set of factors that applies matters, and so does the scale
        ref = hf(ids).logits
        for change in (dict(short_factor=LONGROPE["long_factor"], long_factor=LONGROPE["short_factor"]),
                       dict(attention_factor=1.0)):
            other = attnkit.Phi3(model.config.replace(rope_scaling={**scaling, **change}))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3


def test_longrope_factor_lists_of_the_wrong_length_are_refused(tmp_path):
    hf_model(tmp_path, "Phi3", **PHI3_LONG)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_parameters"]["short_factor"] = [1.0, 2.0]  # heads of 8 have 4 frequencies
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="short_factor needs one factor per frequency: 4, got 2"):
        attnkit.from_pretrained(tmp_path)


def test_phi4_mini_partial_rotary_embedding_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Phi3", **PHI4)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.rotary_dim == 4 and model.config.dim_per_head == 8
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    qkv = hf.model.layers[0].self_attn.qkv_proj.weight.grad
    assert (model.decoder.layers[0].attn.qkv_proj.weight.grad - qkv).abs().max() < 1e-4
    with torch.no_grad():  # rotating whole heads gives other logits
        whole = attnkit.Phi3(model.config.replace(rotary_dim=None, rope_scaling=None))
        whole.load_state_dict(model.state_dict())
        assert (whole(ids).logits - hf(ids).logits).abs().max() > 1e-3


QWEN_WINDOW = dict(use_sliding_window=True, sliding_window=4, max_window_layers=1)  # on layer 1 of 2


@pytest.mark.parametrize("family", ["Qwen2", "Qwen3"])
def test_qwen_sliding_window_layers_give_transformers_logits_and_save_back(tmp_path, family):
    hf = hf_model(tmp_path / "hf", family, **QWEN_WINDOW)
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert model.config.sliding_window == 4 and model.config.window_layers == (1,)
    ids = batch()[0][:1]  # 12 tokens: past the window
    with torch.no_grad():
        ref = hf(ids).logits
        assert (model(ids).logits - ref).abs().max() < 1e-4
        for layers in ((0, 1), (0,)):  # the window on the wrong layers gives other logits
            other = type(model)(model.config.replace(sliding_layers=layers))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3
        model.save_pretrained(tmp_path / "ours")
        again = getattr(transformers, f"{family}ForCausalLM").from_pretrained(tmp_path / "ours").eval()
        assert again.config.layer_types == ["full_attention", "sliding_attention"]
        assert (again(ids).logits - ref).abs().max() < 1e-4
    assert attnkit.from_pretrained(tmp_path / "ours").config == model.config


@pytest.mark.parametrize("family,overrides", [("Qwen2", QWEN_WINDOW), ("Mistral", dict(sliding_window=5, head_dim=16)),
                                              ("Qwen3", dict(head_dim=16)), ("Phi3", PHI3_LONG), ("Phi3", PHI4),
                                              ("Phi3", dict(pad_token_id=0, sliding_window=6)), ("Olmo2", {}),
                                              ("Mixtral", dict(num_local_experts=4, sliding_window=6)),
                                              ("Qwen3Moe", dict(QWEN3_MOE, norm_topk_prob=True)),
                                              ("Qwen2Moe", QWEN2_MOE), ("Olmoe", OLMOE)])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, family, overrides, num_beams):
    hf = hf_model(tmp_path, family, **overrides)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


PHI4_TINY = dict(rotary_dim=4, rope_scaling={"rope_type": "longrope", "factor": 4.0, "short_factor": [1.0, 3.0],
                                             "long_factor": [2.0, 11.0], "original_max_position_embeddings": 16,
                                             "attention_factor": 1.2})  # 20 tokens below: the long factors


@pytest.mark.parametrize("family,preset,overrides", [("Qwen2", "qwen2-tiny", {}), ("Mistral", "mistral-tiny", {}),
                                                     ("Qwen3", "qwen3-tiny", {}), ("Phi3", "phi3-tiny", {}),
                                                     ("Phi3", "phi3-tiny", PHI4_TINY), ("Olmo2", "olmo2-tiny", {}),
                                                     ("Mixtral", "mixtral-tiny", {}),
                                                     ("Qwen3Moe", "qwen3-moe-tiny", {}),
                                                     ("Qwen2Moe", "qwen2-moe-tiny", {}),
                                                     ("Olmoe", "olmoe-tiny", {}), ("Granite", "granite-tiny", {}),
                                                     ("Phi", "phi-tiny", {}), ("Starcoder2", "starcoder2-tiny", {}),
                                                     ("DeepseekV3", "deepseek-v3-tiny", {}),
                                                     ("Llama4", "llama4-tiny", {}),
                                                     ("Cohere2", "cohere2-tiny", {}),
                                                     ("Glm4Moe", "glm4-moe-tiny", {}),
                                                     ("GraniteMoe", "granitemoe-tiny", {}),
                                                     ("Dots1", "dots1-tiny", {}),
                                                     ("GptOss", "gpt-oss-tiny", {}), ("GPTNeo", "gpt-neo-tiny", {}),
                                                     ("OPT", "opt-tiny", {}), ("Bloom", "bloom-tiny", {}),
                                                     ("Falcon", "falcon-tiny", {}), ("StableLm", "stablelm-tiny", {}),
                                                     ("StableLm", "stablelm-tiny", dict(parallel_residual=True,
                                                                                        shared_norm=True)),
                                                     ("Exaone4", "exaone4-tiny", {}), ("Helium", "helium-tiny", {}),
                                                     ("Arcee", "arcee-tiny", {}), ("Nemotron", "nemotron-tiny", {}),
                                                     ("Ministral", "ministral-tiny", {}), ("Olmo", "olmo-tiny", {}),
                                                     ("Mpt", "mpt-tiny", {}),
                                                     ("Cohere", "cohere-tiny", {}), ("Olmo3", "olmo3-tiny", {}),
                                                     ("SmolLM3", "smollm3-tiny", {}),
                                                     ("Ernie4_5", "ernie4_5-tiny", dict(bias=True)),
                                                     ("SeedOss", "seed-oss-tiny", {}), ("GPTJ", "gptj-tiny", {}),
                                                     ("Glm", "glm-tiny", {}), ("Glm4", "glm4-tiny", {}),
                                                     ("Olmo3", "olmo3-tiny", dict(
                                                         rope_local_base=1000.0, rope_scaling={
                                                             "rope_type": "linear", "factor": 2.0}))])
def test_attnkit_models_saved_load_in_transformers_with_same_logits(tmp_path, family, preset, overrides):
    """Saves of each family's preset (its zero-initialised biases, DeepSeek's score biases and
    GPT-OSS's sinks drawn, and the norms' weights moved off their initial values, so that a
    dropped one or a lost offset shows) load in transformers with the same logits, and in attnkit
    with the same config."""
    cls = getattr(attnkit, family)
    model = cls(getattr(attnkit, f"{family}Config").from_preset(preset, **overrides)).eval()
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith(("bias", "score_bias", "sinks")) and not t.any():
                t.normal_(0.0, 0.3)
            elif "norm" in name and name.endswith("weight"):
                t.add_(torch.randn_like(t) * 0.2)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == cls.config_class.model_type and saved["architectures"] == [f"{family}ForCausalLM"]
    hf, info = getattr(transformers, f"{family}ForCausalLM").from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = batch(length=20)[0]  # longer than mistral-tiny's window of 8
    with torch.no_grad():
        assert (model(ids).logits - hf.eval()(ids).logits).abs().max() < 1e-4
    again = attnkit.from_pretrained(tmp_path)
    assert type(again) is cls and again.config == model.config


@pytest.mark.parametrize("family,overrides,match", [
    ("Qwen2", dict(use_sliding_window=True, sliding_window=8, layer_types=["full_attention", "chunked_attention"]),
     "layer_types"),
    ("Qwen3", dict(attention_bias=True), "attention_bias=true"),
    ("Qwen2", dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
     "partial_rotary_factor"),
])
def test_unsupported_variants_are_refused_naming_the_field(tmp_path, family, overrides, match):
    hf_model(tmp_path, family, **overrides)
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("family,preset,hf_fields", [
    ("Mistral", "mistral-7b-v0.1", dict()),
    ("Mistral", "mistral-7b-v0.3", dict(vocab_size=32768)),
    ("Qwen2", "qwen2.5-0.5b", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)),
    ("Phi3", "phi-3-mini-4k", dict()),
    ("Qwen3", "qwen3-0.6b", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, tie_word_embeddings=True)),
    ("Olmo2", "olmo-2-1b", dict(vocab_size=100352, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                num_attention_heads=16)),
    ("Olmo2", "olmo-2-7b", dict(vocab_size=100352)),
    ("Mixtral", "mixtral-8x7b", dict(max_position_embeddings=32768)),
    ("Qwen2Moe", "qwen1.5-moe-a2.7b", dict(
        hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
        moe_intermediate_size=1408, shared_expert_intermediate_size=5632, num_experts=60, num_experts_per_tok=4)),
    ("Qwen3Moe", "qwen3-30b-a3b", dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
                                       num_key_value_heads=4, head_dim=128, moe_intermediate_size=768, num_experts=128,
                                       num_experts_per_tok=8)),
    ("Qwen3", "qwen3-1.7b", dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, tie_word_embeddings=True)),
])
def test_presets_have_the_parameter_counts_of_transformers_models_of_that_shape(family, preset, hf_fields):
    with torch.device("meta"):
        ours = getattr(attnkit, family)(getattr(attnkit, f"{family}Config").from_preset(preset))
        theirs = getattr(transformers, f"{family}ForCausalLM")(getattr(transformers, f"{family}Config")(**hf_fields))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)
