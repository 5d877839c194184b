"""FP8 checkpoints (``quantization_config.quant_method == "fp8"``, DeepSeek-V3's format, which
Qwen3-FP8 and others share): float8 weights with a ``weight_scale_inv`` per block load as their
dequantized values, and the model gives the logits of `transformers`' model holding those values;
a malformed one is refused naming the tensor or field."""

import json

import pytest
import torch
import torch.nn.functional as F

import attnkit
from attnkit import CheckpointError
from tests.interop.test_deepseek_interop import hf_deepseek
from tests.interop.test_mistral_qwen_interop import batch, hf_model, lm_loss_and_logits_match

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _quantize(w: torch.Tensor, block: tuple[int, int] | None):
    """``(float8 weight, scales)``: each block's largest magnitude maps to float8's 448."""
    if block is None:
        scale = w.abs().max().clamp(min=1e-12) / 448.0
        return (w / scale).to(torch.float8_e4m3fn), scale.reshape(1)
    rows, cols = block
    R, C = -(-w.shape[0] // rows), -(-w.shape[1] // cols)
    blocks = F.pad(w, (0, C * cols - w.shape[1], 0, R * rows - w.shape[0])).view(R, rows, C, cols)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0
    q = (blocks / scale[:, None, :, None]).to(torch.float8_e4m3fn).view(R * rows, C * cols)
    return q[:w.shape[0], :w.shape[1]].contiguous(), scale


def _dequantize(q: torch.Tensor, scale: torch.Tensor, block: tuple[int, int] | None) -> torch.Tensor:
    """The reference: each block of ``q`` times its scale (DeepSeek's ``weight_dequant``)."""
    if block is None:
        return q.float() * scale
    rows, cols = block
    R, C = scale.shape
    padded = F.pad(q.float(), (0, C * cols - q.shape[1], 0, R * rows - q.shape[0])).view(R, rows, C, cols)
    return (padded * scale[:, None, :, None]).view(R * rows, C * cols)[:q.shape[0], :q.shape[1]].contiguous()


def save_fp8(path, block: tuple[int, int] | None, keep=("embed", "lm_head", "norm", "mlp.gate.weight")):
    """Rewrite the float checkpoint in ``path`` as FP8 (every linear weight but ``keep``'s), and
    write its dequantized values as a float checkpoint in ``path / "reference"``. Returns the
    stored tensors and `transformers`' model loaded from the reference."""
    state = safetensors_torch.load_file(str(path / "model.safetensors"))
    config = json.loads((path / "config.json").read_text())
    (path / "reference").mkdir()
    (path / "reference" / "config.json").write_text(json.dumps(config))
    out, reference = {}, {}
    for name, w in state.items():
        if w.dim() == 2 and name.endswith(".weight") and not any(k in name for k in keep):
            q, scale = _quantize(w.float(), block)
            out[name], out[name.removesuffix("weight") + "weight_scale_inv"] = q, scale
            reference[name] = _dequantize(q, scale, block)
        else:
            out[name] = reference[name] = w
    safetensors_torch.save_file(out, str(path / "model.safetensors"), metadata={"format": "pt"})
    safetensors_torch.save_file(reference, str(path / "reference" / "model.safetensors"), metadata={"format": "pt"})
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": None if block is None else list(block)}
    (path / "config.json").write_text(json.dumps(config))
    return out, transformers.AutoModelForCausalLM.from_pretrained(path / "reference").eval()


@pytest.mark.parametrize("block", [(16, 20), None], ids=["blocks", "per-tensor"])
def test_fp8_qwen3_gives_the_logits_of_its_dequantized_weights(tmp_path, block):
    original = hf_model(tmp_path, "Qwen3")
    stored, hf = save_fp8(tmp_path, block)
    assert stored["model.layers.0.mlp.up_proj.weight"].dtype == torch.float8_e4m3fn
    model = attnkit.from_pretrained(tmp_path)
    assert type(model) is attnkit.Qwen3
    ids = batch(16)[0][:1]
    with torch.no_grad():  # FP8 moved the logits: matching the dequantized model is not matching the original
        assert (original(ids).logits - hf(ids).logits).abs().max() > 1e-3
    lm_loss_and_logits_match(model, hf, ids)
    half = attnkit.from_pretrained(tmp_path, dtype=torch.bfloat16)  # dequantized straight into bf16
    assert torch.equal(half.decoder.layers[0].ffn.fc_out.weight, model.decoder.layers[0].ffn.fc_out.weight.bfloat16())
    model.save_pretrained(tmp_path / "saved")  # a float checkpoint, which says nothing of FP8
    assert "quantization_config" not in json.loads((tmp_path / "saved" / "config.json").read_text())
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() < 1e-4


def test_fp8_deepseek_v3_with_latent_attention_and_experts(tmp_path):
    """DeepSeek-V3's own format: 128 x 128 blocks (here 16 x 16, with partial blocks at the edges of
    the 24- and 20-wide latent projections), every expert quantized, the router and norms kept in float."""
    hf_deepseek(tmp_path)
    stored, hf = save_fp8(tmp_path, (16, 16))
    assert stored["model.layers.1.mlp.experts.0.up_proj.weight"].dtype == torch.float8_e4m3fn
    assert stored["model.layers.1.self_attn.kv_a_proj_with_mqa.weight_scale_inv"].shape == (2, 2)  # 20 x 32
    assert stored["model.layers.1.mlp.gate.weight"].dtype == torch.float32
    model = attnkit.from_pretrained(tmp_path)
    lm_loss_and_logits_match(model, hf, batch(16)[0][:1])


def test_malformed_fp8_checkpoints_are_refused_by_name(tmp_path):
    hf_model(tmp_path, "Qwen3")
    stored, _ = save_fp8(tmp_path, (16, 20))
    name = "model.layers.0.self_attn.q_proj.weight"

    def rewrite(state, block=(16, 20)):
        safetensors_torch.save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
        config = json.loads((tmp_path / "config.json").read_text())
        config["quantization_config"]["weight_block_size"] = block
        (tmp_path / "config.json").write_text(json.dumps(config))
    rewrite({k: v for k, v in stored.items() if k != name.removesuffix("weight") + "weight_scale_inv"})
    with pytest.raises(CheckpointError, match=f"{name} is float8 but .* no .*q_proj.weight_scale_inv"):
        attnkit.from_pretrained(tmp_path)
    rewrite({**stored, name.removesuffix("weight") + "weight_scale_inv": torch.ones(3, 3)})
    with pytest.raises(CheckpointError, match=r"q_proj.weight_scale_inv has shape \(3, 3\)"):
        attnkit.from_pretrained(tmp_path)
    rewrite(stored, block=[16])
    with pytest.raises(CheckpointError, match="weight_block_size must be two positive integers"):
        attnkit.from_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="quantization_config: 'gptq'"):
        attnkit.from_pretrained(tmp_path)
