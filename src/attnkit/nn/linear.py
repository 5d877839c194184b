"""Linear layers on the fastest CPU matmul kernel PyTorch ships.

PyTorch runs fp32 CPU matmuls on MKL and bf16 ones on oneDNN. On AMD CPUs MKL takes its AVX2
code path, so oneDNN's fp32 gemm (AVX-512) is about 2.2x faster for a training-sized linear
layer (Zen 5, 2 cores: 470 vs 210 GFLOP/s) and streams decoding weights about 1.9x faster
(34 vs 18 GB/s for one row); on Intel CPUs the two are close. So every fp32 CPU linear layer
here of at least ``ONEDNN_MIN_MACS`` multiply-adds per call, forward and backward, goes through
oneDNN's linear (:func:`mm_t`); it agrees with ``F.linear`` to fp32 rounding (a different
summation order, not a lower precision).

bf16 decoding on CPUs with AMX takes one more detour: there oneDNN's gemm with one row streams
the weights 1.5-2x slower than ``torch.mv`` (``W @ xᵀ`` for up to ``MATVEC_ROWS`` rows), while
on CPUs without AMX it is the other way round, so ``torch.mv`` is used only where AMX is.

Decoding streams every weight once per token, and oneDNN streams them fastest when they are
re-laid out (packed) for its kernels once, not on every call: within :func:`packed_weights`
(which ``generate`` enters for long calls, ``pack_weights="auto"``) the layers compute from such
a copy (GPT-2 small, 2 cores: bf16 decoding 1.4-1.7x faster, fp32 with several rows 1.2-1.5x),
at the cost of a second copy of the weights.

Everything else (CUDA, autocast, ``torch.compile``, other dtypes) is ``F.linear``. Set
``attnkit.nn.linear.FAST = False`` to run ``F.linear`` everywhere (the reference kernels; the
tests compare both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

FAST = True
MATVEC_ROWS = 32
# oneDNN's linear costs about 10 µs more per call than F.linear (2 cores): below this many
# multiply-adds (rows × in × out) F.linear is faster (a 384 × 384 matrix and one row is above).
ONEDNN_MIN_MACS = 1 << 17
_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_HAS_AMX = hasattr(torch.cpu, "_is_amx_tile_supported") and torch.cpu._is_amx_tile_supported()
_NO_POSTOP = ("none", "")
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def _onednn_fp32(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when oneDNN should compute a matmul of these two fp32 CPU tensors."""
    return (
        FAST and _HAS_ONEDNN
        and a.dtype == b.dtype == torch.float32 and a.device.type == b.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
        and not _functorch_active()  # torch.func: plain ops only
    )


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            postop: tuple[str, str] = _NO_POSTOP) -> torch.Tensor:
    """``postop(x @ weightᵀ + bias)`` in one oneDNN call (any strides). ``(..., in) -> (..., out)``."""
    if x.dim() == 1:
        return torch.ops.mkldnn._linear_pointwise(x[None], weight, bias, postop[0], [], postop[1])[0]
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, postop[0], [], postop[1])


