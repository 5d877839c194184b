"""MPT against `transformers`' MptForCausalLM with identical weights, both directions: ALiBi
(MPT's slopes and key positions against attnkit's relative distances), no biases anywhere, the
clamped q/k/v (``clip_qkv``)."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=96, d_model=32, n_heads=4, n_layers=2, max_seq_len=64, attn_config={"clip_qkv": 0.5},
             bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_mpt(path, **overrides):
    torch.manual_seed(0)
    hf = transformers.MptForCausalLM(transformers.MptConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def test_mpt_gives_transformers_logits_loss_gradients_and_generation(tmp_path):
    hf = hf_mpt(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Mpt and c.positional == "alibi" and c.clip_qkv == 0.5 and not c.bias
    assert model.decoder.layers[0].attn_norm.bias is None
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    theirs = hf.transformer.blocks[1].attn.Wqkv.weight.grad
    assert (model.decoder.layers[1].attn.qkv_proj.weight.grad - theirs).abs().max() < 1e-4
    with torch.no_grad():
        ids, mask = batch(12)
        ours, ref = model(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits
        assert torch.where(mask.bool()[..., None], ours - ref, 0.0).abs().max() < 1e-4
        other = attnkit.Mpt(c.replace(clip_qkv=None))  # the clamp matters
        other.load_state_dict(model.state_dict())
        assert (other(ids[:1]).logits - ref[:1]).abs().max() > 1e-3
    assert generation_matches(model, hf, num_beams=3)


@pytest.mark.parametrize("change,match", [
    (dict(no_bias=False), "no_bias"), (dict(expansion_ratio=2), "expansion_ratio"),
    (dict(attn_config={"alibi": False}), "alibi"), (dict(attn_config={"qk_ln": True}), "qk_ln"),
    (dict(n_heads=3, d_model=48), "n_heads")])
def test_unsupported_mpt_configs_are_refused(tmp_path, change, match):
    hf_mpt(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)
