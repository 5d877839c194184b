"""Hunyuan dense against `transformers`' HunYuanDenseV1ForCausalLM with identical weights, both
directions: per-head query/key norms after the rotary embedding, and NTK-alpha RoPE scaling."""

import json

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

ALPHA = {"rope_type": "dynamic", "alpha": 50.0, "factor": 1.0, "rope_theta": 10000.0}  # as the released configs


@pytest.mark.parametrize("rope", [None, ALPHA], ids=["default", "ntk-alpha"])
def test_hunyuan_gives_transformers_logits_loss_gradients_and_generation(tmp_path, rope):
    hf = hf_model(tmp_path, "HunYuanDenseV1", head_dim=8, pad_token_id=0, **({"rope_parameters": rope} if rope else {}))
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.HunYuanDense and c.qk_norm and c.qk_norm_after_rope
    if rope:
        assert c.rope_base == pytest.approx(10000.0 * 50.0 ** (8 / 6))
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    theirs = hf.model.layers[1].self_attn.query_layernorm.weight.grad
    assert (model.decoder.layers[1].attn.q_norm.weight.grad - theirs).abs().max() < 1e-4
    with torch.no_grad():  # the norms before the rotary embedding give other logits
        other = attnkit.HunYuanDense(c.replace(qk_norm_after_rope=False))
        other.load_state_dict(model.state_dict())
        assert (other(ids).logits - hf(ids).logits).abs().max() > 1e-3
    assert generation_matches(model, hf, num_beams=3)
    model.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["architectures"] == ["HunYuanDenseV1ForCausalLM"]
    again = transformers.HunYuanDenseV1ForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4
