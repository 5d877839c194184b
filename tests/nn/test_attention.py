"""The attention kernel and MultiHeadAttention against references: an independent formula,
PyTorch's own SDPA with an explicit float mask, and ``torch.nn.MultiheadAttention``."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.errors import InputError
from attnkit.nn import (
    KVCache,
    LayerConfig,
    MultiHeadAttention,
    MultiHeadLatentAttention,
    RelativePositionBias,
    RotaryEmbedding,
    causal_mask,
    scaled_dot_product_attention,
)

from attnkit.nn import attention as attention_module

PROPERTY = settings(max_examples=50, deadline=None)


def naive_attention(q, k, v, mask=None, bias=None, is_causal=False, scale=None):
    """softmax(QKᵀ·scale + bias)V written out with explicit loops over heads and positions.

    The causal rule is bottom-right: query i of T sits at absolute position S - T + i.
    Rows with no allowed key give zero weights and a zero output.
    """
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    allowed = torch.ones(B, H, T, S, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask.expand(B, H, T, S)
    if is_causal:
        for i in range(T):
            for j in range(S):
                if j > S - T + i:
                    allowed[:, :, i, j] = False
    weights = torch.zeros(B, H, T, S, dtype=torch.float64)
    out = torch.zeros(B, H, T, D, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            hk = h // (H // Hkv)  # query head h reads key/value head h // group
            for i in range(T):
                keys = [j for j in range(S) if allowed[b, h, i, j]]
                if not keys:
                    continue
                s = torch.stack([(q[b, h, i].double() @ k[b, hk, j].double()) * scale for j in keys])
                if bias is not None:
                    s = s + torch.stack([bias.expand(B, H, T, S)[b, h, i, j].double() for j in keys])
                p = torch.exp(s - s.max())
                p = p / p.sum()
                for w, j in zip(p, keys):
                    weights[b, h, i, j] = w
                    out[b, h, i] += w * v[b, hk, j].double()
    return out.float(), weights.float()


def allowed_keys(q, k, mask, is_causal):
    """``(B, H, T, S)``: which keys each query may attend (mask AND bottom-right causal)."""
    (B, H, T, _), S = q.shape, k.shape[2]
    allowed = torch.ones(B, H, T, S, dtype=torch.bool)
    if mask is not None:
        allowed &= mask.expand(B, H, T, S)
    if is_causal:
        allowed &= causal_mask(T, S)
    return allowed


@st.composite
def attention_case(draw):
    """Random shapes, GQA groups, masks (some rows fully masked), biases, scales, causal flags."""
    B = draw(st.integers(1, 2))
    Hkv = draw(st.integers(1, 2))
    H = Hkv * draw(st.integers(1, 3))
    T = draw(st.integers(1, 5))
    S = draw(st.integers(1, 6))
    D = draw(st.integers(1, 8))
    causal = draw(st.booleans())
    mask_kind = draw(st.sampled_from(["none", "random", "padding", "full_row"]))
    use_bias = draw(st.booleans())
    scale = draw(st.sampled_from([None, 1.0, 0.3]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g)
    k = torch.randn(B, Hkv, S, D, generator=g)
    v = torch.randn(B, Hkv, S, D, generator=g)
    mask = None
    if mask_kind == "random":
        mask = torch.rand(B, 1, T, S, generator=g) < 0.6
    elif mask_kind == "padding":
        mask = (torch.rand(B, 1, 1, S, generator=g) < 0.7)
    elif mask_kind == "full_row":
        mask = torch.rand(B, H, T, S, generator=g) < 0.7
        mask[0, 0, 0] = False  # a query that may attend nothing
    bias = torch.randn(1, H, T, S, generator=g) if use_bias else None
    return q, k, v, dict(mask=mask, bias=bias, is_causal=causal, scale=scale)


@PROPERTY
@given(attention_case())
def test_fused_and_reference_paths_agree(case):
    q, k, v, kw = case
    fused = scaled_dot_product_attention(q, k, v, **kw)
    ref, _ = scaled_dot_product_attention(q, k, v, **kw, need_weights=True)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)


@PROPERTY
@given(attention_case())
def test_reference_path_equals_independent_formula(case):
    q, k, v, kw = case
    y, w = scaled_dot_product_attention(q, k, v, **kw, need_weights=True)
    y_naive, w_naive = naive_attention(q, k, v, **kw)
    torch.testing.assert_close(w, w_naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, y_naive, atol=1e-5, rtol=1e-5)


@PROPERTY
@given(attention_case())
def test_weight_rows_sum_to_one_and_masked_keys_get_zero(case):
    q, k, v, kw = case
    _, w = scaled_dot_product_attention(q, k, v, **kw, need_weights=True)
    allowed = allowed_keys(q, k, kw["mask"], kw["is_causal"])
    assert (w[~allowed] == 0).all()  # exactly zero, not merely small
    row_sums = w.sum(-1)
    has_key = allowed.any(-1)
    torch.testing.assert_close(row_sums[has_key], torch.ones_like(row_sums[has_key]))
    assert (row_sums[~has_key] == 0).all()


@PROPERTY
@given(attention_case(), st.integers(0, 2**31 - 1))
def test_changing_masked_keys_and_values_changes_nothing(case, seed):
    q, k, v, kw = case
    B, Hkv, S, D = k.shape
    g = torch.Generator().manual_seed(seed)
    key_ok = torch.rand(B, S, generator=g) < 0.6  # a padding mask, shared by every head
    kw = dict(kw, mask=key_ok[:, None, None, :])
    noise_k, noise_v = torch.randn(k.shape, generator=g) * 10, torch.randn(v.shape, generator=g) * 10
    k2 = torch.where(key_ok[:, None, :, None], k, noise_k)
    v2 = torch.where(key_ok[:, None, :, None], v, noise_v)
    for need_weights in (False, True):
        a = scaled_dot_product_attention(q, k, v, **kw, need_weights=need_weights)
        b = scaled_dot_product_attention(q, k2, v2, **kw, need_weights=need_weights)
        a, b = (a[0], b[0]) if need_weights else (a, b)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("T,S", [(6, 6), (3, 7)])
def test_causal_output_at_t_ignores_later_inputs(need_weights, T, S):
    q, k, v = torch.randn(2, 3, T, 4), torch.randn(2, 3, S, 4), torch.randn(2, 3, S, 4)
    run = lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=need_weights)  # noqa: E731
    base = run(q, k, v)
    base = base[0] if need_weights else base
    for t in range(T):
        pos = S - T + t  # absolute position of query t (bottom-right)
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        q2[:, :, t + 1:] += torch.randn_like(q2[:, :, t + 1:])
        k2[:, :, pos + 1:] += torch.randn_like(k2[:, :, pos + 1:])
        v2[:, :, pos + 1:] += torch.randn_like(v2[:, :, pos + 1:])
        out = run(q2, k2, v2)
        out = out[0] if need_weights else out
        torch.testing.assert_close(out[:, :, : t + 1], base[:, :, : t + 1])
        if pos + 1 < S:
            assert not torch.allclose(out[:, :, t + 1:], base[:, :, t + 1:])


def test_causal_with_cache_is_bottom_right_aligned():
    """With T < S the last T positions of a full causal run are reproduced (cached decoding)."""
    q, k, v = torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4)
    full = scaled_dot_product_attention(q, k, v, is_causal=True)
    for T in (1, 2, 5):
        part = scaled_dot_product_attention(q[:, :, -T:], k, v, is_causal=True)
        torch.testing.assert_close(part, full[:, :, -T:])


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_give_zeros_and_finite_gradients(need_weights):
    q = torch.randn(2, 2, 3, 4, requires_grad=True)
    k = torch.randn(2, 2, 5, 4, requires_grad=True)
    v = torch.randn(2, 2, 5, 4, requires_grad=True)
    mask = torch.rand(2, 1, 3, 5) < 0.5
    mask[:, :, 1] = False  # query 1 may attend nothing
    mask[:, :, 0, 0] = True
    bias = torch.randn(1, 2, 3, 5, requires_grad=True)
    out = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, need_weights=need_weights)
    y = out[0] if need_weights else out
    assert (y[:, :, 1] == 0).all()
    if need_weights:
        assert (out[1][:, :, 1] == 0).all()
    y.pow(2).sum().backward()
    for t in (q, k, v, bias):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, :, 1] == 0).all()


def test_causal_query_longer_than_keys_masks_early_rows():
    """T > S: the first T - S queries precede every key, so they get zeros, not NaN."""
    q, k, v = torch.randn(1, 1, 4, 3), torch.randn(1, 1, 2, 3), torch.randn(1, 1, 2, 3)
    y = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (y[:, :, :2] == 0).all() and torch.isfinite(y).all()
    torch.testing.assert_close(y, naive_attention(q, k, v, is_causal=True)[0])


@PROPERTY
@given(attention_case())
def test_fused_path_equals_torch_sdpa_with_float_mask(case):
    q, k, v, kw = case
    allowed = allowed_keys(q, k, kw["mask"], kw["is_causal"])
    allowed[..., 0] |= ~allowed.any(-1)  # torch gives NaN on empty rows: compare the others only
    float_mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    if kw["bias"] is not None:
        float_mask = float_mask + kw["bias"]
    group = q.shape[1] // k.shape[1]
    expected = F.scaled_dot_product_attention(
        q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), attn_mask=float_mask, scale=kw["scale"]
    )
    ours = scaled_dot_product_attention(q, k, v, mask=allowed, bias=kw["bias"], scale=kw["scale"])
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
@pytest.mark.parametrize("need_weights", [False, True])
def test_low_precision_stays_close_to_float32_and_finite(dtype, tol, need_weights):
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)
    mask = torch.rand(2, 1, 5, 5) < 0.6
    mask[0, 0, 0] = False
    bias = torch.randn(1, 4, 5, 5)
    expected = naive_attention(q, k, v, mask=mask, bias=bias, is_causal=True)[0]
    out = scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask=mask, bias=bias, is_causal=True,
                                       need_weights=need_weights)
    y = out[0] if need_weights else out
    assert y.dtype == dtype and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), expected, atol=tol, rtol=tol)


@PROPERTY
@given(attention_case())
def test_bf16_matmul_path_equals_float32_formula_and_fused_kernel(case):
    """bf16 on CPU with few scores takes plain matmuls (faster than PyTorch's CPU flash kernel
    there); outputs and gradients stay within bf16 rounding of float32 and of the fused kernel."""
    q, k, v, kw = case
    expected = naive_attention(q, k, v, **kw)[0]
    qb, kb, vb = (t.bfloat16().requires_grad_() for t in (q, k, v))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attention_module, "MATMUL_MIN_SCORES", 0)  # the test's shapes are tiny
        y = scaled_dot_product_attention(qb, kb, vb, **kw)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), expected, atol=6e-2, rtol=3e-2)
    y.float().square().sum().backward()
    grads = [t.grad.float() for t in (qb, kb, vb)]
    fused_inputs = [t.detach().clone().requires_grad_() for t in (qb, kb, vb)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attention_module, "MATMUL_MAX_SCORES", 0)  # the fused kernel
        fused = scaled_dot_product_attention(*fused_inputs, **kw)
    fused.float().square().sum().backward()
    torch.testing.assert_close(y.float(), fused.float(), atol=6e-2, rtol=3e-2)
    scale = max(t.grad.float().abs().max() for t in fused_inputs)  # bf16 rounding, relative to the largest
    for g, t in zip(grads, fused_inputs):                             # gradient (small ones carry cancellation)
        assert (g - t.grad.float()).abs().max() <= 0.05 * scale + 1e-3


@PROPERTY
@given(attention_case())
def test_bf16_matmul_blocks_without_gradients_equal_the_float32_formula(case):
    """Without gradients the plain matmuls go MATMUL_BLOCK queries at a time (2 here), causal
    blocks over the keys they can see: the float32 formula within bf16 rounding, as in one piece."""
    q, k, v, kw = case
    expected = naive_attention(q, k, v, **kw)[0]
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(attention_module, "MATMUL_MIN_SCORES", 0)
        mp.setattr(attention_module, "MATMUL_BLOCK", 2)
        y = scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), **kw)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), expected, atol=6e-2, rtol=3e-2)


def test_bf16_kernel_choice_follows_the_score_counts(monkeypatch):
    """Plain matmuls between MATMUL_MIN_SCORES (in all) and MATMUL_MAX_SCORES (per head), and
    without gradients beyond that too, block by block, while a block has at most
    MATMUL_BLOCK_MAX_SCORES scores: the (B, H, T, S) scores are never built whole beyond
    MATMUL_MAX_SCORES; below MATMUL_MIN_SCORES, the fused kernel costs less per call."""
    calls = []
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(a[0].shape) or torch.zeros_like(a[0]))
    q = torch.randn(2, 4, 32, 8, dtype=torch.bfloat16)  # 2·4·32·32 = 8192 scores, 1024 per head
    scaled_dot_product_attention(q, q, q, is_causal=True)
    assert calls == []
    monkeypatch.setattr(attention_module, "MATMUL_MAX_SCORES", 1023)
    scaled_dot_product_attention(q, q, q, is_causal=True)  # no gradients: blocks of plain matmuls
    assert calls == []
    grad = q.clone().requires_grad_()
    scaled_dot_product_attention(grad, grad, grad, is_causal=True)  # gradients to record: fused
    monkeypatch.setattr(attention_module, "MATMUL_BLOCK_MAX_SCORES", 2 * 4 * attention_module.MATMUL_BLOCK * 32 - 1)
    scaled_dot_product_attention(q, q, q, is_causal=True)  # a block of too many scores: fused
    monkeypatch.setattr(attention_module, "MATMUL_MAX_SCORES", 1024)
    scaled_dot_product_attention(q[:1, :1, :1], q[:1, :1], q[:1, :1])  # one decoding step: 32 scores
    assert calls == [q.shape, q.shape, (1, 1, 1, 8)]


def test_bf16_causal_blocks_read_only_the_keys_they_can_see(monkeypatch):
    """A causal prompt of 10 queries over 12 keys (2 cached) in blocks of 4: the blocks' scores
    cover 6, 10 and 12 keys, and the output is the one-piece computation's."""
    widths, baddbmm = [], torch.baddbmm
    monkeypatch.setattr(attention_module.torch, "baddbmm", lambda m, a, b, **kw: widths.append(b.shape[-1])
                        or baddbmm(m, a, b, **kw))
    monkeypatch.setattr(attention_module, "MATMUL_MIN_SCORES", 0)
    monkeypatch.setattr(attention_module, "MATMUL_BLOCK", 4)
    q, k, v = (torch.randn(1, 2, n, 8).bfloat16() for n in (10, 12, 12))
    y = attention_module._matmul_attention(q, k, v, None, True, 8 ** -0.5)
    assert widths == [6, 10, 12]
    whole = attention_module._matmul_attention(q.requires_grad_(), k, v, None, True, 8 ** -0.5)  # one piece
    assert widths[3:] == [12]
    torch.testing.assert_close(y.float(), whole.detach().float(), atol=1e-2, rtol=1e-2)