def mm_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ bᵀ`` for 2-D ``a (N, K)`` and ``b (M, K)`` (either may be a transposed view), on
    oneDNN for fp32 CPU tensors and ``torch.mm`` otherwise. No autograd."""
    if _onednn_fp32(a, b) and a.numel() and b.numel():
        return _onednn(a, b)
    return a @ b.t()


class _OneDNNLinear(torch.autograd.Function):
    """``x @ Wᵀ + b`` with all three matmuls (forward, input and weight gradients) on oneDNN.
    A backward that builds a graph (``create_graph=True``, double backward) uses plain,
    differentiable matmuls instead."""

    @staticmethod
    def forward(ctx, x2d, weight, bias):
        ctx.save_for_backward(x2d, weight)
        ctx.has_bias = bias is not None
        return _onednn(x2d, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        x2d, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        mm = (lambda a, b: a @ b.t()) if torch.is_grad_enabled() else mm_t
        grad_x = mm(grad_y, weight.t()) if need_x else None  # (N, out) @ (out, in)
        grad_w = None
        if need_w:  # (out, N) @ (N, in); oneDNN copies a transposed input first, so the smaller one is
            wide = weight.shape[0] > weight.shape[1]
            grad_w = mm(x2d.t(), grad_y.t()).t() if wide else mm(grad_y.t(), x2d.t())
        grad_b = grad_y.sum(0) if need_b and ctx.has_bias else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           postop: tuple[str, str] | None = None) -> torch.Tensor | None:
    """``F.linear(x, weight, bias)`` on the fastest kernel for its dtype and device (see the
    module docstring). ``(..., in) -> (..., out)``. ``weight`` may be a packed copy from
    :func:`packed_weights` (no autograd then).

    With ``postop`` (oneDNN's ``(name, algorithm)``, e.g. ``("gelu", "none")`` for exact GELU),
    returns ``postop(linear(x))`` fused into one oneDNN call where that applies (fp32 CPU, no
    gradient needed; a packed weight in fp32; more than one row: a one-row product with a
    post-op leaves oneDNN's fastest kernel, 20 µs slower for GPT-2's 3072-wide layer with
    GELU-tanh) and None otherwise, so the caller applies the activation itself.
    """
    if postop is not None and x.numel() == x.shape[-1]:
        return None
    if weight.is_mkldnn:  # a packed copy (Linear.decoding_weight): inference only
        if postop is not None and x.dtype != torch.float32:
            return None  # a fused activation would see unrounded bf16 outputs: not what the plain path computes
        return _onednn(x, weight, bias, postop or _NO_POSTOP)
    if x.numel() * weight.shape[0] < ONEDNN_MIN_MACS or not _onednn_fp32(x, weight):
        return None if postop is not None else _other_linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        if postop is not None:
            return None
        y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
        return y.view(*x.shape[:-1], weight.shape[0])
    return _onednn(x, weight, bias, postop or _NO_POSTOP)


def _other_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """bf16 decoding on AMX CPUs through ``torch.mv`` / ``W @ xᵀ``; ``F.linear`` otherwise."""
    rows = x.numel() // weight.shape[1]
    if not (FAST and _HAS_AMX and x.dtype == torch.bfloat16 and x.device.type == "cpu"
            and rows <= MATVEC_ROWS and not torch.is_grad_enabled()):
        return F.linear(x, weight, bias)
    if rows == 1:
        x1 = x.reshape(weight.shape[1])
        y = torch.mv(weight, x1) if bias is None else torch.addmv(bias, weight, x1)
        return y.view(*x.shape[:-1], weight.shape[0])
    xt = x.reshape(rows, weight.shape[1]).T
    y = weight @ xt if bias is None else torch.addmm(bias[:, None], weight, xt)
    return y.T.contiguous().view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict) computed by :func:`linear`.
    ``(..., in) -> (..., out)``."""

    _packed: tuple[int, int, torch.Tensor] | None = None  # (weight address, version, oneDNN copy): packed_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.decoding_weight(x), self.bias)

    def fused(self, x: torch.Tensor, postop: tuple[str, str] | None = None,
              bias: torch.Tensor | None = None) -> torch.Tensor | None:
        """``postop(self(x) + bias)`` in one kernel call where :func:`linear` can fuse it (``bias``
        an extra ``(out,)`` term, for a layer without its own), else None: the caller computes it
        from ``self(x)``."""
        if bias is not None and self.bias is not None:
            return None
        return linear(x, self.decoding_weight(x), self.bias if bias is None else bias, postop)

    def __getstate__(self):
        """Copies and pickles leave the packed copy behind (oneDNN's tensors have no storage to copy)."""
        state = self.__dict__.copy()
        state.pop("_packed", None)
        return state

    def decoding_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The packed copy of the weight when one applies to ``x`` (inside :func:`packed_weights`,
        no gradient recorded, same dtype, weight neither replaced nor modified since packing),
        else ``weight``."""
        packed, w = self._packed, self.weight
        if (packed is None or torch.is_grad_enabled() or not FAST or x.dtype != packed[2].dtype
                or x.device.type != "cpu" or packed[:2] != _weight_state(w)):
            return w
        return packed[2]


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` in ``model`` in place of its submodule called ``name`` (``named_modules``'
    dotted name): how LoRA and quantization swap layers."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _weight_state(w: torch.Tensor) -> tuple[int, int]:
    """Where a weight lives and how often it was modified in place (inference tensors: never)."""
    return w.data_ptr(), 0 if w.is_inference() else w._version


@contextmanager
def packed_weights(model: nn.Module, rows: int = 1, max_bytes: int | None = None) -> Iterator[nn.Module]:
    """Within the block, the fp32 and bf16 CPU :class:`Linear` layers of ``model`` compute
    without autograd from a copy of their weights that oneDNN has packed for its kernels
    (``rows``: the expected rows per call, a layout hint). Results agree with the unpacked path
    to fp32 rounding (bit for bit in bf16 on the CPUs tested).

    Only layers where packing pays are packed: not fp32 weights for one row per call (oneDNN
    streams them as fast unpacked), and not layers below ``ONEDNN_MIN_MACS`` multiply-adds per
    call (oneDNN's per-call cost outweighs the gain). Costs one more copy of those weights while
    inside; with ``max_bytes``, nothing is packed when that copy would be larger. A weight
    replaced or changed in place inside the block (``load_state_dict``, ``.to()``, an optimizer
    step) falls back to the plain path, as PyTorch's version counter shows; a change it cannot
    see, through ``weight.data`` or to inference tensors (a model built under
    ``torch.inference_mode``), is not detected: leave the block to change such weights. Nested
    blocks reuse the outer copies. Does nothing without oneDNN."""
    layers = [m for m in model.modules() if isinstance(m, Linear) and _packing_pays(m, rows)]
    if max_bytes is not None and sum(m.weight.nbytes for m in layers) > max_bytes:
        layers = []
    try:
        for m in layers:
            m._packed = (*_weight_state(m.weight), torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), rows))
        yield model
    finally:
        for m in layers:
            m._packed = None


def _packing_pays(layer: Linear, rows: int) -> bool:
    """Whether :func:`packed_weights` packs this layer (not packed yet, see its docstring)."""
    w = layer.weight
    return (FAST and _HAS_ONEDNN and layer._packed is None and w.device.type == "cpu"
            and (w.dtype == torch.bfloat16 or (w.dtype == torch.float32 and rows > 1))
            and rows * w.numel() >= ONEDNN_MIN_MACS)
