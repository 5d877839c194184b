"""Int8 and int4 weights for faster CPU decoding (weight-only quantization).

Decoding one sequence streams every weight once per token, so its speed is the weights' bytes
over the memory bandwidth: int8 weights halve bf16's bytes, int4 quarter them. The activations
stay floating point; the matmuls run in PyTorch's CPU kernels for such weights, with bf16
activations (fp32 ones are rounded to bf16 for them: the int8 kernel is 17x slower in fp32, and
bf16's rounding of ``x`` is smaller than the weights').

- **int8** (:class:`Int8Linear`): each output row ``i`` keeps ``round(W[i] / s_i)`` with
  ``s_i = max |W[i]| / 127`` (symmetric), so a weight moves by at most ``s_i / 2``. fp32 and bf16
  calls go through the int8 kernel (``_weight_int8pack_mm``), except bf16 calls of more than
  ``INT8_MAX_ROWS`` rows (a long prompt); those, other dtypes and devices, a gradient to record,
  or an input width the kernel does not take (not a multiple of 32) compute with the
  dequantized weight ``s_i · q_i``.
- **int4** (:class:`Int4Linear`): each group of ``group_size`` inputs of a row keeps
  ``round((W - min) / s)`` in 0..15 with ``s = (max - min) / 15`` (asymmetric), so a weight
  moves by at most ``s / 2``; scales and minima are bf16. Calls of up to ``INT4_MAX_ROWS`` rows
  go through the int4 kernel (``_weight_int4pack_mm_for_cpu``; the output rows are padded to a
  multiple of 64 for it, and dropped); longer ones (a long prompt) and gradients use the weight
  dequantized to bf16, read out of the kernel's layout (checked against the values packed when
  the layer is built). It computes on the CPU, and is faster than bf16 up to about 8 rows and
  slower on a prompt (GPT-2 small: 1.8x at 400 tokens, 1.3x at 1,024). Gradients reach the
  input, never the int4 weights.

Token embeddings become int8 rows (:class:`Int8Embedding`) in both, unless ``embeddings=False``.

GPT-2 small's 49 matrices, one row, 2 cores (Zen 5): 2.5 ms in int4, 4.2 ms in int8, 4.9 ms for
bf16 packed by oneDNN, 13.9 ms in fp32 (one-off runs streaming the matrices from memory, not a
benchmark; ``make bench`` times decoding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.nn.linear import Linear, linear, replace_module

# bf16 calls with more rows (a prompt) dequantize: for a 3072 x 768 layer on 2 cores the int8 kernel
# takes 0.47 ms at 32 rows and 1.9 at 128, the dequantized weight and oneDNN's bf16 gemm 0.52 and 1.0.
# fp32 calls always take the kernel (an fp32 copy of the weight costs more than it saves).
INT8_MAX_ROWS = 64
# int4 calls with more rows (a long prompt) dequantize to bf16 for oneDNN's gemm. GPT-2 small's
# forward over a prompt, 2 cores: 240 ms at 400 tokens through the kernel, 267 dequantized; at
# 1,024 tokens 718 and 548 (429 with bf16 weights).
INT4_MAX_ROWS = 512
INT4_GROUP_SIZES = (32, 64, 128, 256)
_int8_mm = getattr(torch.ops.aten, "_weight_int8pack_mm", None)  # (x (rows, in), q (out, in), scale (out,))
_int4_mm = getattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu", None)  # (x, packed, group, scales and zeros)


# Rows quantized at a time: their fp32 copy stays in the CPU's cache through the passes over it
# (one-off: a 5632 x 2048 bf16 matrix to int8, 2 cores: 8 ms in chunks, 57 ms in one piece before).
CHUNK_ROWS = 256


def _float_rows(weight: torch.Tensor, start: int, rows: int) -> torch.Tensor:
    """An fp32 copy of ``weight[start:start + rows]``, zero rows past its end."""
    w = weight[start:start + rows].detach().to(torch.float32, copy=True)
    return w if w.shape[0] == rows else F.pad(w, (0, 0, 0, rows - w.shape[0]))


def _int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, s)``: each row of ``weight`` as ``round(row / s)`` in int8, ``s = max |row| / 127``
    (in the weight's dtype)."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scale = torch.empty(weight.shape[0], device=weight.device)
    for i in range(0, weight.shape[0], CHUNK_ROWS):
        w = _float_rows(weight, i, min(CHUNK_ROWS, weight.shape[0] - i))
        s = torch.maximum(w.amax(1), w.amin(1).neg_())  # (torch.aminmax is 5-15x slower on CPU)
        s = s.clamp_min_(torch.finfo(torch.float32).tiny).div_(127)
        scale[i:i + len(w)] = s
        q[i:i + len(w)] = w.div_(s[:, None]).round_().clamp_(-127, 127)
    return q, scale.to(weight.dtype)


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.bfloat16 else t.to(torch.bfloat16)


class QuantizedLinear(nn.Module):
    """What :class:`Int8Linear` and :class:`Int4Linear` share: ``(..., in) -> (..., out)`` in
    the input's dtype, the bias kept as it is, no fused activation."""

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def _finish(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The kernel's ``(rows, out)`` bf16 output in ``x``'s dtype and shape, plus the bias.
        (No-op conversions skipped: this runs once per layer and decoded token.)"""
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        if self.bias is not None:
            y = y + (self.bias if self.bias.dtype == y.dtype else self.bias.to(y.dtype))
        return y.view(x.shape[:-1] + (self.out_features,))

    def fused(self, x: torch.Tensor, postop=None, bias=None) -> None:
        """No fused activation (see :meth:`attnkit.nn.Linear.fused`): the caller applies it."""
        return None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Int8Rows:
    """What :class:`Int8Linear` and :class:`Int8Embedding` share: the ``qweight`` (rows, dim)
    int8 and ``scale`` (rows,) buffers of :func:`_int8_rows`, and ``weight``, the dequantized
    matrix (a new tensor at each read: the loss and other readers of a weight keep working)."""

    def _keep(self, qweight: torch.Tensor, scale: torch.Tensor) -> None:
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)  # in the float weight's dtype

    @property
    def weight(self) -> torch.Tensor:
        """``scale[:, None] · qweight`` in the scale's dtype."""
        return self.qweight.to(self.scale.dtype) * self.scale[:, None]


class Int8Linear(_Int8Rows, QuantizedLinear):
    """A linear layer with int8 weights and one scale per output feature (see the module
    docstring). Built by :meth:`from_linear`."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__(qweight.shape[1], qweight.shape[0], bias)
        self._keep(qweight, scale)

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> Int8Linear:
        return cls(*_int8_rows(layer.weight), layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        if (_int8_mm is not None and x.device.type == "cpu" and self.in_features % 32 == 0 and rows > 0
                and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and rows <= INT8_MAX_ROWS))
                and not (torch.is_grad_enabled() and x.requires_grad)):
            scale = self.scale if self.scale.dtype == torch.bfloat16 else self.scale.to(torch.bfloat16)
            return self._finish(_int8_mm(_bf16(x.reshape(rows, self.in_features)), self.qweight, scale), x)
        w = self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return linear(x, w, bias) if x.device.type == "cpu" else F.linear(x, w, bias)


class Int4Linear(QuantizedLinear):
    """A linear layer with int4 weights in groups of ``group_size`` inputs, each with a bf16
    scale and minimum (see the module docstring), packed for PyTorch's CPU int4 kernel. Built
    by :meth:`from_linear`; computes on the CPU only."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int, in_features: int,
                 out_features: int, bias: torch.Tensor | None):
        super().__init__(in_features, out_features, bias)
        self.group_size = group_size
        self.register_buffer("packed", packed)  # the kernel's layout of the (out rounded up to 64, in) values
        self.register_buffer("scales_and_zeros", scales_and_zeros)  # (in / group, out rounded up, 2) bf16
        self.readable = False  # whether _values reads the kernel's layout (from_linear checks it)

    @staticmethod
    def fits(layer: nn.Linear, group_size: int) -> bool:
        """Whether the kernel takes this layer's input width (a multiple of ``group_size``)."""
        return layer.in_features % group_size == 0

    @classmethod
    def from_linear(cls, layer: nn.Linear, group_size: int = 32) -> Int4Linear:
        if _int4_mm is None:
            raise InputError(f"int4 weights need PyTorch's CPU int4 kernel (_weight_int4pack_mm_for_cpu), which torch "
                             f"{torch.__version__} lacks")
        if group_size not in INT4_GROUP_SIZES or not cls.fits(layer, group_size):
            raise InputError(f"int4 groups of {group_size} inputs: group_size must be one of {INT4_GROUP_SIZES} and "
                             f"divide the layer's {layer.in_features} inputs")
        out, width = layer.weight.shape
        rows = out + -out % 64  # in blocks of 64 (a layout _values reads); the extra rows are zeros, dropped
        q = torch.empty(rows, width, dtype=torch.int32)
        low, scale = torch.empty(rows, width // group_size, 1), torch.empty(rows, width // group_size, 1)
        for i in range(0, rows, CHUNK_ROWS):
            groups = _float_rows(layer.weight, i, min(CHUNK_ROWS, rows - i)).view(-1, width // group_size, group_size)
            lo = groups.amin(-1, keepdim=True).bfloat16().float()
            s = groups.amax(-1, keepdim=True).sub_(lo).div_(15).clamp_min_(1e-8).bfloat16().float()
            low[i:i + len(groups)], scale[i:i + len(groups)] = lo, s
            q[i:i + len(groups)] = groups.sub_(lo).div_(s).round_().clamp_(0, 15).view(-1, width)
        # the kernel computes (q - 8) · scale + zero: zero = low + 8 · scale
        zeros = low + 8 * scale
        scales_and_zeros = torch.cat([scale, zeros], -1).transpose(0, 1).contiguous().bfloat16()
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        new = cls(packed, scales_and_zeros, group_size, width, out, layer.bias)
        new.readable = torch.equal(new._values(), q.to(torch.uint8))  # another PyTorch may lay them out otherwise
        return new

    def _values(self) -> torch.Tensor:
        """The ``(out rounded up, in)`` 4-bit values, 0..15, out of the kernel's layout: each block
        of 64 rows holds, per input, 32 bytes whose low halves are its first 32 rows."""
        blocks = self.packed.view(-1, self.in_features, 32)
        return torch.cat([blocks & 15, blocks >> 4], 2).transpose(1, 2).reshape(-1, self.in_features)

    def _dequantized(self) -> torch.Tensor:
        """The ``(out, in)`` bf16 weight: ``(q - 8) · scale + zero`` per group."""
        sz = _bf16(self.scales_and_zeros).transpose(0, 1)[:self.out_features]  # (out, in / group, 2)
        scale, zero = sz[..., :1], sz[..., 1:]
        q = self._values()[:self.out_features].view(self.out_features, -1, self.group_size)
        return torch.addcmul(zero - 8 * scale, q.to(torch.bfloat16), scale).reshape(self.out_features, self.in_features)

    def _matmul(self, x2d: torch.Tensor) -> torch.Tensor:
        """``(rows, in)`` bf16 ``@`` the weight's transpose: ``(rows, out)`` bf16."""
        y = _int4_mm(x2d, self.packed, self.group_size, _bf16(self.scales_and_zeros))  # bf16 unless the model was cast
        return y if y.shape[1] == self.out_features else y[:, :self.out_features]

    @property
    def weight(self) -> torch.Tensor:
        """The ``(out, in)`` matrix the kernel multiplies by, in the scales' dtype: dequantized,
        or where the layout is not readable, read back through the kernel (``x`` = the identity:
        as costly as a call with ``in`` rows)."""
        if self.readable:
            return self._dequantized().to(self.scales_and_zeros.dtype)
        eye = torch.eye(self.in_features, dtype=torch.bfloat16, device=self.packed.device)
        return self._matmul(eye).T.to(self.scales_and_zeros.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cpu:
            raise InputError(f"int4 weights compute on the CPU; the input is on {x.device}")
        x2d = _bf16(x.reshape(-1, self.in_features))
        if x.requires_grad and torch.is_grad_enabled():
            return self._finish(_Int4Matmul.apply(x2d, self), x)
        if x2d.shape[0] > INT4_MAX_ROWS and self.readable:  # a long prompt: oneDNN's bf16 gemm
            return self._finish(linear(x2d, self._dequantized()), x)
        return self._finish(self._matmul(x2d), x)


class _Int4Matmul(torch.autograd.Function):
    """:meth:`Int4Linear._matmul` with a gradient for its input (``grad @ W``, the weight read
    back in the backward pass only); the int4 weights themselves get none."""

    @staticmethod
    def forward(ctx, x2d: torch.Tensor, layer: Int4Linear) -> torch.Tensor:
        ctx.layer = layer
        return layer._matmul(x2d)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.layer.weight.to(grad.dtype), None


class Int8Embedding(_Int8Rows, nn.Module):
    """A token embedding with int8 rows and one scale per row (as :class:`Int8Linear`'s
    weights): ``ids -> (..., dim)`` in the scales' dtype, each looked-up row dequantized."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = qweight.shape
        self.padding_idx = padding_idx
        self._keep(qweight, scale)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        return cls(*_int8_rows(embedding.weight), embedding.padding_idx)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.qweight).to(self.scale.dtype) * self.scale[ids, None]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


EMBEDDING_MIN_SIZE = 1 << 20  # entries: token embeddings (GPT-2's 50257 x 768), not position tables (1024 x 768)


def _swap(model: nn.Module, make, skip: tuple[str, ...], embeddings: bool, fill=None) -> nn.Module:
    """Replace each :class:`~attnkit.nn.Linear` of ``model`` not named in ``skip`` by
    ``make(layer)`` (unless that returns None), and with ``embeddings`` each ``nn.Embedding`` of
    at least ``EMBEDDING_MIN_SIZE`` entries by an :class:`Int8Embedding`, in place; ``fill(name,
    layer)`` first, when given."""
    if any(isinstance(m, (QuantizedLinear, Int8Embedding)) for m in model.modules()):
        raise InputError("the model's weights are quantized already")
    targets = [name for name, m in model.named_modules() if type(m) is Linear and name not in skip]
    if embeddings:
        targets += [name for name, m in model.named_modules() if type(m) is nn.Embedding and name not in skip
                    and m.weight.numel() >= EMBEDDING_MIN_SIZE]
    for name in targets:  # by name: a float layer is freed once replaced (unless tied to one still to come)
        layer = model.get_submodule(name)
        if fill is not None:
            fill(name, layer)
        new = make(layer) if isinstance(layer, Linear) else Int8Embedding.from_embedding(layer)
        if new is not None:
            replace_module(model, name, new)
    return model


def quantize_int8(model: nn.Module, skip: tuple[str, ...] = (), embeddings: bool = True, *, fill=None) -> nn.Module:
    """Replace every :class:`~attnkit.nn.Linear` of ``model`` (the projections, feed-forwards and
    LM heads; not norms or LoRA layers) by an :class:`Int8Linear`, and with ``embeddings`` every
    token embedding (an ``nn.Embedding`` of at least ``EMBEDDING_MIN_SIZE`` entries; not
    position tables) by an :class:`Int8Embedding`, in place, and return ``model``. ``skip``:
    names of modules (as ``named_modules`` gives them, e.g. ``"lm_head"``) left as they are. An
    LM head tied to the embedding gets its own copy. For inference: the int8 weights are
    buffers, not parameters, and a model with them cannot be saved (save the model first).
    ``fill(name, layer)``, when given, is called before each layer is quantized: ``from_pretrained
    (quantize=)`` copies the checkpoint's weight in there, one float layer in memory at a time."""
    return _swap(model, Int8Linear.from_linear, skip, embeddings, fill)


def quantize_int4(model: nn.Module, group_size: int = 32, skip: tuple[str, ...] = (),
                  embeddings: bool = True, *, fill=None) -> nn.Module:
    """:func:`quantize_int8` with :class:`Int4Linear` layers, groups of ``group_size`` inputs
    (one of ``INT4_GROUP_SIZES``); layers whose input width is not a multiple of it stay as
    they are. Token embeddings (``embeddings``) become int8. The layers compute on the CPU."""
    if group_size not in INT4_GROUP_SIZES:
        raise InputError(f"group_size must be one of {INT4_GROUP_SIZES}, got {group_size}")
    return _swap(model, lambda m: Int4Linear.from_linear(m, group_size) if Int4Linear.fits(m, group_size) else None,
                 skip, embeddings, fill)