def test_bf16_decoding_step_runs_the_fused_kernel_in_fp32(monkeypatch):
    """One query per sequence below MATMUL_MIN_SCORES: PyTorch's fused kernel, in fp32."""
    real, seen = F.scaled_dot_product_attention, []
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda q, *a, **kw: seen.append(q.dtype) or real(q, *a, **kw))
    q, k, v = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    mask, bias = torch.rand(2, 1, 1, 6) < 0.7, torch.randn(1, 4, 1, 6)
    mask[:, :, :, 0] = True
    q, k, v, bias = (t.bfloat16() for t in (q, k, v, bias))  # the inputs, rounded as the kernel sees them
    expected = naive_attention(q.float(), k.float(), v.float(), mask=mask, bias=bias.float())[0]
    y = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
    assert seen == [torch.float32] and y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected, atol=1e-2, rtol=1e-2)  # bf16 rounding of the output only


def band(T: int, S: int, left: int, right: int) -> torch.Tensor:
    """``(T, S)``: key ``j`` within ``left`` before and ``right`` after query ``i``'s position ``S - T + i``."""
    return torch.tensor([[-left <= j - (S - T + i) <= right for j in range(S)] for i in range(T)])


@st.composite
def window_case(draw):
    """Random shapes past the window, windows, blocks (several per sequence), padding or a mask
    that is not a key-padding one, a bias, causal flags."""
    B, Hkv = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H, T = Hkv * draw(st.integers(1, 2)), draw(st.integers(1, 40))
    S, D = T + draw(st.sampled_from([0, 0, 3, 17])), draw(st.integers(1, 8))
    left, right, causal = draw(st.integers(0, 12)), draw(st.integers(0, 12)), draw(st.booleans())
    kind = draw(st.sampled_from(["none", "padding", "padding", "per query", "bias", "softcap", "sinks"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q, k, v = (torch.randn(B, h, n, D, generator=g) for h, n in ((H, T), (Hkv, S), (Hkv, S)))
    mask = bias = None
    if kind == "padding":
        mask = torch.rand(B, 1, 1, S, generator=g) < 0.7
    elif kind == "per query":
        mask = torch.rand(B, 1, T, S, generator=g) < 0.7
    elif kind == "bias":
        bias = torch.randn(1, H, T, S, generator=g)
    extra = dict(softcap=0.7) if kind == "softcap" else dict(sinks=torch.randn(H, generator=g)) if kind == "sinks" \
        else {}
    block = draw(st.sampled_from([1, 4, 128]))
    return q, k, v, dict(mask=mask, bias=bias, is_causal=causal, **extra), (left, right), block


@settings(max_examples=150, deadline=None)
@given(window_case())
def test_a_window_is_the_band_mask_without_building_it(case):
    """``window=(left, right)`` equals the independent formula with the band as a mask (and the
    causal mask), values and gradients, for one block or many (with a soft cap or sinks: the
    reference path with that mask); on its blockwise path no mask or score matrix of the whole
    (T, S) is made."""
    q, k, v, kw, (left, right), block = case
    T, S = q.shape[2], k.shape[2]
    allowed = band(T, S, left, 0 if kw["is_causal"] else right)
    allowed = allowed if kw["mask"] is None else kw["mask"] & allowed
    extra = {name: kw[name] for name in ("softcap", "sinks") if name in kw}
    if extra:
        expected = scaled_dot_product_attention(q, k, v, mask=allowed, is_causal=kw["is_causal"], need_weights=True,
                                                **extra)[0]
    else:
        expected = naive_attention(q, k, v, mask=allowed, bias=kw["bias"], is_causal=kw["is_causal"])[0]
    shapes, real_band = [], attention_module.band_mask
    attention_module.WINDOW_BLOCK, attention_module.band_mask = block, lambda *a, **k: (
        shapes.append(a[:2]) or real_band(*a, **k))
    try:
        q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
        y = scaled_dot_product_attention(q, k, v, window=(left, right), **kw)
    finally:
        attention_module.WINDOW_BLOCK, attention_module.band_mask = 128, real_band
    assert torch.allclose(y, expected, atol=1e-5)
    g = torch.randn_like(y)
    ref = scaled_dot_product_attention(q, k, v, mask=allowed, bias=kw["bias"], is_causal=kw["is_causal"],
                                       need_weights=True, **extra)[0]
    for a, b in zip(torch.autograd.grad(y, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        assert torch.allclose(a, b, atol=1e-5)
    blockwise = kw["bias"] is None and (kw["mask"] is None or kw["mask"].shape[2] == 1)
    if blockwise and S > left + right + max(block, left + right) and T > 1:
        assert shapes and all(t * s < T * S for t, s in shapes)


def test_a_window_checks_its_sides_spans_everything_or_not_and_runs_in_bf16():
    q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 9, 4), torch.randn(1, 2, 9, 4)
    with pytest.raises(InputError, match="window must be"):
        scaled_dot_product_attention(q, k, v, window=(-1, 0))
    assert torch.equal(scaled_dot_product_attention(q, k, v, is_causal=True, window=(8, 0)),
                       scaled_dot_product_attention(q, k, v, is_causal=True))
    assert not torch.allclose(scaled_dot_product_attention(q, k, v, is_causal=True, window=(7, 0)),
                              scaled_dot_product_attention(q, k, v, is_causal=True))
    # bf16, blockwise (3 blocks of 100 queries), stays close to float32
    q, k, v = torch.randn(2, 4, 300, 16), torch.randn(2, 2, 300, 16), torch.randn(2, 2, 300, 16)
    expected = scaled_dot_product_attention(q, k, v, window=(5, 7))
    low = scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), window=(5, 7))
    assert low.dtype == torch.bfloat16 and (low.float() - expected).abs().max() < 3e-2


def test_scale_one_is_unscaled_dot_product():
    q, k, v = torch.randn(1, 1, 2, 16), torch.randn(1, 1, 3, 16), torch.randn(1, 1, 3, 16)
    _, w = scaled_dot_product_attention(q, k, v, scale=1.0, need_weights=True)
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-2, -1), -1))
    fused = scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(fused, torch.softmax(q @ k.transpose(-2, -1), -1) @ v)


