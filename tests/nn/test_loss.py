"""linear_cross_entropy against F.cross_entropy(hidden @ weight.T) with PyTorch autograd."""

import pytest
import torch
import torch.nn.functional as F

from attnkit.errors import InputError
from attnkit.nn import linear_cross_entropy


def inputs(n=37, c=16, v=101, ignore=-100, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, c, generator=g, requires_grad=True)
    weight = torch.randn(v, c, generator=g, requires_grad=True)
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = ignore
    return hidden, weight, targets


def loss_and_grads(fn, hidden, weight):
    hidden.grad = weight.grad = None
    loss = fn()
    (3.0 * loss).backward()  # a non-unit incoming gradient
    return loss.detach(), hidden.grad.clone(), weight.grad.clone()


@pytest.mark.parametrize("chunk_size", [1, 8, 37, 1024])
@pytest.mark.parametrize("ignore", [-100, 3])
def test_loss_and_gradients_equal_cross_entropy(chunk_size, ignore):
    hidden, weight, targets = inputs(ignore=ignore)
    ours = loss_and_grads(lambda: linear_cross_entropy(hidden, weight, targets, ignore, chunk_size), hidden, weight)
    ref = loss_and_grads(lambda: F.cross_entropy(hidden @ weight.T, targets, ignore_index=ignore), hidden, weight)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale", [10.0, 60.0])
def test_confidently_wrong_rows_keep_an_exact_loss(scale):
    """Logits far apart: targets with probability below fp32's range (the softmax underflows to
    0) and just above it still give F.cross_entropy's loss (hundreds per row) and gradients."""
    hidden, weight, targets = inputs(n=40, c=16, v=101)
    with torch.no_grad():
        hidden.mul_(scale)
    ours = loss_and_grads(lambda: linear_cross_entropy(hidden, weight, targets, chunk_size=16), hidden, weight)
    ref = loss_and_grads(lambda: F.cross_entropy(hidden @ weight.T, targets), hidden, weight)
    if scale > 50:
        logp = torch.log_softmax(hidden @ weight.T, -1)[targets >= 0].gather(1, targets[targets >= 0, None])
        assert (logp < -104).any()  # some targets' probability is below fp32's smallest subnormal
    assert torch.isfinite(ours[0])
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=1e-5)


def test_bf16_autocast_stays_close_to_plain_path():
    hidden, weight, targets = inputs(n=64, c=32, v=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = loss_and_grads(lambda: linear_cross_entropy(hidden, weight, targets, chunk_size=16), hidden, weight)
        ref = loss_and_grads(lambda: F.cross_entropy(F.linear(hidden, weight).float(), targets), hidden, weight)
    exact = loss_and_grads(lambda: F.cross_entropy(hidden @ weight.T, targets), hidden, weight)
    assert ours[0].dtype == torch.float32 and ours[1].dtype == hidden.dtype and ours[2].dtype == weight.dtype
    for a, b, c in zip(ours, ref, exact):
        # within bf16 rounding of the plain autocast path, and no further from the fp32 result
        torch.testing.assert_close(a, b, atol=2e-2 * b.abs().max().item(), rtol=0)
        assert (a - c).abs().max() <= 1.5 * (b - c).abs().max() + 1e-6


def test_one_input_without_grad_and_no_grad():
    hidden, weight, targets = inputs()
    ref = F.cross_entropy(hidden @ weight.T, targets)
    (g_w,) = torch.autograd.grad(ref, weight)
    frozen = hidden.detach()
    loss = linear_cross_entropy(frozen, weight, targets, chunk_size=8)
    torch.testing.assert_close(torch.autograd.grad(loss, weight)[0], g_w)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, chunk_size=8), ref.detach())


