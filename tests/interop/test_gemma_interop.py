"""Gemma, Gemma 2 and Gemma 3 (text) against `transformers`' GemmaForCausalLM, Gemma2ForCausalLM and
Gemma3ForCausalLM with identical weights, both directions: scaled embeddings and offset norms
(all), sandwich norms, soft caps and windows on some layers (2 and 3), query/key norms and a RoPE
base per layer type (3)."""

import json

import pytest
import torch

import attnkit
from attnkit import ConfigError
from attnkit.nn import attention as attention_module
from tests.interop.test_mistral_qwen_interop import batch, generation_matches, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")

GEMMA = dict(head_dim=16, hidden_activation="gelu_pytorch_tanh")
# Gemma 2: caps low enough that random weights reach them; a window of 4 on layers 0 and 2 of 3.
GEMMA2 = dict(GEMMA, num_hidden_layers=3, sliding_window=4, query_pre_attn_scalar=24, attn_logit_softcapping=3.0,
              final_logit_softcapping=2.0)
# Gemma 3: layers 0 and 2 slide (with their own RoPE base); layer 1 is global, with linear RoPE scaling.
GEMMA3 = dict(GEMMA, num_hidden_layers=3, sliding_window=4, query_pre_attn_scalar=24,
              layer_types=["sliding_attention", "full_attention", "sliding_attention"],
              rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 100000.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0}})
FAMILIES = {"Gemma": dict(head_dim=16), "Gemma2": GEMMA2, "Gemma3": GEMMA3}


def test_gemma_checkpoint_gives_transformers_logits_loss_and_gradients(tmp_path):
    hf = hf_model(tmp_path, "Gemma", head_dim=16, hidden_act="gelu")  # the released configs' legacy value
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is attnkit.Gemma and c.embed_scale and c.norm == "rmsnorm_offset"
    assert c.activation == "geglu_tanh" and c.head_dim == 16 and model.lm_head.weight is model.wte.weight
    lm_loss_and_logits_match(model, hf, batch()[0][:1])  # and both have gradients now
    assert (model.wte.weight.grad - hf.model.embed_tokens.weight.grad).abs().max() < 1e-4
    assert (model.decoder.norm.weight.grad - hf.model.norm.weight.grad).abs().max() < 1e-4


@pytest.mark.parametrize("block", [128, 1])
@pytest.mark.parametrize("family", ["Gemma2", "Gemma3"])
def test_windowed_gemmas_give_transformers_logits_loss_and_gradients_beyond_the_window(tmp_path, family, block,
                                                                                       monkeypatch):
    """With the window as a band mask, and block by block (``WINDOW_BLOCK`` 1: blocks of one
    query, Gemma 2's soft cap applied in each)."""
    monkeypatch.setattr(attention_module, "WINDOW_BLOCK", block)
    hf = hf_model(tmp_path, family, **FAMILIES[family])
    model = attnkit.from_pretrained(tmp_path)
    c = model.config
    assert type(model) is getattr(attnkit, family) and c.window_layers == (0, 2) and c.sandwich_norm
    ids = batch()[0][:1]  # 12 tokens: the window of 4 hides most of them from the sliding layers
    lm_loss_and_logits_match(model, hf, ids)  # and both have gradients now
    # the loss's soft cap and the sandwich norms are in the gradients too
    assert (model.wte.weight.grad - hf.model.embed_tokens.weight.grad).abs().max() < 1e-4
    theirs = hf.model.layers[1].post_feedforward_layernorm.weight.grad
    assert (model.decoder.layers[1].ffn_post_norm.weight.grad - theirs).abs().max() < 1e-4
    if family == "Gemma3":
        assert c.qk_norm and c.rope_local_base == 1000.0 and c.rope_scaling["factor"] == 4.0
        theirs = hf.model.layers[2].self_attn.k_norm.weight.grad
        assert (model.decoder.layers[2].attn.k_norm.weight.grad - theirs).abs().max() < 1e-4
    # Each feature matters here: without it attnkit gives other logits.
    changes = dict(sliding_layers=(0, 1, 2), attn_scale_dim=None)
    changes.update(dict(rope_local_base=None, rope_scaling=None) if family == "Gemma3" else
                   dict(attn_softcap=None, logit_softcap=None))
    with torch.no_grad():
        ref = hf(ids).logits
        for field, value in changes.items():
            other = type(model)(c.replace(**{field: value}))
            other.load_state_dict(model.state_dict())
            assert (other(ids).logits - ref).abs().max() > 1e-3, field


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_equals_transformers_on_a_left_padded_batch(tmp_path, family, num_beams):
    hf = hf_model(tmp_path, family, **FAMILIES[family], pad_token_id=0)
    assert generation_matches(attnkit.from_pretrained(tmp_path), hf, num_beams)


@pytest.mark.parametrize("family,preset,model_type", [
    ("Gemma", "gemma-tiny", "gemma"), ("Gemma2", "gemma2-tiny", "gemma2"), ("Gemma3", "gemma3-tiny", "gemma3_text")])