def test_bad_masks_are_refused():
    q = k = v = torch.randn(2, 2, 3, 4)
    with pytest.raises(InputError, match="must be bool"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(2, 1, 3, 3))
    with pytest.raises(InputError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(2, 1, 3, 5, dtype=torch.bool))
    with pytest.raises(InputError, match="4-D"):
        scaled_dot_product_attention(q[0], k[0], v[0])
    with pytest.raises(InputError, match="multiple of key/value heads"):
        scaled_dot_product_attention(torch.randn(1, 3, 2, 4), torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4))
    with pytest.raises(InputError, match=r"k and v must have the same \(B, Hkv, S\)"):
        scaled_dot_product_attention(q, k, v[:, :, :2])


@pytest.mark.parametrize("mask", [torch.tensor(True), torch.tensor([True, False, True]), torch.tensor([[True, True, False]])])
def test_masks_of_fewer_than_two_dims_broadcast_on_every_path(mask):
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    ref, _ = scaled_dot_product_attention(q, k, v, mask=mask, need_weights=True)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=mask), ref, atol=1e-6, rtol=1e-5)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(ref, scores.softmax(-1) @ v, atol=1e-6, rtol=1e-5)


# -- MultiHeadAttention ------------------------------------------------------------------------


def _torch_mha(C, H, bias=True):
    ref = torch.nn.MultiheadAttention(C, H, bias=bias, batch_first=True).eval()
    if bias:  # torch zero-initialises the biases; make them count
        torch.nn.init.normal_(ref.in_proj_bias)
        torch.nn.init.normal_(ref.out_proj.bias)
    return ref


