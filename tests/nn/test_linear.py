"""attnkit.nn.linear: the fast CPU kernels agree with F.linear (to fp32 rounding in fp32, to bf16
rounding in bf16), forward and backward, and decode the same tokens as the reference kernels."""

import re

import pytest
import torch
import torch.nn.functional as F

from attnkit import GPT, GPTConfig, Transformer, TransformerConfig
from attnkit.errors import InputError
from attnkit.nn import Linear
from attnkit.nn import linear as linear_module
from attnkit.nn.linear import linear, mm_t, packed_weights

needs_onednn = pytest.mark.skipif(not linear_module._HAS_ONEDNN, reason="PyTorch built without oneDNN")


@pytest.fixture
def reference_kernels(monkeypatch):
    monkeypatch.setattr(linear_module, "FAST", False)


@pytest.fixture(autouse=True)
def onednn_for_small_shapes(monkeypatch):
    """The tests' layers are tiny; let them take the oneDNN path anyway."""
    monkeypatch.setattr(linear_module, "ONEDNN_MIN_MACS", 0)


def test_layers_below_the_size_threshold_are_f_linear_bit_for_bit(monkeypatch):
    monkeypatch.setattr(linear_module, "ONEDNN_MIN_MACS", 1 << 17)
    lin = Linear(64, 64)
    x = torch.randn(1, 64)
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


def test_reference_switch_is_f_linear_bit_for_bit(reference_kernels):
    lin = Linear(48, 80)
    x = torch.randn(3, 5, 48)
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))
    lin = lin.to(torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(lin(x.bfloat16()), F.linear(x.bfloat16(), lin.weight, lin.bias))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(48,), (1, 1, 48), (2, 3, 48), (1, 300, 48), (0, 4, 48), (2, 2, 2, 48)])
def test_fp32_forward_matches_f_linear(bias, shape):
    lin = Linear(48, 80, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        y = lin(x)
    ref = F.linear(x.double(), lin.weight.double(), None if lin.bias is None else lin.bias.double())
    assert y.shape == ref.shape and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_fp32_gradients_match_float64_reference(bias):
    """The oneDNN autograd path: input, weight and bias gradients, a non-contiguous input and a
    weight used twice (tied embeddings accumulate)."""
    torch.manual_seed(0)
    lin = Linear(24, 40, bias=bias)
    x = torch.randn(6, 24, 5).transpose(1, 2).requires_grad_()  # (6, 5, 24), non-contiguous
    g = torch.randn(6, 5, 40)
    y = lin(x)
    assert "OneDNN" in type(y.grad_fn.next_functions[0][0]).__name__  # the view of the 2-D result
    ((y * g).sum() + lin(x[:, :2]).sum()).backward()
    w64 = lin.weight.detach().double().requires_grad_()
    b64 = lin.bias.detach().double().requires_grad_() if bias else None
    x64 = x.detach().double().requires_grad_()
    ((F.linear(x64, w64, b64) * g.double()).sum() + F.linear(x64[:, :2], w64, b64).sum()).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lin.weight.grad.double(), w64.grad, atol=1e-5, rtol=1e-5)
    if bias:
        torch.testing.assert_close(lin.bias.grad.double(), b64.grad, atol=1e-5, rtol=1e-5)


def test_frozen_weight_gets_no_gradient_and_input_does():
    lin = Linear(8, 4).requires_grad_(False)
    x = torch.randn(3, 8, requires_grad=True)
    lin(x).sum().backward()
    assert lin.weight.grad is None
    torch.testing.assert_close(x.grad, lin.weight.sum(0).expand(3, 8), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_mm_t_takes_transposed_views(transpose_a, transpose_b):
    a = torch.randn(30, 17).t() if transpose_a else torch.randn(17, 30)
    b = torch.randn(30, 9).t() if transpose_b else torch.randn(9, 30)
    torch.testing.assert_close(mm_t(a, b).double(), a.double() @ b.double().t(), atol=1e-5, rtol=1e-5)


def test_postop_is_fused_only_outside_autograd():
    w, b = torch.randn(8, 4), torch.randn(8)
    x = torch.randn(5, 4)
    with torch.no_grad():
        y = linear(x, w, b, ("relu", ""))
    if linear_module._HAS_ONEDNN:
        torch.testing.assert_close(y, F.relu(F.linear(x, w, b)), atol=1e-6, rtol=1e-6)
    assert linear(x, w.requires_grad_(), b, ("relu", "")) is None  # the caller applies it


@pytest.mark.parametrize("amx", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (4, 1, 48), (2, 3, 48), (1, 40, 48)])
def test_bf16_decoding_paths_match_f_linear_to_bf16_rounding(amx, bias, shape, monkeypatch):
    """Both bf16 kernel choices (torch.mv / W @ xᵀ where AMX is, F.linear elsewhere)."""
    monkeypatch.setattr(linear_module, "_HAS_AMX", amx)
    torch.manual_seed(0)
    lin = Linear(48, 80, bias=bias).to(torch.bfloat16)
    x = torch.randn(shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        y = lin(x)
    ref = F.linear(x.float(), lin.weight.float(), None if lin.bias is None else lin.bias.float())
    assert y.shape == ref.shape and y.dtype == torch.bfloat16 and y.is_contiguous()
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 3])
def test_fast_kernels_generate_the_reference_kernels_tokens(dtype, batch, monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny")).eval().to(dtype)
    ids = torch.randint(0, 256, (batch, 5))
    fast = model.generate(ids, max_new_tokens=12)
    monkeypatch.setattr(linear_module, "FAST", False)
    assert torch.equal(model.generate(ids, max_new_tokens=12), fast)


def test_fast_kernels_train_like_the_reference_kernels(monkeypatch):
    """Five AdamW steps of a small GPT: the losses agree to fp32 rounding with F.linear's."""

    def losses():
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset("gpt-tiny"))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.randint(0, 256, (4, 33))
        out = []
        for _ in range(5):
            loss = model(ids[:, :-1], labels=ids[:, 1:]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        return torch.tensor(out)

    fast = losses()
    monkeypatch.setattr(linear_module, "FAST", False)
    reference = losses()
    assert fast[-1] < fast[0] - 0.05  # it learns
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-5)


@needs_onednn
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_packed_weights_match_f_linear_and_are_freed(dtype, tol):
    torch.manual_seed(0)
    model = torch.nn.Sequential(Linear(48, 80), torch.nn.GELU(), Linear(80, 16, bias=False)).to(dtype)
    x = torch.randn(5, 48, dtype=dtype)
    ref = model[2](model[1](F.linear(x.float(), model[0].weight.float(), model[0].bias.float()).to(dtype)))
    with packed_weights(model, rows=5) as m:  # fp32 is packed only for rows > 1
        assert m is model and all(layer._packed is not None for layer in (model[0], model[2]))
        with packed_weights(model):  # nested: reuses the outer copies, frees nothing
            pass
        assert model[0]._packed is not None
        with torch.inference_mode():
            assert model[0].decoding_weight(x).is_mkldnn
            y = model(x)
        torch.testing.assert_close(y.float(), ref.float(), atol=tol, rtol=tol)
        x.requires_grad_()
        model(x).sum().backward()  # autograd records: the plain weights, with gradients
        assert model[0].weight.grad is not None and x.grad is not None
    assert model[0]._packed is None and model[2]._packed is None


