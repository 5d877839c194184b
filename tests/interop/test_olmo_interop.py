"""OLMo (1) against `transformers`' OlmoForCausalLM with identical weights, both directions:
LayerNorms without weights or biases, and queries, keys and values clamped (``clip_qkv``), also
in OLMoE."""

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")


def test_olmo_gives_transformers_logits_loss_gradients_and_generation(tmp_path):
    hf = hf_model(tmp_path, "Olmo", clip_qkv=0.3, pad_token_id=0)  # a clamp random weights reach
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Olmo and c.norm == "layernorm_unweighted" and c.clip_qkv == 0.3
    assert not [n for n, _ in model.named_parameters() if "norm" in n]
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    theirs = hf.model.layers[1].self_attn.q_proj.weight.grad
    assert (model.decoder.layers[1].attn.qkv_proj.weight.grad[:32] - theirs).abs().max() < 1e-4
    with torch.no_grad():  # the clamp matters
        other = attnkit.Olmo(c.replace(clip_qkv=None))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
    assert generation_matches(model, hf, num_beams=3)


def test_olmoe_reads_clip_qkv(tmp_path):
    """OLMoE clamps after its all-heads query/key norms; without the clamp the logits differ."""
    from tests.interop.test_mistral_qwen_interop import OLMOE

    hf = hf_model(tmp_path, "Olmoe", **OLMOE, clip_qkv=0.3)
    model = attnkit.from_pretrained(tmp_path)
    assert model.config.clip_qkv == 0.3
    ids = batch(20)[0][:1]
    with torch.no_grad():
        assert (model(ids).logits - hf(ids).logits).abs().max() < 1e-4
        other = attnkit.Olmoe(model.config.replace(clip_qkv=None)).eval()
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3


def test_olmo_7b_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.Olmo(attnkit.OlmoConfig.from_preset("olmo-7b"))
        theirs = transformers.OlmoForCausalLM(transformers.OlmoConfig())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 6_888_095_744
