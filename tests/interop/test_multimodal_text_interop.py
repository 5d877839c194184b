"""The text models of multimodal checkpoints against `transformers` with identical weights:
Mistral Small 3.x (``Mistral3ForConditionalGeneration``, the text model under ``language_model.``)
and Qwen2-VL / Qwen2.5-VL (the language model's keys beside ``visual.``; multimodal RoPE, which
for text is the ordinary rotary embedding). Each loads as attnkit's text family with the same
text logits and greedy tokens, and saves as that family's causal LM."""

import json

import pytest
import torch

import attnkit
from tests.interop.test_mistral_qwen_interop import batch

transformers = pytest.importorskip("transformers")

TEXT = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)


def _draw(hf):
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(1.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5 if p.dim() > 1 else 0.3)
    return hf.eval()


def mistral3():
    config = transformers.Mistral3Config(
        text_config=dict(TEXT, model_type="mistral", sliding_window=None, tie_word_embeddings=False),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14, head_dim=16), tie_word_embeddings=False)
    return _draw(transformers.Mistral3ForConditionalGeneration(config)), "Mistral", "MistralForCausalLM"


def qwen2_5_vl():
    rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0}
    config = transformers.Qwen2_5_VLConfig(text_config=dict(TEXT, rope_parameters=rope),
                                           vision_config=dict(depth=1, hidden_size=32, intermediate_size=64,
                                                              num_heads=2, out_hidden_size=32))
    return _draw(transformers.Qwen2_5_VLForConditionalGeneration(config)), "Qwen2", "Qwen2ForCausalLM"


@pytest.mark.parametrize("build", [mistral3, qwen2_5_vl], ids=["mistral3", "qwen2.5-vl"])
def test_text_model_of_a_multimodal_checkpoint(tmp_path, build):
    hf, family, causal_lm = build()
    hf.save_pretrained(tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert type(model) is getattr(attnkit, family)
    ids, mask = batch(20)
    with torch.no_grad():
        ref = hf(input_ids=ids[:1]).logits
        assert (model(ids[:1]).logits - ref).abs().max() < 1e-4
        expected = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    got = model.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0)
    assert torch.equal(got, expected[:, :got.shape[1]])
    model.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == [causal_lm]
    text = getattr(transformers, causal_lm).from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (text(ids[:1]).logits - ref).abs().max() < 1e-4


def test_released_qwen2_5_vl_configs_with_mrope_at_the_top_level_load(tmp_path):
    """The released configs keep the language model's fields at the top level, with
    ``rope_scaling: {"type": "mrope", ...}``."""
    hf, _, _ = qwen2_5_vl()
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    text = config.pop("text_config")
    text.pop("rope_parameters")
    text.pop("model_type")
    (tmp_path / "config.json").write_text(json.dumps({**config, **text, "rope_theta": 10000.0, "rope_scaling": {
        "type": "mrope", "mrope_section": [1, 1, 2]}}))
    model = attnkit.from_pretrained(tmp_path)
    ids = batch(20)[0][:1]
    with torch.no_grad():
        assert (model(ids).logits - hf(input_ids=ids).logits).abs().max() < 1e-4
