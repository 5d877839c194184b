"""Low-rank adapters (LoRA; Hu et al. 2021) on attnkit's linear layers.

:func:`add_lora` gives each target :class:`~attnkit.nn.Linear` two small matrices, ``A``
(``r × in``) and ``B`` (``out × r``), and computes ``x Wᵀ + b + (α / r) · dropout(x) Aᵀ Bᵀ``
(§4.1). ``A`` starts as ``nn.Linear``'s weights do and ``B`` at zero, so the model starts as it
was; everything but the adapters (and the ``trainable`` modules, such as a new classification
head) is frozen, so an optimizer over the parameters that need gradients trains only those.
:func:`merge_lora` folds ``(α / r) · B A`` into each ``W`` and leaves plain layers (a model that
decodes as fast as before, and saves as a plain checkpoint).

With ``dora=True``, weight-decomposed adapters (DoRA; Liu et al. 2024): each output feature
also gets a learned magnitude ``m``, and the layer computes with ``m · (W + ΔW) / ‖W + ΔW‖``
(the norm of each output row, Eq. 5), the norm treated as a constant in backward (§4.3), as
``peft``'s ``use_dora`` does; ``m`` starts at ``‖W‖``, so the model again starts as it was.

A model with adapters saves its base weights as any model does and the adapters beside them
(``lora_config.json`` + ``lora.safetensors``, attnkit's names); ``from_pretrained`` puts them
back, so a training run with adapters resumes exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import InputError
from attnkit.nn.linear import Linear, linear, replace_module

DEFAULT_TARGETS = ("qkv_proj", "q_proj", "k_proj", "v_proj", "kv_proj", "out_proj")
# layers whose weight the model reads directly, not through the layer (the LM head's chunked loss,
# latent attention's absorbed form): an adapter there would be skipped
READ_DIRECTLY = ("lm_head", "kv_b_proj")
LORA_CONFIG_NAME, LORA_WEIGHTS_NAME = "lora_config.json", "lora.safetensors"  # beside a checkpoint's weights


class LoRALinear(Linear):
    """A :class:`~attnkit.nn.Linear` plus a low-rank update: ``linear(x) + (alpha / r) ·
    dropout(x) @ lora_Aᵀ @ lora_Bᵀ``. Its ``weight`` and ``bias`` are the base layer's own
    tensors (same names in the state dict), beside ``lora_A`` and ``lora_B`` (and with ``dora``,
    ``lora_magnitude``, ``(out,)``: see the module doc)."""

    def __init__(self, base: Linear, r: int, alpha: float, dropout: float = 0.0, dora: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's initialisation, as the paper's code
        self.lora_dropout = nn.Dropout(dropout)
        self.lora_magnitude = nn.Parameter(torch.linalg.norm(w.detach().float(), dim=1).to(w.dtype)) if dora else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = self.lora_dropout(x)
        update = F.linear(F.linear(dropped, self.lora_A), self.lora_B) * self.scaling
        if self.lora_magnitude is None:
            return super().forward(x) + update
        # DoRA: m · (W + ΔW) / ‖W + ΔW‖ per output feature, the norm a constant (§4.3)
        scale = self.lora_magnitude / self._norm().to(self.lora_magnitude.dtype)
        if self.training and self.lora_dropout.p > 0:  # W's rescaling sees the dropped-out input too, as in peft
            return super().forward(x) + (scale - 1) * linear(dropped, self.weight) + scale * update
        out = scale * (linear(x, self.decoding_weight(x)) + update)
        return out if self.bias is None else out + self.bias

    def _norm(self) -> torch.Tensor:
        """``‖W + ΔW‖`` of each output feature, ``(out,)`` in fp32, without gradient."""
        with torch.no_grad():
            return torch.linalg.norm(self.weight.float() + self.delta(), dim=1)

    def fused(self, x: torch.Tensor, postop=None, bias=None) -> None:
        """Never fused: the update comes between the matmul and what would be fused after it."""
        return None

    def delta(self) -> torch.Tensor:
        """``(alpha / r) · B A``, the low-rank update of the weight, in fp32."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        """The weight that computes what the layer does (without dropout), in fp32: ``W + ΔW``,
        with DoRA scaled to ``m`` per output feature."""
        w = self.weight.float() + self.delta()
        if self.lora_magnitude is None:
            return w
        return w * (self.lora_magnitude.float() / torch.linalg.norm(w, dim=1))[:, None]

    def extra_repr(self) -> str:
        dora = ", dora" if self.lora_magnitude is not None else ""
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}{dora}"


def _plain(layer: LoRALinear) -> Linear:
    """A :class:`Linear` holding ``layer``'s weight and bias tensors (no copy)."""
    plain = Linear.__new__(Linear)
    nn.Module.__init__(plain)
    plain.in_features, plain.out_features = layer.in_features, layer.out_features
    plain.weight, plain.bias = layer.weight, layer.bias
    return plain.train(layer.training)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The layers of ``model`` with adapters, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             targets: tuple[str, ...] | list[str] = DEFAULT_TARGETS, modules: list[str] | None = None,
             trainable: tuple[str, ...] | list[str] = (), dora: bool = False) -> nn.Module:
    """Give ``model``'s linear layers named ``...{target}`` (or exactly ``modules``, by full name)
    rank-``r`` adapters scaled by ``alpha / r`` (weight-decomposed with ``dora``), and freeze
    everything else but the modules named in ``trainable`` (full names or last parts). In place;
    returns ``model``.

    The default targets are the attention projections (the paper's choice, §7.1). Raises
    :class:`~attnkit.InputError` for a rank below 1, a negative ``alpha``, a dropout outside
    [0, 1), a model that has adapters already, or targets that name no linear layer."""
    if not (isinstance(r, int) and r >= 1):
        raise InputError(f"LoRA rank r must be an integer >= 1, got {r!r}")
    if not (isinstance(alpha, (int, float)) and alpha >= 0):
        raise InputError(f"LoRA alpha must be a number >= 0, got {alpha!r}")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise InputError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    if not isinstance(dora, bool):
        raise InputError(f"dora must be true or false, got {dora!r}")
    if lora_layers(model):
        raise InputError("the model has LoRA adapters already (merge_lora(model) folds them in)")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, Linear)}
    direct = [n for n in (modules or linears) if n.rpartition(".")[2] in READ_DIRECTLY
              and (modules is not None or n.rpartition(".")[2] in targets)]
    if direct:
        raise InputError(f"LoRA on {direct[0]} is not supported: the model reads its weight directly, past the "
                         "adapter (train it in full with trainable=(...) instead)")
    if modules is not None:
        unknown = sorted(set(modules) - set(linears))
        if unknown:
            raise InputError(f"LoRA modules {unknown[:3]} are not linear layers of the model")
        chosen = list(modules)
    else:
        chosen = [name for name in linears if name.rpartition(".")[2] in targets]
        if not chosen:
            kinds = sorted({name.rpartition(".")[2] for name in linears})
            raise InputError(f"LoRA targets {list(targets)} name no linear layer of the model; its layers end in "
                             f"{kinds}")
    names = {name for name, _ in model.named_modules()}
    missing = [t for t in trainable if t not in names and not any(n.rpartition(".")[2] == t for n in names)]
    if missing:
        raise InputError(f"trainable modules {missing} are not in the model")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in chosen:  # in the mode of the layer it replaces (no adapter dropout in an eval model)
        layer = LoRALinear(linears[name], r, float(alpha), float(dropout), dora)
        replace_module(model, name, layer.train(linears[name].training))
    for name, m in model.named_modules():
        if name in trainable or name.rpartition(".")[2] in trainable:
            for p in m.parameters():
                p.requires_grad_(True)
    model.lora_config = dict(r=r, alpha=float(alpha), dropout=float(dropout), modules=chosen, trainable=list(trainable),
                             dora=dora)
    return model


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (``W += (alpha / r) · B A``; with DoRA, the sum scaled
    to its magnitudes: :meth:`LoRALinear.merged_weight`) and put plain layers back;
    every parameter needs gradients again, as in a model that never had adapters. In place;
    returns ``model``. A model without adapters is returned as it is."""
    layers = lora_layers(model)
    for name, layer in layers.items():
        layer.weight.copy_(layer.merged_weight())
        replace_module(model, name, _plain(layer))
    if layers:
        for p in model.parameters():
            p.requires_grad_(True)
        del model.lora_config
    return model


def lora_state(model: nn.Module) -> tuple[dict | None, dict[str, torch.Tensor]]:
    """``(lora_config, adapter tensors by state-dict name)``; ``(None, {})`` without adapters."""
    layers = lora_layers(model)
    if not layers:
        return None, {}
    tensors = {f"{name}.{part}": getattr(m, part).detach() for name, m in layers.items()
               for part in ("lora_A", "lora_B", "lora_magnitude") if getattr(m, part) is not None}
    return dict(model.lora_config), tensors
