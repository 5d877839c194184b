"""Feed-forward variants and norms against their formulas, written out by hand."""

import math

import pytest
import torch

from attnkit.errors import ConfigError
from attnkit.nn import FeedForward, RMSNorm, build_norm


def relu(x):
    return torch.where(x > 0, x, torch.zeros_like(x))


def gelu_exact(x):  # Hendrycks & Gimpel 2016: x·Φ(x)
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):  # the tanh approximation used by GPT-2
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + torch.exp(-x))


PLAIN = {"relu": relu, "gelu": gelu_exact, "gelu_tanh": gelu_tanh, "silu": silu}
GATED = {"geglu": gelu_exact, "geglu_tanh": gelu_tanh, "swiglu": silu, "reglu": relu}


def linear(lin, x):
    y = x @ lin.weight.T
    return y if lin.bias is None else y + lin.bias


@pytest.mark.parametrize("activation", list(PLAIN))
@pytest.mark.parametrize("bias", [True, False])
def test_plain_feedforward_equals_formula(activation, bias):
    """Vaswani et al. 2017 eq. 2 with the chosen activation: W2·act(W1·x + b1) + b2."""
    ffn = FeedForward(8, 32, activation, bias=bias).eval()
    x = torch.randn(2, 5, 8) * 3
    expected = linear(ffn.fc_out, PLAIN[activation](linear(ffn.fc_in, x)))
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)
    assert ffn.fc_gate is None


@pytest.mark.parametrize("activation", list(GATED))
def test_gated_feedforward_equals_formula(activation):
    """Shazeer 2020 eq. 6: FFN_GLU(x) = (act(xW) ⊗ xV) W2, with W the gate."""
    ffn = FeedForward(8, 16, activation).eval()
    x = torch.randn(2, 5, 8) * 3
    expected = linear(ffn.fc_out, GATED[activation](linear(ffn.fc_gate, x)) * linear(ffn.fc_in, x))
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation", list(PLAIN) + list(GATED))
def test_fused_inference_path_equals_formula(activation, monkeypatch):
    """fp32 CPU inputs under inference_mode take oneDNN's fused linear + activation (when
    available); outputs must match the hand-written formula and the autograd path."""
    from attnkit.nn import linear as linear_module

    monkeypatch.setattr(linear_module, "ONEDNN_MIN_MACS", 0)
    ffn = FeedForward(16, 64, activation).eval()
    x = torch.randn(2, 37, 16) * 3
    act = {**PLAIN, **GATED}[activation]
    if activation in GATED:
        expected = linear(ffn.fc_out, act(linear(ffn.fc_gate, x)) * linear(ffn.fc_in, x))
    else:
        expected = linear(ffn.fc_out, act(linear(ffn.fc_in, x)))
    with torch.inference_mode():
        fast = ffn(x)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, ffn(x), atol=1e-5, rtol=1e-5)  # grad enabled: plain path


def test_gelu_variants_differ():
    """Guards against both names mapping to the same function."""
    x = torch.linspace(-3, 3, 50)[None, :, None].expand(1, 50, 4)
    a, b = FeedForward(4, 4, "gelu"), FeedForward(4, 4, "gelu_tanh")
    b.load_state_dict(a.state_dict())
    assert not torch.equal(a(x), b(x))


def test_unknown_activation_lists_known_ones():
    with pytest.raises(ConfigError, match="activation must be one of .*swiglu"):
        FeedForward(4, 8, "tanh")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_equals_formula(dtype):
    """Zhang & Sennrich 2019 eq. 4: x / sqrt(mean(x²) + eps) · g."""
    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x = torch.randn(3, 4, 6) * 5
    xd = x.double()
    expected = xd / torch.sqrt((xd**2).mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
    y = norm(x.to(dtype))
    assert y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(y.double(), expected, atol=tol, rtol=tol)


def test_build_norm_layernorm_equals_formula_and_refuses_unknown():
    ln = build_norm("layernorm", 6, eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6))
        ln.bias.copy_(torch.randn(6))
    x = torch.randn(4, 6)
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(ln(x), (x - mu) / torch.sqrt(var + 1e-5) * ln.weight + ln.bias, atol=1e-5, rtol=1e-5)
    assert build_norm("layernorm", 6, 1e-5, bias=False).bias is None
    assert isinstance(build_norm("rmsnorm", 6, 1e-6), RMSNorm)
    with pytest.raises(ConfigError, match="norm must be one of"):
        build_norm("batchnorm", 6, 1e-5)


def test_offset_rmsnorm_scales_by_one_plus_its_weight_and_starts_as_the_identity_scale():
    """Gemma's RMSNorm: x / sqrt(mean(x²) + eps) · (1 + w), w initialised to 0."""
    norm = build_norm("rmsnorm_offset", 6, 1e-6)
    x = torch.randn(3, 6) * 5
    unit = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), unit)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    torch.testing.assert_close(norm(x), unit * (1 + norm.weight), atol=1e-5, rtol=1e-5)


def test_mixture_of_experts_equals_the_routing_formula_and_runs_only_chosen_experts():
    """Mixtral §2.1: y = Σ_{top-k e} softmax(router(x))_e / Σ_top-k · expert_e(x), per token."""
    from attnkit.nn import MoEFeedForward

    torch.manual_seed(0)
    moe = MoEFeedForward(8, 12, n_experts=4, top_k=2)
    x = torch.randn(3, 5, 8, requires_grad=True)
    calls = []
    for e, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda m, inp, out, e=e: calls.append((e, inp[0].shape[0])))
    y = moe(x)
    ran = list(calls)  # before the formula below calls the experts too
    expected = torch.zeros(15, 8)
    for t, h in enumerate(x.detach().reshape(15, 8)):
        p = torch.softmax(moe.router(h), -1)
        w, chosen = p.topk(2)
        for weight, e in zip(w / w.sum(), chosen.tolist()):
            expected[t] += weight * moe.experts[e](h[None])[0]
    torch.testing.assert_close(y.detach().reshape(15, 8), expected, atol=1e-5, rtol=1e-5)
    assert sum(rows for _, rows in ran) == 15 * 2 and len({e for e, _ in ran}) == len(ran)  # each once
    y.sum().backward()
    assert moe.router.weight.grad.abs().sum() > 0 and x.grad.shape == x.shape
    with pytest.raises(ConfigError, match="top_k must be between 1 and n_experts"):
        MoEFeedForward(8, 12, n_experts=2, top_k=3)


def test_router_balance_loss_is_top_k_when_balanced_and_grows_with_imbalance():
    """Switch Transformer eq. 4: E · Σ f_e P_e is top_k for uniform routing, larger when a few
    experts take the tokens; padding left out by the mask."""
    from attnkit.nn import router_balance_loss

    uniform = torch.zeros(12, 4)  # equal router probabilities: ties broken, but P_e = 1/4 each
    assert router_balance_loss([uniform], top_k=2).item() == pytest.approx(2.0)
    skewed = torch.tensor([[5.0, 4.0, 0.0, 0.0]]).repeat(12, 1)
    assert router_balance_loss([skewed], top_k=2) > 3.5
    padded = torch.cat([skewed, torch.tensor([[0.0, 0.0, 5.0, 4.0]]).repeat(12, 1)])
    mask = torch.tensor([True] * 12 + [False] * 12)
    torch.testing.assert_close(router_balance_loss([padded], 2, mask), router_balance_loss([skewed], 2))