@needs_onednn
def test_a_model_copied_or_pickled_while_packed_leaves_the_packed_copy_behind():
    import copy
    import io

    model = torch.nn.Sequential(Linear(256, 512)).to(torch.bfloat16)
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    with torch.no_grad(), packed_weights(model):
        if model[0]._packed is None:
            pytest.skip("no oneDNN: nothing to pack")
        twin = copy.deepcopy(model)
        torch.save(model, buffer := io.BytesIO())
        assert twin[0]._packed is None and model[0]._packed is not None
        assert torch.equal(twin(x), F.linear(x, model[0].weight, model[0].bias))
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False)[0]._packed is None


def test_packed_weight_changed_in_place_falls_back_to_the_new_weight():
    lin = Linear(8, 4)
    x = torch.randn(3, 8)
    with packed_weights(lin, rows=3), torch.no_grad():
        assert lin._packed is not None
        lin.weight.mul_(2)
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), atol=1e-6, rtol=1e-6)


@needs_onednn
@pytest.mark.parametrize("activation", ["gelu_tanh", "gelu", "silu", "relu", "swiglu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_feedforward_matches_the_plain_path(dtype, activation):
    """fp32 fuses the activation into the packed matmul (equal to fp32 rounding); bf16 must not,
    since a fused activation sees the unrounded product: it is bit for bit the plain path."""
    from attnkit.nn import FeedForward

    torch.manual_seed(0)
    ffn = FeedForward(128, 512, activation).eval().to(dtype)
    x = torch.randn(2, 3, 128, dtype=dtype)
    with torch.inference_mode():
        plain = ffn(x)
        with packed_weights(ffn, rows=6):
            packed = ffn(x)
    if dtype == torch.bfloat16:
        assert torch.equal(packed, plain)
    else:
        torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pack_weights_generates_the_same_tokens(dtype):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=1024, d_model=128, n_heads=4)).eval()
    with torch.no_grad():  # large weights: sharp logits, so that any rounding difference shows in the tokens
        for p in model.parameters():
            p.mul_(5)
    model = model.to(dtype)
    ids = torch.randint(0, 1024, (3, 6))
    plain = model.generate(ids, max_new_tokens=12)
    assert torch.equal(model.generate(ids, max_new_tokens=12, pack_weights=True), plain)
    assert torch.equal(torch.stack(list(model.stream(ids, max_new_tokens=12, pack_weights=True)), 1), plain[:, 6:])
    beams = model.generate(ids, max_new_tokens=6, num_beams=3)
    assert torch.equal(model.generate(ids, max_new_tokens=6, num_beams=3, pack_weights=True), beams)
    assert all(m._packed is None for m in model.modules() if isinstance(m, Linear))


def _packed_while_decoding(model, **kwargs) -> list[bool]:
    """For each step of ``model.stream(**kwargs)``: were the model's layers packed?"""
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    return [all(m._packed is not None for m in layers) for _ in model.stream(**kwargs)]


@needs_onednn
def test_auto_packs_long_decoding_calls_that_fit_in_memory(monkeypatch):
    from attnkit.generation import decoding

    model = GPT(GPTConfig.from_preset("gpt-tiny")).eval().to(torch.bfloat16)
    ids = torch.randint(0, 256, (2, 5))
    n = decoding.AUTO_PACK_MIN_TOKENS
    call = dict(input_ids=ids, eos_token_id=None)
    assert _packed_while_decoding(model, max_new_tokens=n, **call) == [True] * n  # the default is "auto"
    assert _packed_while_decoding(model, max_new_tokens=n - 1, **call) == [False] * (n - 1)  # too short to pay
    assert _packed_while_decoding(model, max_new_tokens=3, pack_weights=True, **call) == [True] * 3
    assert _packed_while_decoding(model, max_new_tokens=n, pack_weights=False, **call) == [False] * n
    weights = sum(m.weight.nbytes for m in model.modules() if isinstance(m, Linear))
    monkeypatch.setattr(decoding, "available_memory", lambda: 2 * weights - 2)  # the copy would take over half
    assert _packed_while_decoding(model, max_new_tokens=n, **call) == [False] * n
    monkeypatch.setattr(decoding, "available_memory", lambda: 2 * weights)
    assert _packed_while_decoding(model, max_new_tokens=n, **call) == [True] * n
    with pytest.raises(InputError, match="pack_weights"):
        model.generate(ids, max_new_tokens=2, pack_weights="always")