def test_all_targets_ignored_is_nan_like_cross_entropy_with_zero_gradients():
    hidden, weight, _ = inputs()
    targets = torch.full((hidden.shape[0],), -100)
    loss, gh, gw = loss_and_grads(lambda: linear_cross_entropy(hidden, weight, targets), hidden, weight)
    ref, rh, rw = loss_and_grads(lambda: F.cross_entropy(hidden @ weight.T, targets), hidden, weight)
    assert torch.isnan(loss) and torch.isnan(ref)
    assert torch.equal(gh, rh) and torch.equal(gw, rw) and not gh.any()  # zeros, not nan, as F.cross_entropy
    empty = torch.zeros(0, hidden.shape[1])
    assert torch.isnan(linear_cross_entropy(empty, weight, targets[:0])) and torch.isnan(
        F.cross_entropy(empty @ weight.T, targets[:0]))


def test_targets_outside_the_vocabulary_or_not_integers_are_input_errors():
    hidden, weight, targets = inputs()
    bad = targets.clone()
    bad[3] = weight.shape[0]
    with pytest.raises(InputError, match=rf"targets must lie in \[0, {weight.shape[0]}\) or be ignore_index=-100, got 101"):
        linear_cross_entropy(hidden, weight, bad)
    with pytest.raises(InputError, match="targets must be int64 or int32"):
        linear_cross_entropy(hidden, weight, targets.float())


def test_bad_shapes_raise_input_error():
    hidden, weight, targets = inputs()
    with pytest.raises(InputError, match="targets"):
        linear_cross_entropy(hidden, weight, targets[:-1])
    with pytest.raises(InputError, match="weight"):
        linear_cross_entropy(hidden, weight[:, :-1], targets)


def test_gpt_loss_and_gradients_equal_plain_cross_entropy():
    from attnkit.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, n_positions=16, d_model=32, n_layers=2, n_heads=4, bos_token_id=None,
                          eos_token_id=None))
    ids = torch.randint(0, 97, (3, 9))
    labels = ids.clone()
    labels[1, :4] = -100

    def plain():
        logits = model(ids).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)

    grads = []
    for fn in (lambda: model(ids, labels=labels).loss, plain):
        model.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    out = model(ids, labels=labels)  # logits computed on first access, with autograd
    torch.testing.assert_close(out.logits, model(ids).logits)
    assert out.logits.requires_grad
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=labels)
    assert out.logits.dtype == torch.bfloat16 and not out.logits.requires_grad  # the forward's modes


