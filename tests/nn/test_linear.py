"""attnkit.nn.Linear: F.linear bit for bit except on its bf16 decoding path, which agrees with
F.linear to bf16 rounding, and gives the same tokens as the reference path when decoding."""

import pytest
import torch
import torch.nn.functional as F

from attnkit import GPT, GPTConfig
from attnkit.nn import Linear
from attnkit.nn import linear as linear_module


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (2, 3, 48), (1, 40, 48)])
def test_fp32_and_training_paths_are_f_linear_bit_for_bit(bias, shape):
    lin = Linear(48, 80, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))
    lin = lin.to(torch.bfloat16)
    xb = x.bfloat16()
    assert torch.equal(lin(xb), F.linear(xb, lin.weight, lin.bias))  # grad enabled: reference path


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (4, 1, 48), (2, 3, 48), (1, 40, 48)])
def test_bf16_decoding_path_matches_f_linear_to_bf16_rounding(bias, shape):
    torch.manual_seed(0)
    lin = Linear(48, 80, bias=bias).to(torch.bfloat16)
    x = torch.randn(shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        y = lin(x)
    ref = F.linear(x.float(), lin.weight.float(), None if lin.bias is None else lin.bias.float())
    assert y.shape == ref.shape and y.dtype == torch.bfloat16 and y.is_contiguous()
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=1e-2)


@pytest.mark.parametrize("batch", [1, 3])
def test_bf16_fast_path_generates_the_reference_paths_tokens(batch, monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny")).eval().to(torch.bfloat16)
    ids = torch.randint(0, 256, (batch, 5))
    fast = model.generate(ids, max_new_tokens=12)
    monkeypatch.setattr(linear_module, "MATVEC_ROWS", 0)  # every call takes F.linear
    assert torch.equal(model.generate(ids, max_new_tokens=12), fast)


@pytest.mark.parametrize("bias", [True, False])
def test_fp32_long_input_path_matches_f_linear(bias):
    """fp32 CPU inputs of ONEDNN_ROWS rows or more outside autograd take oneDNN's linear."""
    lin = Linear(48, 80, bias=bias)
    x = torch.randn(2, linear_module.ONEDNN_ROWS, 48)
    with torch.inference_mode():
        y = lin(x)
    assert y.shape == (2, linear_module.ONEDNN_ROWS, 80)
    torch.testing.assert_close(y, F.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
