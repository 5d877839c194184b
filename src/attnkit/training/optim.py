"""AdamW with weight decay on matrices only (the nanoGPT recipe, minus embeddings).

Decayed: weights of linear layers (and any other parameter of dim >= 2 that is not an
embedding). Not decayed: biases, norm gains and embeddings (token, position). A parameter
shared by an embedding and a linear layer (tied output head) counts as an embedding.
"""

from __future__ import annotations

import torch
from torch import nn


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the parameters that require grad into ``[{decayed, weight_decay}, {rest, 0.0}]``."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():  # unique tensors, tied weights once
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over :func:`decay_groups`, with the fused kernel on CPU and CUDA
    (on CPU it is about 5x faster than the default for-each kernel: a sixth of a small GPT's step)."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused or None)
