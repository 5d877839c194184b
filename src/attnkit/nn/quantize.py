"""Int8 weights for faster CPU decoding (weight-only quantization).

Decoding one sequence streams every weight once per token, so its speed is the weights' bytes
over the memory bandwidth: int8 weights halve bf16's bytes and quarter fp32's. Each output
row ``i`` of a weight keeps ``round(W[i] / s_i)`` in int8 with ``s_i = max |W[i]| / 127``
(symmetric, per output channel), so a weight moves by at most ``s_i / 2``; the activations
stay floating point. With up to ``INT8_MAX_ROWS`` rows per call on the CPU, PyTorch's int8
kernel (``_weight_int8pack_mm``) multiplies bf16 activations by the int8 weights directly
(fp32 activations are rounded to bf16 for it: the kernel is 17x slower in fp32, and bf16's
rounding of ``x`` is smaller than the weights'); more rows (a prompt, a large batch), other
devices, a gradient to record, or an input width the kernel does not take (not a multiple of
32) compute with the dequantized weight ``s_i · q_i`` in the input's dtype.

GPT-2 small's 49 matrices, one row, 2 cores (Zen 5): 4.3 ms in int8, 6.4 ms for bf16 packed by
oneDNN, 13.9 ms in fp32 (a one-off run streaming the matrices from memory, not a benchmark;
``make bench`` times decoding). From 8 rows on, bf16 is faster again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.nn.linear import Linear, linear

INT8_MAX_ROWS = 4  # the int8 kernel beats packed bf16 up to 4 rows per call (2 cores), not at 8
_int8_mm = getattr(torch.ops.aten, "_weight_int8pack_mm", None)  # (x (rows, in), q (out, in), scale (out,))


class Int8Linear(nn.Module):
    """A linear layer with int8 weights and one scale per output feature (see the module
    docstring). ``(..., in) -> (..., out)``, in the input's dtype. Built by
    :meth:`from_linear`; ``weight`` is the dequantized weight (a new tensor at each read: the
    loss and other readers of a layer's weight keep working)."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)  # (out, in) int8
        self.register_buffer("scale", scale)  # (out,), the weight's dtype
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> Int8Linear:
        w = layer.weight.detach()
        scale = w.float().abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        q = torch.round(w.float() / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        return cls(q, scale.to(w.dtype), layer.bias)

    @property
    def weight(self) -> torch.Tensor:
        """``scale[:, None] · qweight`` in the scale's dtype."""
        return self.qweight.to(self.scale.dtype) * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        if (_int8_mm is not None and x.device.type == "cpu" and 0 < rows <= INT8_MAX_ROWS and self.in_features % 32 == 0
                and x.dtype in (torch.float32, torch.bfloat16)
                and not (torch.is_grad_enabled() and x.requires_grad)):
            xb = x.reshape(rows, self.in_features).to(torch.bfloat16)
            y = _int8_mm(xb, self.qweight, self.scale.to(torch.bfloat16)).to(x.dtype)
            y = y if self.bias is None else y + self.bias.to(x.dtype)
            return y.view(*x.shape[:-1], self.out_features)
        w = self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return linear(x, w, bias) if x.device.type == "cpu" else F.linear(x, w, bias)

    def fused(self, x: torch.Tensor, postop=None, bias=None) -> None:
        """No fused activation (see :meth:`attnkit.nn.Linear.fused`): the caller applies it."""
        return None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_int8(model: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace every :class:`~attnkit.nn.Linear` of ``model`` (the projections, feed-forwards and
    LM heads; not embeddings, norms or LoRA layers) by an :class:`Int8Linear`, in place, and
    return ``model``. ``skip``: names of modules (as ``named_modules`` gives them, e.g.
    ``"lm_head"``) left as they are. An LM head tied to the embedding gets an int8 copy; the
    embedding stays. For inference: the int8 weights are buffers, not parameters, and a model
    with them cannot be saved (save the model first). Returns the model."""
    if any(isinstance(m, Int8Linear) for m in model.modules()):
        raise InputError("the model already has int8 weights")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is Linear and name not in skip]
    for name, layer in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, Int8Linear.from_linear(layer))
    return model