def _copy_weights(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention, C: int):
    W, b = ref.in_proj_weight.detach(), ref.in_proj_bias
    with torch.no_grad():
        if hasattr(ours, "qkv_proj"):
            ours.qkv_proj.weight.copy_(W)
            if b is not None:
                ours.qkv_proj.bias.copy_(b)
        elif hasattr(ours, "kv_proj"):
            ours.q_proj.weight.copy_(W[:C])
            ours.kv_proj.weight.copy_(W[C:])
            if b is not None:
                ours.q_proj.bias.copy_(b[:C])
                ours.kv_proj.bias.copy_(b[C:])
        else:
            for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
                proj.weight.copy_(W[i * C:(i + 1) * C])
                if b is not None:
                    proj.bias.copy_(b[i * C:(i + 1) * C])
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if b is not None:
            ours.out_proj.bias.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("fused_qkv", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding", [False, True])
def test_self_attention_equals_torch_multihead_attention(fused_qkv, bias, padding):
    B, T, C, H = 3, 5, 16, 4
    ref = _torch_mha(C, H, bias)
    ours = MultiHeadAttention(C, H, bias=bias, fused_qkv=fused_qkv).eval()
    _copy_weights(ours, ref, C)
    x = torch.randn(B, T, C)
    keep = torch.ones(B, T, dtype=torch.bool)
    if padding:
        keep[0, 3:] = False
        keep[2, 1:] = False
    # torch: key_padding_mask True = ignore; attnkit: True = may attend.
    y_ref, w_ref = ref(x, x, x, key_padding_mask=~keep if padding else None, average_attn_weights=False)
    y, w = ours(x, mask=keep[:, None, None, :] if padding else None, need_weights=True)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_ref, atol=1e-6, rtol=1e-5)
    y_fused, _ = ours(x, mask=keep[:, None, None, :] if padding else None)
    torch.testing.assert_close(y_fused, y_ref, atol=1e-5, rtol=1e-5)


