"""Key/value caches for incremental decoding.

A :class:`KVCache` serves one attention layer. Self-attention caches are preallocated to the
maximum length once and filled in place, so a decoding step writes ``T`` new positions instead
of concatenating (and copying) the whole cache; a layer with a sliding window gets a rolling
cache, which holds the positions its queries can still see. Cross-attention caches hold the
encoder's keys and values, computed once. :class:`DecoderCache` groups the caches of a decoder stack.
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

    ``keep`` makes a rolling cache, for a layer whose queries see only the ``keep`` positions
    before their own (a sliding window of ``keep + 1``, or Llama 4's chunks): it drops older
    positions, so its memory stays ``O(keep)`` however long the sequence grows, and
    :meth:`update` returns the keys/values it holds, the newest last (a query's window counts
    back from the last key, as :func:`~attnkit.nn.scaled_dot_product_attention`'s does).
    """

    def __init__(self, max_len: int | None = None, repeat: int = 1, keep: int | None = None):
        self.max_len, self.repeat, self.keep = max_len, repeat, keep
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0  # positions fed so far
        self.offset = 0  # the position of the first one held (a rolling cache drops older ones)
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None  # reorder's second buffer

    @property
    def size(self) -> int | None:
        """Positions the buffer holds: ``max_len``, or for a rolling cache (``keep``) ``keep +
        room`` with ``room = max(keep // 8, 1)``: every ``room`` one-token steps, the last
        ``keep`` positions are moved to the front (12.5% more memory than the window's, for a
        copy of ``keep`` positions every ``room`` steps). A longer step (a prompt) makes its
        own keys/values the buffer, until the next step moves the last ``keep`` to a buffer of
        this size."""
        if self.keep is None or self.max_len is None:
            return self.max_len
        return min(self.max_len, self.keep + max(self.keep // 8, 1))

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, Hkv, T, D)`` keys/values; return all of them held so far: every position,
        or in a rolling cache (``keep``) at least the last ``keep`` before the new ones."""
        if self.max_len is None:
            if self.repeat > 1:
                k, v = k.repeat_interleave(self.repeat, dim=0), v.repeat_interleave(self.repeat, dim=0)
            self.k, self.v, self.length = k, v, k.shape[2]
            return k, v
        if self.k is None:
            B, H, _, D = k.shape
            self.k = k.new_empty(B, H, self.size, D)
            self.v = v.new_empty(B, H, self.size, v.shape[-1])  # values may be narrower (latent attention)
        T, end = k.shape[2], self.length + k.shape[2]
        if end > self.max_len:
            raise InputError(f"KV cache overflow: {end} positions requested, cache holds {self.max_len}")
        held, room = self.length - self.offset, self.k.shape[2]
        if self.keep is not None and (held + T > room or room > self.size):  # only the last `keep` stay
            kept = min(held, self.keep)
            old_k, old_v = self.k.narrow(2, held - kept, kept), self.v.narrow(2, held - kept, kept)
            if kept + T > self.size:  # a long step: its keys/values become the buffer, until the next
                self.k, self.v = torch.cat([old_k, k.to(old_k.dtype)], 2), torch.cat([old_v, v.to(old_v.dtype)], 2)
                self.length, self.offset = end, self.length - kept
                return self.k, self.v
            if room > self.size:  # the buffer of a long step: back to the rolling size
                self.k, self.v = self.k.new_empty(*self.k.shape[:2], self.size, self.k.shape[3]), \
                    self.v.new_empty(*self.v.shape[:2], self.size, self.v.shape[3])
            elif held < 2 * kept:  # the two ranges overlap
                old_k, old_v = old_k.clone(), old_v.clone()
            self._put(0, old_k, old_v)
            self.offset, held = self.length - kept, kept
        self._put(held, k, v)
        self.length = end
        return self.k.narrow(2, 0, held + T), self.v.narrow(2, 0, held + T)

    def _put(self, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write ``k``/``v`` into the buffer from slot ``start`` on."""
        end = start + k.shape[2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or self.k.requires_grad):
            # Out of place, so that backward can still reach the keys and values of earlier steps.
            self.k = self.k.slice_scatter(k.to(self.k.dtype), dim=2, start=start, end=end)
            self.v = self.v.slice_scatter(v.to(self.v.dtype), dim=2, start=start, end=end)
        else:
            self.k.narrow(2, start, end - start).copy_(k)
            self.v.narrow(2, start, end - start).copy_(v)

    def truncate(self, length: int) -> None:
        """Forget the positions from ``length`` on. A rolling cache must still hold the ``keep``
        positions before ``length``: it does when ``length`` is at least the length before the
        last :meth:`update`."""
        need = 0 if self.keep is None else max(length - self.keep, 0)  # the first position still seen
        if need < length and self.offset > need:
            raise InputError(f"cannot truncate a rolling cache to {length} positions: it holds those from "
                             f"{self.offset} on, and the next one sees those from {need}; call keep_all() on "
                             f"the cache before decoding")
        self.length, self.offset = length, min(self.offset, length)

    def grow(self, max_len: int) -> None:
        """Make room for ``max_len`` positions, keeping those held (not for a rolling cache)."""
        if self.keep is not None or self.max_len is None:
            raise InputError("only a self-attention cache that keeps every position can grow")
        if self.k is not None and self.k.shape[2] < max_len:
            held = self.length - self.offset
            k, v = self.k.new_empty(*self.k.shape[:2], max_len, self.k.shape[3]), \
                self.v.new_empty(*self.v.shape[:2], max_len, self.v.shape[3])
            k[:, :, :held], v[:, :, :held] = self.k[:, :, :held], self.v[:, :, :held]
            self.k, self.v, self._spare = k, v, None
        self.max_len = max(self.max_len, max_len)

    def keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys/values, ``(B, Hkv, S, D)`` each (a rolling cache's: those it holds)."""
        held = self.length - self.offset
        return self.k.narrow(2, 0, held), self.v.narrow(2, 0, held)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search): row ``i`` becomes old row ``index[i]``.

        Rows are gathered into a second buffer kept from the previous reorder, and the two swap:
        a fresh buffer every step would be faulted in page by page again (OPUS-MT shape, beam 4
        × 8 sources, 2 cores: 25-34 ms of a 700 ms call)."""
        if self.k is None:
            return
        n = self.k.shape[2] if self.max_len is None else self.length - self.offset  # only the filled positions
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

    def __init__(self, n_layers: int, max_len: int, cross: bool = False, context_repeat: int = 1,
                 keep: dict[int, int] | None = None):
        """``keep``: the layers with a rolling cache (see :class:`KVCache`), and the positions
        before its own that a query of theirs sees."""
        self.max_len = max_len
        keep = keep or {}
        self.self_attn = [KVCache(max_len, keep=keep.get(i)) for i in range(n_layers)]
        self.cross_attn = [KVCache(repeat=context_repeat) for _ in range(n_layers)] if cross else None
        self.encoder_hidden: torch.Tensor | None = None
        self.encoder_mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """Number of positions already decoded."""
        return self.self_attn[0].length

    def layer(self, i: int) -> tuple[KVCache, KVCache | None]:
        return self.self_attn[i], None if self.cross_attn is None else self.cross_attn[i]

    def keep_all(self) -> DecoderCache:
        """Make every layer keep every position (before the first step): for callers that
        truncate by more than the last step fed (an assistant model's guesses) or read the
        buffers' columns (batched decoding). Returns the cache."""
        if self.length:
            raise InputError("keep_all() must come before the first step")
        for c in self.self_attn:
            c.keep = None
        return self

    def grow(self, max_len: int) -> None:
        """Make room for ``max_len`` positions in every layer, keeping those held (after
        :meth:`keep_all`: a prompt cache that a longer call continues)."""
        for c in self.self_attn:
            c.grow(max_len)
        self.max_len = max(self.max_len, max_len)

    def truncate(self, length: int) -> None:
        """Forget every self-attention position from ``length`` on (speculative decoding: the
        candidates the model rejected). The next update writes over them."""
        if not 0 <= length <= self.length:
            raise InputError(f"cannot truncate a cache of {self.length} positions to {length}")
        for c in self.self_attn:
            c.truncate(length)

    def reorder(self, index: torch.Tensor) -> None:
        """Reorder batch rows for beam search. Cross-attention caches are left alone: beams are
        only ever reordered within the same source sentence, whose encoder states are equal."""
        for c in self.self_attn:
            c.reorder(index)
