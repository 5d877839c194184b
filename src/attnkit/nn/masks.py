"""Boolean attention masks: ``True`` means *may attend* (PyTorch SDPA's meaning).

Every mask in attnkit is built and combined here. Padding masks are ``(B, S)`` and broadcast to
``(B, 1, T, S)``; causal masks are ``(T, S)`` and bottom-right aligned, so that query ``i`` of a
``T``-long chunk sits at absolute position ``S - T + i`` (what cached decoding needs).
"""

from __future__ import annotations

import torch

from attnkit.errors import InputError


def causal_mask(T: int, S: int | None = None, offset: int | None = None, device=None,
                window: int | None = None) -> torch.Tensor:
    """Causal mask ``(T, S)``: query ``i`` may attend key ``j`` iff ``j <= i + offset``, and with
    ``window`` also ``j > i + offset - window`` (sliding-window attention, Beltagy et al. 2020 /
    Mistral: each query sees itself and the ``window - 1`` keys before it).

    ``offset`` defaults to ``S - T`` (bottom-right alignment: the queries are the last ``T``
    positions of an ``S``-long sequence, as in cached decoding). ``offset=0`` gives PyTorch's
    top-left ``is_causal`` convention.
    """
    S = T if S is None else S
    return band_mask(T, S, S + T if window is None else window - 1, 0, offset, device)  # no key after the query


def band_mask(T: int, S: int | None = None, left: int = 0, right: int = 0, offset: int | None = None,
              device=None) -> torch.Tensor:
    """``(T, S)`` bool: query ``i`` may attend key ``j`` iff ``i + offset - left <= j <= i + offset
    + right`` (a band around each query's own position; ``offset`` as :func:`causal_mask`'s,
    bottom-right by default). ModernBERT's local attention is ``(half, half)``; a causal sliding
    window of ``W`` keys is ``left = W - 1`` with the causal mask. :func:`scaled_dot_product_attention`
    takes the band as ``window=(left, right)`` and computes it block by block instead."""
    S = T if S is None else S
    offset = S - T if offset is None else offset
    d = torch.arange(S, device=device)[None, :] - torch.arange(T, device=device)[:, None] - offset  # j - (i + offset)
    return (d >= -left) & (d <= right)


def padding_mask_from_lengths(lengths: torch.Tensor, max_len: int | None = None, left: bool = False) -> torch.Tensor:
    """Padding mask ``(B, S)`` from sequence lengths ``(B,)``; ``left=True`` for left padding."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise InputError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    S = int(lengths.max()) if max_len is None else max_len
    if (lengths > S).any() or (lengths < 0).any():
        raise InputError(f"lengths must lie in [0, {S}], got {lengths.tolist()}")
    pos = torch.arange(S, device=lengths.device).unsqueeze(0)
    if left:
        return pos >= (S - lengths).unsqueeze(1)
    return pos < lengths.unsqueeze(1)


def as_padding_mask(mask: torch.Tensor, batch_size: int, length: int, name: str = "attention_mask") -> torch.Tensor:
    """Validate a user padding mask ``(B, S)`` and return it as bool.

    Accepts bool or integer 0/1 tensors (Hugging Face passes integers). Float masks are refused:
    it is ambiguous whether they are additive or multiplicative.
    """
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape ({batch_size}, {length}), got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise InputError(
            f"{name} must be bool or integer 0/1 (True/1 = real token), got dtype {mask.dtype}; "
            "pass mask.bool() if it holds 0/1 values"
        )
    if tuple(mask.shape) != (batch_size, length):
        raise InputError(f"{name} must have shape (batch, seq_len) = ({batch_size}, {length}), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if ((mask != 0) & (mask != 1)).any():
            raise InputError(f"{name} must hold only 0 and 1")
        mask = mask.bool()
    return mask


def expand_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` padding mask -> ``(B, 1, 1, S)``, broadcastable over heads and queries."""
    return mask[:, None, None, :]


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of broadcastable boolean masks; ``None`` entries are ignored."""
    out = None
    for m in masks:
        if m is None:
            continue
        out = m if out is None else out & m
    return out


def positions_from_padding(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``(B, S)`` that start at 0 on each row's first real token (left padding)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