def test_attnkit_models_saved_load_in_transformers_with_same_logits(tmp_path, family, preset, model_type):
    cls = getattr(attnkit, family)
    torch.manual_seed(0)
    model = cls(getattr(attnkit, f"{family}Config").from_preset(preset)).eval()
    with torch.no_grad():  # norms away from their initial zeros, so that a misplaced one shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == model_type and saved["architectures"] == [f"{family}ForCausalLM"]
    hf, info = getattr(transformers, f"{family}ForCausalLM").from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = batch(length=20)[0]  # longer than the tiny presets' window of 8
    with torch.no_grad():
        assert (model(ids).logits - hf.eval()(ids).logits).abs().max() < 1e-4
    again = attnkit.from_pretrained(tmp_path)
    assert type(again) is cls and again.config == model.config


def test_older_gemma3_configs_give_the_pattern_and_rope_bases_at_the_top_level(tmp_path):
    """Configs on the Hub before transformers 5: ``sliding_window_pattern``, ``rope_theta``,
    ``rope_local_base_freq`` and ``rope_scaling`` beside them."""
    hf_model(tmp_path, "Gemma3", **dict(GEMMA3, num_hidden_layers=4, layer_types=None))
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("layer_types", "rope_parameters"):
        config.pop(key)
    config.update(sliding_window_pattern=2, rope_theta=50000.0, rope_local_base_freq=500.0,
                  rope_scaling={"rope_type": "linear", "factor": 2.0})
    (tmp_path / "config.json").write_text(json.dumps(config))
    c = attnkit.from_pretrained(tmp_path).config
    assert c.window_layers == (0, 2) and c.rope_base == 50000.0 and c.rope_local_base == 500.0
    assert c.rope_scaling == {"rope_type": "linear", "factor": 2.0}


@pytest.mark.parametrize("family,overrides,match", [
    ("Gemma", dict(attention_bias=True), "attention_bias=true"),
    ("Gemma3", dict(GEMMA3, use_bidirectional_attention=True), "use_bidirectional_attention"),
    ("Gemma3", dict(GEMMA3, rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                             "sliding_attention": {"rope_type": "linear", "factor": 2.0,
                                                                   "rope_theta": 1e4}}), "sliding layers"),
    ("Gemma2", dict(GEMMA2, layer_types=["sliding_attention", "chunked_attention", "full_attention"]),
     "layer_types"),
])
def test_unsupported_variants_are_refused_naming_the_field(tmp_path, family, overrides, match):
    hf_model(tmp_path, family, **overrides)
    with pytest.raises(ConfigError, match=match):
        attnkit.from_pretrained(tmp_path)


@pytest.mark.parametrize("family,preset,hf_fields", [
    ("Gemma", "gemma-2b", dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
                               num_key_value_heads=1)),
    ("Gemma", "gemma-7b", dict()),
    ("Gemma2", "gemma-2-2b", dict()),
    ("Gemma2", "gemma-2-9b", dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
                                  num_attention_heads=16, num_key_value_heads=8)),
    ("Gemma3", "gemma-3-1b", dict(vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
                                  num_attention_heads=4, num_key_value_heads=1)),
])
def test_presets_have_the_parameter_counts_of_transformers_models_of_that_shape(family, preset, hf_fields):
    config_class = transformers.Gemma3TextConfig if family == "Gemma3" else getattr(transformers, f"{family}Config")
    with torch.device("meta"):
        ours = getattr(attnkit, family)(getattr(attnkit, f"{family}Config").from_preset(preset))
        theirs = getattr(transformers, f"{family}ForCausalLM")(config_class(**hf_fields))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)


def test_gemma_features_on_other_families_save_in_attnkit_layout_not_theirs(tmp_path):
    """A GPT-2 or Llama that uses a Gemma-only field cannot be written as their HF checkpoints."""
    for model in (attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", logit_softcap=5.0)),
                  attnkit.Llama(attnkit.LlamaConfig.from_preset("llama-tiny", sandwich_norm=True))):
        model.save_pretrained(tmp_path / type(model).__name__)
        saved = json.loads((tmp_path / type(model).__name__ / "config.json").read_text())
        assert saved["model_type"] == "attnkit"
        again = attnkit.from_pretrained(tmp_path / type(model).__name__)
        assert again.config == model.config


def test_gemma3_text_model_loads_from_a_conditional_generation_checkpoint(tmp_path):
    """A released-layout Gemma 3 checkpoint (``Gemma3ForConditionalGeneration``: a vision tower
    and the text model under ``language_model.``, the head tied) loads as the text model with the
    same text logits, and saves as ``Gemma3ForCausalLM``."""
    torch.manual_seed(0)
    text = dict(GEMMA3, vocab_size=96, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    hf = transformers.Gemma3ForConditionalGeneration(transformers.Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4)).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            p.normal_(0.0, 0.3) if "norm" in n else p.normal_(0.0, p.shape[-1] ** -0.5)
    hf.save_pretrained(tmp_path / "hf")
    model = attnkit.from_pretrained(tmp_path / "hf")
    assert type(model) is attnkit.Gemma3 and model.config.window_layers == (0, 2) and model.config.rope_local_base
    ids = batch()[0]
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        assert (model(ids).logits - ref).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "gemma3_text" and saved["architectures"] == ["Gemma3ForCausalLM"]
    with torch.no_grad():
        again = transformers.Gemma3ForCausalLM.from_pretrained(tmp_path / "ours").eval()
        assert (again(ids).logits - ref).abs().max() < 1e-4