def test_fp16_weight_gradient_keeps_its_small_entries_as_a_loss_scaled_backward_does():
    """Under fp16 autocast the gradients are computed in forward, before a GradScaler scales the
    loss, so they must not be formed as h / n in fp16: for a 16k-token batch that is below
    fp16's normal range, and ~5% of the softmax part of the weight gradient became zero."""
    torch.manual_seed(0)
    n, c, v, loss_scale = 16384, 32, 2048, 65536.0
    hidden, weight, targets = torch.randn(n, c), torch.randn(v, c) * 0.02, torch.randint(0, v // 2, (n,))
    w64 = weight.double().requires_grad_()
    F.cross_entropy(hidden.double() @ w64.T, targets).backward()
    never_target = slice(v // 2, None)  # rows whose gradient is the softmax part alone
    ref = w64.grad[never_target]
    w = weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        (linear_cross_entropy(hidden, w, targets, chunk_size=4096) * loss_scale).backward()
    got = w.grad[never_target].double() / loss_scale
    w16 = weight.half().requires_grad_()  # the plain autocast path: fp16 logits, loss-scaled backward
    (F.cross_entropy((hidden.half() @ w16.T).float(), targets) * loss_scale).backward()
    plain = w16.grad[never_target].double() / loss_scale
    assert (got - ref).norm() <= 1.5 * (plain - ref).norm()  # was 11x
    assert not (got == 0).any()  # was 0.2% of the entries


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_confident_rows_keep_their_gradients_under_autocast(dtype):
    """With p(target) ≈ 0.999 the gradient p - onehot must be formed before rounding to the
    autocast dtype: in bf16 p is 1.0 and the difference cancelled (error 0.96 vs 0.016)."""
    torch.manual_seed(0)
    v, c, n = 256, 64, 64
    weight, targets = torch.randn(v, c) / c**0.5, torch.randint(0, v, (n,))
    wt = weight[targets]
    hidden = torch.randn(n, c) * 0.1 + 14.0 * wt / (wt * wt).sum(-1, keepdim=True)  # target logit ~14 above

    def grads(loss_fn, autocast=True):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            loss_fn(h, w).backward()
        return h.grad.double(), w.grad.double()

    exact = grads(lambda h, w: F.cross_entropy(h.double() @ w.double().T, targets), autocast=False)
    assert torch.softmax(hidden @ weight.T, -1).gather(1, targets[:, None]).median() > 0.99
    plain = grads(lambda h, w: F.cross_entropy(F.linear(h, w).float(), targets))
    ours = grads(lambda h, w: linear_cross_entropy(h, w, targets))
    for o, p, e in zip(ours, plain, exact):
        assert (o - e).norm() <= 1.5 * (p - e).norm()


def test_fp16_weight_gradient_of_a_frequent_token_with_a_large_feature_stays_finite():
    """One target filling a chunk and a hidden feature of 80 sum past fp16's 65504 in the
    weight-gradient matmul unless it is scaled down; the loss scale cannot help, as the gradient
    is formed in forward."""
    torch.manual_seed(0)
    hidden, weight = torch.randn(1024, 64), torch.randn(512, 64) * 0.02
    hidden[:, 0] = 80.0
    targets = torch.full((1024,), 7)
    w, ref = weight.clone().requires_grad_(), weight.clone().double().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        linear_cross_entropy(hidden, w, targets).backward()
    F.cross_entropy(hidden.double() @ ref.T, targets).backward()
    assert torch.isfinite(w.grad).all()
    assert (w.grad.double() - ref.grad).norm() <= 2e-3 * ref.grad.norm()


@pytest.mark.parametrize("chunk_size", [8, 1024])
def test_softcapped_loss_and_gradients_equal_cross_entropy_of_capped_logits(chunk_size):
    """Gemma 2's final soft cap: the loss of c·tanh(logits / c), the cap's slope in the gradients."""
    hidden, weight, targets = inputs()
    with torch.no_grad():
        hidden.mul_(3.0)  # logits of ±30 and more: the cap bends them
    cap = 5.0
    ours = loss_and_grads(lambda: linear_cross_entropy(hidden, weight, targets, chunk_size=chunk_size, softcap=cap),
                          hidden, weight)
    ref = loss_and_grads(lambda: F.cross_entropy(torch.tanh(hidden @ weight.T / cap) * cap, targets), hidden, weight)
    plain = loss_and_grads(lambda: F.cross_entropy(hidden @ weight.T, targets), hidden, weight)
    for a, b, c in zip(ours, ref, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert (b - c).abs().max() > 1e-2  # the cap changed the loss and each gradient
    with torch.no_grad():  # the forward-only branch caps in place
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, softcap=cap), ref[0])
    with pytest.raises(InputError, match="softcap"):
        linear_cross_entropy(hidden, weight, targets, softcap=0.0)


@pytest.mark.parametrize("softcap", [None, 2.0])
def test_a_bias_gives_cross_entropy_of_the_biased_logits_and_its_gradient(softcap):
    """An LM head with a bias (Phi's): the loss of hidden @ weight.T + bias, soft-capped or not,
    and the gradients of all three, over chunks and ignored targets."""
    hidden, weight, targets = inputs()
    bias = torch.randn(101, generator=torch.Generator().manual_seed(1), requires_grad=True)

    def run(fn):
        hidden.grad = weight.grad = bias.grad = None
        loss = fn()
        (3.0 * loss).backward()
        return loss.detach(), hidden.grad.clone(), weight.grad.clone(), bias.grad.clone()

    def reference():
        z = hidden @ weight.T + bias
        return F.cross_entropy(z if softcap is None else torch.tanh(z / softcap) * softcap, targets)

    ours = run(lambda: linear_cross_entropy(hidden, weight, targets, chunk_size=8, softcap=softcap, bias=bias))
    for a, b in zip(ours, run(reference)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match=r"bias must be \(V,\) = \(101,\)"):
        linear_cross_entropy(hidden, weight, targets, bias=bias[:5])