@needs_onednn
def test_encoder_decoder_packs_only_what_each_step_runs():
    model = Transformer(TransformerConfig.from_preset("transformer-tiny")).eval()
    src = torch.randint(3, 256, (2, 7))
    packed = []
    for _ in model.stream(src, max_new_tokens=3, pack_weights=True, eos_token_id=None):
        packed.append({name for name, m in model.named_modules() if isinstance(m, Linear) and m._packed is not None})
    # The encoder and the cross-attention key/value projections ran once, unpacked.
    step_layers = {name for name, m in model.named_modules() if isinstance(m, Linear)
                   and not name.startswith("encoder.") and not re.search(r"cross_attn\.[kv]_proj", name)}
    assert packed == [step_layers] * 3 and "lm_head" in step_layers and "decoder.layers.0.cross_attn.q_proj" in step_layers


@needs_onednn
def test_layers_too_small_for_onednn_are_not_packed(monkeypatch):
    monkeypatch.setattr(linear_module, "ONEDNN_MIN_MACS", 1 << 17)
    small, large = Linear(64, 64).bfloat16(), Linear(512, 256).bfloat16()  # 4096 and 131072 multiply-adds per row
    with packed_weights(torch.nn.Sequential(small, large), rows=1):
        assert small._packed is None and large._packed is not None


def test_fp32_weights_for_one_row_are_not_packed():
    lin = Linear(8, 4)
    with packed_weights(lin, rows=1):
        assert lin._packed is None
    with packed_weights(lin.to(torch.bfloat16), rows=1):
        assert lin._packed is not None or not linear_module._HAS_ONEDNN


@needs_onednn
def test_double_backward_matches_f_linear():
    """A gradient penalty differentiates the oneDNN path's backward (create_graph=True)."""

    def penalty(fast):
        linear_module.FAST = fast
        torch.manual_seed(0)
        lin = Linear(16, 8)
        x = torch.randn(5, 16, requires_grad=True)
        (g,) = torch.autograd.grad(torch.tanh(lin(x)).sum(), x, create_graph=True)
        (g.pow(2).sum()).backward()
        return lin.weight.grad.clone(), x.grad.clone()

    try:
        fast, ref = penalty(True), penalty(False)
    finally:
        linear_module.FAST = True
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_torch_func_transforms_work():
    """torch.func (per-sample gradients) runs on the plain path."""
    from torch.func import functional_call, grad, vmap

    lin = Linear(6, 3)
    params = {k: v.detach() for k, v in lin.named_parameters()}
    xs = torch.randn(4, 6)

    def loss(p, x):
        return functional_call(lin, p, (x[None],)).pow(2).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, xs)
    for i in range(4):
        expected = torch.autograd.grad(F.linear(xs[i:i + 1], lin.weight, lin.bias).pow(2).sum(), lin.weight)[0]
        torch.testing.assert_close(per_sample["weight"][i], expected, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_weights_replaced_inside_the_block_are_not_served_stale():
    """Changing dtype or loading another state dict inside packed_weights uses the new weights."""
    lin = Linear(8, 4)
    x = torch.randn(3, 8)
    with packed_weights(lin, rows=3), torch.no_grad():
        lin.load_state_dict({"weight": torch.ones(4, 8), "bias": torch.zeros(4)})
        torch.testing.assert_close(lin(x), x.sum(-1, keepdim=True).expand(3, 4), atol=1e-5, rtol=1e-5)
        lin.to(torch.bfloat16)
        y = lin(x.bfloat16())
        assert y.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), x.sum(-1, keepdim=True).expand(3, 4), atol=0.1, rtol=0.02)
