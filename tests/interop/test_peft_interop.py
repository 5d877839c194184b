"""PEFT LoRA adapters merged into attnkit models: the logits equal those of ``peft``'s model with the
same adapter, on a Qwen3 (attnkit fuses the query/key/value projections an adapter updates one by
one), with rsLoRA and a trained head (``modules_to_save``), with DoRA, and on GPT-2 (``Conv1D``
layers, ``fan_in_fan_out``, trained biases, DoRA); ``from_pretrained`` of an adapter's directory
loads its base adapted; what is not LoRA or DoRA is refused by name. attnkit's own adapters
(LoRA and DoRA) written in PEFT's format give ``peft`` the logits attnkit computes (fused,
interleaved and transposed layouts)."""

import json

import pytest
import torch

import attnkit
from attnkit import CheckpointError
from attnkit.interop.peft import load_peft_adapter, save_peft_adapter
from attnkit.nn import add_lora
from tests.interop.test_mistral_qwen_interop import batch, hf_model
from tests.nn.test_lora import randomize_adapters

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def _adapted(hf, path, **lora):
    """``peft``'s model of ``hf`` with a LoRA adapter of random (non-zero) weights, saved to ``path``."""
    torch.manual_seed(3)
    model = peft.get_peft_model(hf, peft.LoraConfig(**lora)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_magnitude" in name:  # DoRA: magnitudes away from the base's norms
                p.mul_(torch.rand_like(p) + 0.5)
            elif "lora_" in name or "modules_to_save" in name:
                p.normal_(0.0, 0.2)
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("lora", [
    dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"]),
    dict(r=2, lora_alpha=3, use_rslora=True, target_modules=["k_proj", "gate_proj"], modules_to_save=["lm_head"]),
    dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"]),
], ids=["attention and mlp", "rslora, trained head", "dora"])
def test_a_qwen3_adapter_gives_peft_logits(tmp_path, lora):
    hf_model(tmp_path / "base", "Qwen3")
    model = attnkit.from_pretrained(tmp_path / "base")
    ids = batch(16)[0][:2]
    with torch.no_grad():
        before = model(ids).logits
    adapted = _adapted(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter",
                       **lora)
    load_peft_adapter(model, tmp_path / "adapter")
    with torch.no_grad():
        ref = adapted(ids).logits
        assert (model(ids).logits - ref).abs().max() < 1e-4 and (before - ref).abs().max() > 1e-2
    again = attnkit.from_pretrained(tmp_path / "adapter")  # the adapter's directory: its base, adapted
    with torch.no_grad():
        assert (again(ids).logits - ref).abs().max() < 1e-4


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_a_gpt2_adapter_on_conv1d_layers_with_trained_biases(tmp_path, dora):
    config = transformers.GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=1,
                                     eos_token_id=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "base")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    adapted = _adapted(hf, tmp_path / "adapter", r=4, lora_alpha=16, target_modules=["c_attn", "c_fc"],
                       fan_in_fan_out=True, bias="lora_only", use_dora=dora)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if name.endswith("c_attn.bias"):
                p.add_(0.5)  # a trained bias, saved with bias="lora_only"
    adapted.save_pretrained(tmp_path / "adapter")
    model = load_peft_adapter(attnkit.from_pretrained(tmp_path / "base"), tmp_path / "adapter")
    ids = batch(16)[0][:2]
    with torch.no_grad():
        assert (model(ids).logits - adapted(ids).logits).abs().max() < 1e-4


def test_adapters_that_are_not_plain_lora_are_refused(tmp_path):
    hf_model(tmp_path / "base", "Qwen3")
    _adapted(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter", r=2,
             target_modules=["q_proj"])
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    model = attnkit.from_pretrained(tmp_path / "base")
    for change, match in [({"lora_bias": True}, "lora_bias"), ({"peft_type": "IA3"}, "peft_type 'IA3'"),
                          ({"use_dora": True}, "q_proj has lora_A, lora_B, not lora_A, lora_B, lora_magnitude_vector"),
                          ({"alpha_pattern": {"q_proj": 4}}, "alpha_pattern")]:
        config_path.write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=match):
            load_peft_adapter(model, tmp_path / "adapter")
    config_path.write_text(json.dumps(config))
    other = attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", vocab_size=96))
    with pytest.raises(CheckpointError, match="q_proj.weight, which the model's checkpoint layout"):
        load_peft_adapter(other, tmp_path / "adapter")


def _randomized(model):
    torch.manual_seed(5)
    randomize_adapters(model, std=0.2)
    return model


@pytest.mark.parametrize("family,dora", [("Qwen3", False), ("GPT2", False), ("GPTNeoX", False), ("Qwen3", True),
                                         ("GPT2", True), ("GPTNeoX", True)])
def test_attnkit_adapters_written_for_peft_give_attnkit_logits(tmp_path, family, dora):
    """Qwen3: a fused q/k/v adapter as three; GPT-2: Conv1D (fan_in_fan_out); GPT-NeoX: q/k/v
    rows interleaved head by head in Hugging Face's tensor."""
    torch.manual_seed(0)
    if family == "Qwen3":
        hf_model(tmp_path / "base", "Qwen3")
    else:
        config = (transformers.GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=1,
                                          eos_token_id=2) if family == "GPT2" else
                  transformers.GPTNeoXConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, max_position_embeddings=32, bos_token_id=1,
                                             eos_token_id=2))
        head = "GPT2LMHeadModel" if family == "GPT2" else f"{family}ForCausalLM"
        getattr(transformers, head)(config).save_pretrained(tmp_path / "base")
    model = _randomized(add_lora(attnkit.from_pretrained(tmp_path / "base"), r=4, alpha=12,
                                 targets=("qkv_proj", "out_proj", "fc_in"), dora=dora))
    save_peft_adapter(model, tmp_path / "adapter")
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert written["fan_in_fan_out"] == (family == "GPT2") and written["use_dora"] == dora
    assert written["base_model_name_or_path"] == str(tmp_path / "base")
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = batch(16)[0][:2]
    with torch.no_grad():
        assert (theirs(ids).logits - model(ids).logits).abs().max() < 1e-4
        assert (attnkit.from_pretrained(tmp_path / "adapter")(ids).logits - model(ids).logits).abs().max() < 1e-4


def test_what_peft_cannot_hold_is_refused_by_name(tmp_path):
    model = attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", vocab_size=96))
    with pytest.raises(attnkit.InputError, match="no LoRA adapters"):
        save_peft_adapter(model, tmp_path)
    add_lora(model, trainable=("lm_head",))
    with pytest.raises(CheckpointError, match="trainable modules"):
        save_peft_adapter(model, tmp_path)
    phi3 = attnkit.Phi3(attnkit.Phi3Config.from_preset("phi3-tiny"))
    add_lora(phi3, targets=("fc_gate",))
    with pytest.raises(CheckpointError, match="no low-rank form"):
        save_peft_adapter(phi3, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written
