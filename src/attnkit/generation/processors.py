"""Logit transforms for sampling: temperature, top-k (Fan et al. 2018), top-p / nucleus
(Holtzman et al. 2020). Same order and tie rules as Hugging Face's warpers."""

from __future__ import annotations

import torch


def process_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Return ``(B, V)`` logits with removed tokens set to ``-inf``.

    Top-k and top-p always keep the ``min_tokens_to_keep`` most likely tokens (beam sampling
    keeps ``1 + number of EOS ids`` so a non-EOS continuation survives, as Hugging Face does).
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -min_tokens_to_keep:] = False  # always keep the most likely tokens
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits
