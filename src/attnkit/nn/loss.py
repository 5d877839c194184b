"""Fused, chunked linear + cross-entropy: the language-model loss without the (N, V) logits.

``F.cross_entropy(hidden @ weight.T, targets)`` materialises the logits, their log-softmax and
both gradients, four (N, V) fp32 tensors (412 MB each for 2048 tokens and GPT-2's vocabulary),
and reads and writes them in half a dozen passes. Here the rows go through in chunks: for each
chunk the logits are computed, turned into probabilities in place (one softmax pass; the loss
is the log of the target's probability), and used at once for the loss and for both gradients
(the gradient of the mean cross-entropy w.r.t. the logits is ``(softmax(z) - onehot(t)) / n``),
so only one chunk of logits is ever alive and no gradient needs the logits again in backward.
Same FLOPs as the plain path (three N×C×V matmuls).
"""

from __future__ import annotations

import torch

from attnkit.errors import InputError
from attnkit.nn.linear import mm_t


# Below this log-probability (a probability of 1e-30) an fp32 softmax value has lost digits
# (fp32 is subnormal below 1.2e-38), so those rows' loss is recomputed as an exact log-softmax.
_LOG_MIN_PROB = -69.0


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss in forward; gradients computed in forward too (they need the chunk's softmax) and
    only scaled by the incoming gradient in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, chunk_size, compute_dtype, grad_enabled, softcap, bias):
        need_h, need_w = grad_enabled and ctx.needs_input_grad[0], grad_enabled and ctx.needs_input_grad[1]
        need_b = bias is not None and grad_enabled and ctx.needs_input_grad[8]
        h, w = hidden.to(compute_dtype), weight.to(compute_dtype)
        b = None if bias is None else bias.to(compute_dtype)
        valid = targets != ignore_index
        safe = torch.where(valid, targets, 0)  # ignored rows pick class 0 and are zeroed below
        n_valid = valid.sum()
        inv_n = 1.0 / n_valid.clamp_min(1)  # mean over the real targets; zero gradients if none
        scale = valid.float() * inv_n
        p_target = hidden.new_empty(h.shape[0], dtype=torch.float32)  # each row's probability of its target
        grad_h = torch.empty_like(hidden, dtype=torch.float32) if need_h else None
        # The weight gradient is summed as (C, V) in fp32, where oneDNN computes shᵀ @ p twice as
        # fast as pᵀ @ sh, and as (V, C), the weight's own layout, in bf16, where both are as fast.
        cv = compute_dtype == torch.float32
        grad_w = None
        grad_b = torch.zeros(w.shape[0], dtype=torch.float32, device=w.device) if need_b else None
        # The fp32 softmax is computed in place: in the logits themselves in fp32, in one buffer
        # reused by every chunk otherwise.
        rows = min(chunk_size, h.shape[0])
        buf = None if compute_dtype == torch.float32 else h.new_empty(rows, w.shape[0], dtype=torch.float32)
        for i in range(0, h.shape[0], chunk_size):
            h_c, t_c, s_c = h[i:i + chunk_size], safe[i:i + chunk_size], scale[i:i + chunk_size, None]
            n = h_c.shape[0]
            z_c = mm_t(h_c, w)  # (n, V) logits
            if b is not None:
                z_c += b
            p32 = z_c if buf is None else buf[:n].copy_(z_c)
            slope = None  # d capped / d logits = 1 - tanh², kept for the gradient
            if softcap is not None and (need_h or need_w):
                slope = torch.tanh(p32 / softcap)
                p32.copy_(slope).mul_(softcap)
                slope.square_().neg_().add_(1.0)
            elif softcap is not None:
                p32.div_(softcap).tanh_().mul_(softcap)
            torch.softmax(p32, dim=-1, out=p32)  # row-wise, safe in place
            p_target[i:i + n] = p32.gather(1, t_c[:, None])[:, 0]  # (not gather(out=): torch.compile fails on it)
            if not (need_h or need_w or need_b):
                continue
            # d loss / d logits = s * (p - onehot(t)), formed in fp32 before any rounding: in bf16
            # a confident p = 0.999 is 1.0, and p - 1 would cancel to 0 after the matmuls. The
            # scale s is applied to the (n, C) side, never to (n, V).
            p32.scatter_add_(1, t_c[:, None], p32.new_full((n, 1), -1.0))
            if slope is not None:
                p32.mul_(slope)
            if need_b:  # summed over the real targets in fp32, divided by their count in backward
                grad_b += (p32 * valid[i:i + n, None]).sum(dim=0)
            d = z_c.copy_(p32)  # (n, V) in the compute dtype (the same buffer in fp32)
            if need_h:
                grad_h[i:i + n] = s_c * mm_t(d, w.t()).float()
            if need_w:
                # Summed over the real targets and divided by their count in backward: scaled
                # first, h/n would fall below fp16's normal range (1/n of a 16k-token batch).
                vh = h_c * valid[i:i + n, None].to(compute_dtype)  # (n, C), ignored rows zeroed (exact)
                unit = None
                if compute_dtype == torch.float16:
                    # The matmul's fp16 result must stay below 65504: |d| <= 1, so it is at most n·max|h|.
                    # A power of two brings that bound to 2^15 (exact, and undone in fp32).
                    bound = n * vh.abs().amax().float().clamp_min(2.0**-24)
                    unit = torch.exp2(torch.floor(torch.log2(2.0**15 / bound)))
                    vh = vh * unit.to(vh.dtype)
                gw_c = mm_t(vh.t(), d.t()) if cv else mm_t(d.t(), vh.t())  # (C, V) or (V, C)
                gw_c = gw_c.float() if unit is None else gw_c.float() / unit
                grad_w = gw_c if grad_w is None else grad_w.add_(gw_c)
        logp_target = p_target.log_()
        lost = logp_target < _LOG_MIN_PROB
        if bool(lost.any()):  # the target's probability underflowed or lost digits: its exact log-softmax
            r = lost.nonzero()[:, 0]
            z = mm_t(h[r], w).float() if b is None else (mm_t(h[r], w) + b).float()
            z = z if softcap is None else torch.tanh(z / softcap) * softcap
            logp_target[r] = torch.log_softmax(z, dim=-1).gather(1, safe[r, None])[:, 0]
        total = -(logp_target * scale).sum() / (n_valid > 0)  # nan without targets, as F.cross_entropy
        ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.t() if cv else grad_w, inv_n, grad_b)
        ctx.dtypes = hidden.dtype, weight.dtype, None if bias is None else bias.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, inv_n, grad_b = ctx.saved_tensors
        h_dtype, w_dtype, b_dtype = ctx.dtypes
        gh = (grad_h * grad_out).to(h_dtype) if grad_h is not None else None
        gw = None
        if grad_w is not None:  # (V, C), maybe a view of the (C, V) sum: written out contiguous, as the weight is
            gw = torch.mul(grad_w, grad_out * inv_n, out=grad_w.new_empty(grad_w.shape, dtype=w_dtype))
        gb = None if grad_b is None else (grad_b * (grad_out * inv_n)).to(b_dtype)
        return gh, gw, None, None, None, None, None, None, gb


def check_class_ids(ids: torch.Tensor, n_classes: int, ignore_index: int = -100, name: str = "labels",
                    ignored_as: str | None = None) -> None:
    """Raise :class:`~attnkit.InputError` unless every entry of ``ids`` is a class in
    ``[0, n_classes)`` or ``ignore_index`` (named ``ignored_as`` in the message)."""
    bad = (ids != ignore_index) & ((ids < 0) | (ids >= n_classes))
    if bool(bad.any()):
        raise InputError(f"{name} must lie in [0, {n_classes}) or be {ignored_as or ignore_index}, got {int(ids[bad][0])}")


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int = 1024,
    softcap: float | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T + bias, targets, ignore_index=ignore_index)`` (mean over
    the targets that are not ``ignore_index``) without materialising the logits.

    Args:
        hidden: ``(N, C)`` inputs of the output projection (e.g. the final hidden states).
        weight: ``(V, C)`` the projection's weight (``nn.Linear(C, V, bias=False).weight``).
        targets: ``(N,)`` class indices in ``[0, V)`` or ``ignore_index``.
        chunk_size: rows per chunk; peak extra memory is about ``chunk_size × V`` fp32 values
            (twice that with ``softcap`` and gradients).
        softcap: the loss of soft-capped logits ``softcap · tanh(logits / softcap)`` (Gemma 2).
        bias: ``(V,)`` the projection's bias, if it has one (Phi's LM head).

    Returns a scalar fp32 loss, differentiable w.r.t. ``hidden``, ``weight`` and ``bias``. Under autocast
    the matmuls run in the autocast dtype and the softmax in fp32, as with ``F.linear`` followed
    by ``F.cross_entropy(logits.float(), ...)``.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1] or targets.shape != hidden.shape[:1]:
        raise InputError(
            f"linear_cross_entropy needs hidden (N, C), weight (V, C), targets (N,); got "
            f"{tuple(hidden.shape)}, {tuple(weight.shape)}, {tuple(targets.shape)}"
        )
    if chunk_size < 1:
        raise InputError(f"chunk_size must be positive, got {chunk_size}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise InputError(f"bias must be (V,) = ({weight.shape[0]},), got {tuple(bias.shape)}")
    if softcap is not None and not softcap > 0:
        raise InputError(f"softcap must be None or positive, got {softcap}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise InputError(f"targets must be int64 or int32 class indices, got {targets.dtype}")
    check_class_ids(targets, weight.shape[0], ignore_index, "targets", ignored_as=f"ignore_index={ignore_index}")
    device = hidden.device.type
    compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    grad_enabled = torch.is_grad_enabled()  # forward computes the gradients too, unless no_grad
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, chunk_size, compute_dtype, grad_enabled,
                                         softcap, bias)
