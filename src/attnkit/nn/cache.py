"""Key/value caches for incremental decoding.

A :class:`KVCache` serves one attention layer. Self-attention caches are preallocated to the
maximum length once and filled in place, so a decoding step writes ``T`` new positions instead
of concatenating (and copying) the whole cache. Cross-attention caches hold the encoder's keys
and values, computed once. :class:`DecoderCache` groups the caches of a decoder stack.
"""

from __future__ import annotations

import torch

from attnkit.errors import InputError


class KVCache:
    """Keys and values of one attention layer, ``(B, Hkv, S, D)`` each (the values may have
    another ``D``).

    ``max_len=None`` makes a static cache (cross-attention): the first ``update`` stores the
    keys/values and later steps reuse them. With ``repeat``, the keys/values it is given have
    one row per ``repeat`` query rows (beam search: one encoder output per source, shared by its
    beams) and it stores each row ``repeat`` times, so the projections run once per source.
    """

    def __init__(self, max_len: int | None = None, repeat: int = 1):
        self.max_len, self.repeat = max_len, repeat
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None  # reorder's second buffer

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, Hkv, T, D)`` keys/values; return all of them so far."""
        if self.max_len is None:
            if self.repeat > 1:
                k, v = k.repeat_interleave(self.repeat, dim=0), v.repeat_interleave(self.repeat, dim=0)
            self.k, self.v, self.length = k, v, k.shape[2]
            return k, v
        if self.k is None:
            B, H, _, D = k.shape
            self.k = k.new_empty(B, H, self.max_len, D)
            self.v = v.new_empty(B, H, self.max_len, v.shape[-1])  # values may be narrower (latent attention)
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise InputError(f"KV cache overflow: {end} positions requested, cache holds {self.max_len}")
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or self.k.requires_grad):
            # Out of place, so that backward can still reach the keys and values of earlier steps.
            self.k = self.k.slice_scatter(k.to(self.k.dtype), dim=2, start=self.length, end=end)
            self.v = self.v.slice_scatter(v.to(self.v.dtype), dim=2, start=self.length, end=end)
        else:
            self.k.narrow(2, self.length, end - self.length).copy_(k)
            self.v.narrow(2, self.length, end - self.length).copy_(v)
        self.length = end
        return self.k.narrow(2, 0, end), self.v.narrow(2, 0, end)

    def keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys/values, ``(B, Hkv, S, D)`` each."""
        return self.k.narrow(2, 0, self.length), self.v.narrow(2, 0, self.length)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search): row ``i`` becomes old row ``index[i]``.

        Rows are gathered into a second buffer kept from the previous reorder, and the two swap:
        a fresh buffer every step would be faulted in page by page again (OPUS-MT shape, beam 4
        × 8 sources, 2 cores: 25-34 ms of a 700 ms call)."""
        if self.k is None:
            return
        n = self.k.shape[2] if self.max_len is None else self.length  # only the filled positions
        shape = (len(index), *self.k.shape[1:])
        spare = self._spare
        if spare is None or (spare[0].shape, spare[0].dtype, spare[0].device) != (shape, self.k.dtype, self.k.device):
            spare = self.k.new_empty(shape), self.v.new_empty(len(index), *self.v.shape[1:])
        torch.index_select(self.k[:, :, :n], 0, index, out=spare[0][:, :, :n])
        torch.index_select(self.v[:, :, :n], 0, index, out=spare[1][:, :, :n])
        self._spare = self.k, self.v
        self.k, self.v = spare


class DecoderCache:
    """The caches of a decoder stack: one self-attention cache per layer, and for
    encoder-decoder models one cross-attention cache per layer plus the encoder's output and
    padding mask. With ``context_repeat``, the encoder output has one row per
    ``context_repeat`` decoder rows (see :class:`KVCache`'s ``repeat``).
    """

    def __init__(self, n_layers: int, max_len: int, cross: bool = False, context_repeat: int = 1):
        self.max_len = max_len
        self.self_attn = [KVCache(max_len) for _ in range(n_layers)]
        self.cross_attn = [KVCache(repeat=context_repeat) for _ in range(n_layers)] if cross else None
        self.encoder_hidden: torch.Tensor | None = None
        self.encoder_mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """Number of positions already decoded."""
        return self.self_attn[0].length

    def layer(self, i: int) -> tuple[KVCache, KVCache | None]:
        return self.self_attn[i], None if self.cross_attn is None else self.cross_attn[i]

    def truncate(self, length: int) -> None:
        """Forget every self-attention position from ``length`` on (speculative decoding: the
        candidates the model rejected). The next update writes over them."""
        if not 0 <= length <= self.length:
            raise InputError(f"cannot truncate a cache of {self.length} positions to {length}")
        for c in self.self_attn:
            c.length = length

    def reorder(self, index: torch.Tensor) -> None:
        """Reorder batch rows for beam search. Cross-attention caches are left alone: beams are
        only ever reordered within the same source sentence, whose encoder states are equal."""
        for c in self.self_attn:
            c.reorder(index)
