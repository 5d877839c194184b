"""BLOOM against `transformers`' BloomForCausalLM with identical weights, both directions: ALiBi
(BLOOM's key positions against attnkit's relative distances: the same attention, on left-padded
rows too), the embedding LayerNorm, the q/k/v matrix interleaved head by head."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

V = 96
SMALL = dict(vocab_size=V, hidden_size=48, n_layer=2, n_head=6, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_bloom(path, **overrides):
    """A random ``BloomForCausalLM`` saved to ``path``, every weight and bias drawn."""
    torch.manual_seed(0)
    hf = transformers.BloomForCausalLM(transformers.BloomConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "layernorm" in n and n.endswith("weight") else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(path)
    return hf


def test_bloom_gives_transformers_logits_loss_and_gradients(tmp_path):
    """6 heads: ALiBi's slopes for a head count that is not a power of two."""
    hf = hf_bloom(tmp_path)
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Bloom and c.positional == "alibi" and c.embedding_norm and c.n_heads == 6
    ids = batch(20)[0][:1]
    lm_loss_and_logits_match(model, hf, ids)
    assert (model.embed_norm.weight.grad - hf.transformer.word_embeddings_layernorm.weight.grad).abs().max() < 1e-4
    theirs = hf.transformer.h[1].self_attention.query_key_value.weight.grad.view(6, 3, 8, 48)  # (head, q/k/v, ...)
    ours = model.decoder.layers[1].attn.qkv_proj.weight.grad.view(3, 6, 8, 48)
    assert (ours.transpose(0, 1) - theirs).abs().max() < 1e-4
    with torch.no_grad():
        ids, mask = batch(12)
        ours, ref = model(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits
        assert torch.where(mask.bool()[..., None], ours - ref, 0.0).abs().max() < 1e-4
        other = attnkit.Bloom(c.replace(embedding_norm=False))  # the embedding norm matters
        other.load_state_dict(model.state_dict(), strict=False)
        assert (other(ids[:1]).logits - ref[:1]).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_bloom_generation_equals_transformers_on_a_left_padded_batch(tmp_path, num_beams):
    hf = hf_bloom(tmp_path)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


@pytest.mark.parametrize("change,match", [(dict(apply_residual_connection_post_layernorm=True), "post_layernorm"),
                                          (dict(tie_word_embeddings=False), "tie_word_embeddings")])
def test_unsupported_bloom_configs_are_refused(tmp_path, change, match):
    hf_bloom(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


def test_bloom_560m_preset_has_transformers_parameter_count():
    with torch.device("meta"):
        ours = attnkit.Bloom(attnkit.BloomConfig.from_preset("bloom-560m"))
        theirs = transformers.BloomForCausalLM(transformers.BloomConfig(hidden_size=1024, n_layer=24, n_head=16))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs) == 559_214_592