def test_causal_self_attention_equals_torch_with_inverted_attn_mask():
    B, T, C, H = 2, 6, 12, 3
    ref = _torch_mha(C, H)
    ours = MultiHeadAttention(C, H).eval()
    _copy_weights(ours, ref, C)
    x = torch.randn(B, T, C)
    y_ref, _ = ref(x, x, x, attn_mask=~causal_mask(T))  # torch: True = not allowed
    y, _ = ours(x, is_causal=True)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fused_qkv", [True, False])
def test_cross_attention_equals_torch_multihead_attention(fused_qkv):
    B, T, S, C, H = 2, 4, 7, 16, 2
    ref = _torch_mha(C, H)
    ours = MultiHeadAttention(C, H, cross=True, fused_qkv=fused_qkv).eval()
    _copy_weights(ours, ref, C)
    x, ctx = torch.randn(B, T, C), torch.randn(B, S, C)
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[1, 4:] = False
    y_ref, w_ref = ref(x, ctx, ctx, key_padding_mask=~keep, average_attn_weights=False)
    y, w = ours(x, context=ctx, mask=keep[:, None, None, :], need_weights=True)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_ref, atol=1e-6, rtol=1e-5)


def test_grouped_query_attention_shares_kv_heads():
    """GQA with Hkv heads equals full MHA whose k/v projections repeat each kv head's rows."""
    B, T, C, H, Hkv = 2, 5, 24, 6, 2
    D = C // H
    gqa = MultiHeadAttention(C, H, n_kv_heads=Hkv, fused_qkv=False).eval()
    mha = MultiHeadAttention(C, H, fused_qkv=False).eval()
    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for src, dst in ((gqa.k_proj, mha.k_proj), (gqa.v_proj, mha.v_proj)):
            dst.weight.copy_(src.weight.view(Hkv, D, C).repeat_interleave(H // Hkv, 0).reshape(C, C))
            dst.bias.copy_(src.bias.view(Hkv, D).repeat_interleave(H // Hkv, 0).reshape(C))
    assert gqa.k_proj.weight.shape == (Hkv * D, C)
    x = torch.randn(B, T, C)
    torch.testing.assert_close(gqa(x, is_causal=True)[0], mha(x, is_causal=True)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("use_rotary", [False, True])
def test_incremental_decoding_with_kv_cache_matches_full(n_kv_heads, use_rotary):
    B, T, C, H = 2, 7, 16, 4
    attn = MultiHeadAttention(C, H, n_kv_heads=n_kv_heads).eval()
    rope = RotaryEmbedding(C // H)
    x = torch.randn(B, T, C)
    pos = torch.arange(T).expand(B, T)
    full, _ = attn(x, is_causal=True, rotary=rope(pos) if use_rotary else None)
    cache = KVCache(max_len=T)
    chunks = [(0, 3), (3, 4), (4, 7)]  # a prompt, then one token, then a chunk of three
    outs = []
    for a, b in chunks:
        rot = rope(pos[:, a:b]) if use_rotary else None
        outs.append(attn(x[:, a:b], is_causal=True, cache=cache, rotary=rot)[0])
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_is_preallocated_and_written_in_place():
    cache = KVCache(max_len=6)
    k, v = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
    cache.update(k, v)
    ptr = cache.k.data_ptr()
    for _ in range(4):
        ks, vs = cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
        assert cache.k.data_ptr() == ptr  # no reallocation, no concatenation
    assert ks.shape == (1, 2, 6, 4) and cache.length == 6
    torch.testing.assert_close(ks[:, :, :2], k)
    with pytest.raises(InputError, match="overflow"):
        cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))


def test_cross_attention_cache_reuses_encoder_keys():
    B, T, S, C, H = 2, 3, 5, 8, 2
    attn = MultiHeadAttention(C, H, cross=True).eval()
    x, ctx = torch.randn(B, T, C), torch.randn(B, S, C)
    full, _ = attn(x, context=ctx)
    cache = KVCache()
    first, _ = attn(x[:, :1], context=ctx, cache=cache)
    rest, _ = attn(x[:, 1:], cache=cache)  # no context: keys/values come from the cache
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-6, rtol=1e-5)
    with pytest.raises(InputError, match="context"):
        attn(x)


@pytest.mark.parametrize("fused_qkv", [True, False])
def test_cross_attention_cache_repeats_a_shared_context(fused_qkv):
    """Beam search: each source's encoder output serves ``repeat`` query rows; a cache with
    ``repeat`` projects it once and must attend like the context repeated row by row."""
    B, beams, T, S, C, H = 2, 3, 2, 5, 8, 2
    attn = MultiHeadAttention(C, H, cross=True, fused_qkv=fused_qkv).eval()
    x, ctx = torch.randn(B * beams, T, C), torch.randn(B, S, C)
    full, _ = attn(x, context=ctx.repeat_interleave(beams, 0))
    cache = KVCache(repeat=beams)
    first, _ = attn(x[:, :1], context=ctx, cache=cache)
    rest, _ = attn(x[:, 1:], cache=cache)
    assert cache.k.shape[0] == B * beams
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-6, rtol=1e-5)


def test_t5_style_attention_equals_formula():
    """Separate head_dim, no projection biases, scale=1.0 and a T5 relative bias (Raffel et al. 2020)."""
    B, T, C, H, D = 2, 5, 16, 4, 6
    attn = MultiHeadAttention(C, H, head_dim=D, bias=False, fused_qkv=False, scale=1.0).eval()
    bias = RelativePositionBias(H, num_buckets=8, max_distance=16)(T, T)
    x = torch.randn(B, T, C)
    heads = lambda t: t.view(B, T, H, D).transpose(1, 2)  # noqa: E731
    q, k, v = heads(x @ attn.q_proj.weight.T), heads(x @ attn.k_proj.weight.T), heads(x @ attn.v_proj.weight.T)
    w = torch.softmax(q @ k.transpose(-2, -1) + bias, -1)
    expected = (w @ v).transpose(1, 2).reshape(B, T, H * D) @ attn.out_proj.weight.T
    y, weights = attn(x, bias=bias, need_weights=True)
    torch.testing.assert_close(weights, w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn(x, bias=bias)[0], expected, atol=1e-5, rtol=1e-5)


def test_mha_refuses_heads_not_dividing_width():
    with pytest.raises(InputError, match="divisible by n_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(InputError, match="multiple of n_kv_heads"):
        MultiHeadAttention(12, 4, n_kv_heads=3)


def test_reference_path_stays_in_fp32_under_autocast():
    """need_weights promises fp32 weights; autocast would run its matmuls in bf16 (2% off at
    sharp attention)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 16, dtype=torch.bfloat16) * 8 for _ in range(3))
    plain = scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    for a, b in zip(autocast, plain):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fused_qkv", [True, False])
def test_qkv_bias_false_drops_only_the_query_key_value_biases(fused_qkv):
    """ViT's ``qkv_bias=False``: no q/k/v biases, the output projection keeps its own."""
    attn = MultiHeadAttention(16, 4, fused_qkv=fused_qkv, qkv_bias=False)
    projections = [attn.qkv_proj] if fused_qkv else [attn.q_proj, attn.k_proj, attn.v_proj]
    assert all(p.bias is None for p in projections) and attn.out_proj.bias is not None
    assert LayerConfig(d_model=16, n_heads=4, d_ff=32, qkv_bias=False).attention().qkv_proj.bias is None
    assert MultiHeadAttention(16, 4, bias=False, qkv_bias=True).qkv_proj.bias is not None


@pytest.mark.parametrize("need_weights", [False, True])
def test_softcapped_scores_equal_the_gemma_formula_masked_after_the_cap(need_weights):
    """Gemma 2: softmax(c·tanh(q kᵀ · scale / c) + mask) v, on the fused call's interface."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8) * 4, torch.randn(2, 3, 5, 8) * 4, torch.randn(2, 3, 5, 8)
    mask = torch.rand(2, 1, 5, 5) > 0.3
    cap, scale = 2.0, 0.25
    scores = torch.tanh(q @ k.transpose(-2, -1) * scale / cap) * cap
    weights = torch.softmax(scores.masked_fill(~mask | ~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf")), -1)
    weights = torch.nan_to_num(weights)  # rows with no key: zeros, as attnkit returns them
    out = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True, scale=scale, softcap=cap,
                                       need_weights=need_weights)
    y = out[0] if need_weights else out
    torch.testing.assert_close(y, weights @ v, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(out[1], weights, atol=1e-6, rtol=1e-5)
    uncapped = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True, scale=scale)
    assert (uncapped - y).abs().max() > 1e-2


@pytest.mark.parametrize("q_lora_rank,rope_interleave", [(None, False), (12, True)])
def test_latent_attention_equals_the_expanded_formula(q_lora_rank, rope_interleave):
    """Multi-head latent attention (queries moved into the latent space) equals the formula of
    DeepSeek-V2 §2.1 written out: each head's key [W_k c, k_rope] and value W_v c, causal softmax
    attention with a padding mask, the weights too; a decoding step over the cache (heads folded
    into one shared-key head) equals the last row of the full pass."""
    torch.manual_seed(0)
    H, nope, rope, v_dim, r = 3, 6, 4, 5, 8
    mla = MultiHeadLatentAttention(16, H, r, nope, rope, v_dim, q_lora_rank, rope_interleave=rope_interleave).eval()
    x = torch.randn(2, 7, 16)
    cos, sin = RotaryEmbedding(rope)(torch.arange(7)[None].expand(2, -1))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., :2] = False  # row 1 left-padded

    q = mla.q_proj(x) if q_lora_rank is None else mla.q_b_proj(mla.q_a_norm(mla.q_a_proj(x)))
    q = q.view(2, 7, H, nope + rope).transpose(1, 2)
    latent, k_rope = mla.kv_a_proj(x).split([r, rope], dim=-1)
    kv = mla.kv_b_proj(mla.kv_a_norm(latent)).view(2, 7, H, nope + v_dim).transpose(1, 2)
    q_rope, k_rope = q[..., nope:], k_rope[:, None]
    if rope_interleave:  # pairs (x0, x1), (x2, x3) rotate together: evens first, as transformers does
        q_rope, k_rope = (torch.cat([t[..., 0::2], t[..., 1::2]], -1) for t in (q_rope, k_rope))
    rotate = lambda t: t * cos + torch.cat([-t[..., rope // 2:], t[..., :rope // 2]], -1) * sin  # noqa: E731
    queries = torch.cat([q[..., :nope], rotate(q_rope)], -1)
    keys = torch.cat([kv[..., :nope], rotate(k_rope).expand(-1, H, -1, -1)], -1)
    scores = queries @ keys.transpose(-1, -2) / math.sqrt(nope + rope)
    allowed = mask & torch.ones(7, 7, dtype=torch.bool).tril()
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0)  # padding rows: zeros
    expected = mla.out_proj((weights @ kv[..., nope:]).transpose(1, 2).reshape(2, 7, H * v_dim))

    with torch.no_grad():
        y, w = mla(x, mask=mask, is_causal=True, rotary=(cos, sin), need_weights=True)
        assert (y - expected).abs().max() < 1e-5 and (w - weights).abs().max() < 1e-5
        assert (mla(x, mask=mask, is_causal=True, rotary=(cos, sin))[0] - expected).abs().max() < 1e-5
        cache = KVCache(7)
        mla(x[:, :6], mask=mask[..., :6], is_causal=True, rotary=(cos[:, :, :6], sin[:, :, :6]), cache=cache)
        step, _ = mla(x[:, 6:], mask=mask, is_causal=True, rotary=(cos[:, :, 6:], sin[:, :, 6:]), cache=cache)
        assert (step - expected[:, 6:]).abs().max() < 1e-5
