"""KVCache.reorder (beam search) equals index_select on the cached rows, and appending continues
after it; a rolling cache returns what each query sees; grow keeps what the cache holds."""

import pytest
import torch

from attnkit.nn import KVCache


def test_reorder_equals_index_select_and_keeps_appending():
    torch.manual_seed(0)
    cache = KVCache(max_len=6)
    k, v = torch.randn(4, 2, 3, 5), torch.randn(4, 2, 3, 5)
    cache.update(k, v)
    index = torch.tensor([2, 2, 0, 3])
    cache.reorder(index)
    ck, cv = cache.keys_values()
    assert torch.equal(ck, k.index_select(0, index)) and torch.equal(cv, v.index_select(0, index))
    k2, v2 = torch.randn(4, 2, 1, 5), torch.randn(4, 2, 1, 5)
    ck, cv = cache.update(k2, v2)
    assert torch.equal(ck, torch.cat([k.index_select(0, index), k2], 2))
    assert torch.equal(cv, torch.cat([v.index_select(0, index), v2], 2))
    cache.reorder(torch.tensor([1, 0]))  # fewer rows
    ck, _ = cache.keys_values()
    assert ck.shape[0] == 2 and torch.equal(ck, torch.cat([k.index_select(0, index), k2], 2)[[1, 0]])


def test_repeated_reorders_compose_while_the_two_buffers_swap():
    """Each reorder gathers into the buffer the previous one left: many steps in a row must
    still compose like index_select on a reference copy (no row read after it was overwritten)."""
    g = torch.Generator().manual_seed(0)
    cache, ref_k, ref_v = KVCache(max_len=8), None, None
    for step in range(6):
        k, v = torch.randn(3, 2, 1, 4, generator=g), torch.randn(3, 2, 1, 4, generator=g)
        cache.update(k, v)
        ref_k = k if ref_k is None else torch.cat([ref_k, k], 2)
        ref_v = v if ref_v is None else torch.cat([ref_v, v], 2)
        index = torch.randint(0, 3, (3,), generator=g)
        cache.reorder(index)
        ref_k, ref_v = ref_k.index_select(0, index), ref_v.index_select(0, index)
        ck, cv = cache.keys_values()
        assert torch.equal(ck, ref_k) and torch.equal(cv, ref_v), step


def test_a_rolling_cache_returns_the_last_positions_every_query_can_see():
    """Random steps (one token, several, longer than the buffer), truncations within the last
    step and reorders: each update returns the newest keys/values of a full copy, at least the
    ``keep`` before the step's first query, and after a step that fits, the buffer holds
    ``keep + max(keep // 8, 1)`` positions."""
    from attnkit.errors import InputError

    g = torch.Generator().manual_seed(0)
    for keep in (0, 1, 3, 5, 17):
        cache, ref_k, ref_v = KVCache(max_len=500, keep=keep), torch.zeros(3, 2, 0, 4), torch.zeros(3, 2, 0, 2)
        size = keep + max(keep // 8, 1)
        for step in range(40):
            T = int(torch.randint(1, size + keep + 3, (1,), generator=g)) if step % 3 == 0 else 1
            k, v = torch.randn(3, 2, T, 4, generator=g), torch.randn(3, 2, T, 2, generator=g)
            before = cache.length
            ck, cv = cache.update(k, v)
            ref_k, ref_v = torch.cat([ref_k, k], 2), torch.cat([ref_v, v], 2)
            n = ck.shape[2]
            assert min(keep, before) + T <= n <= ref_k.shape[2], (keep, step)
            assert torch.equal(ck, ref_k[:, :, -n:]) and torch.equal(cv, ref_v[:, :, -n:]), (keep, step)
            assert cache.length == ref_k.shape[2] and (T > size - keep or cache.k.shape[2] == size)
            if step % 5 == 4 and T > 1:  # speculative decoding: drop some of the step's own positions
                drop = int(torch.randint(1, T, (1,), generator=g))
                cache.truncate(cache.length - drop)
                ref_k, ref_v = ref_k[:, :, :-drop], ref_v[:, :, :-drop]
            if step % 7 == 6:  # beam search
                index = torch.randint(0, 3, (3,), generator=g)
                cache.reorder(index)
                ref_k, ref_v = ref_k[index], ref_v[index]
            held_k, _ = cache.keys_values()
            assert torch.equal(held_k, ref_k[:, :, ref_k.shape[2] - held_k.shape[2]:])
        if keep:
            assert cache.offset > 0
            with pytest.raises(InputError, match="keep_all"):  # the positions before the first held
                cache.truncate(cache.offset)
        cache.truncate(0)  # forgets everything: always allowed
        assert cache.keys_values()[0].shape[2] == 0


def test_grow_keeps_the_positions_held_and_refuses_a_rolling_cache():
    """A prompt cache's next call needs more positions: the buffer grows, what it held stays, and
    updates go on past the old size; a rolling cache holds only a window and cannot grow."""
    from attnkit.errors import InputError
    from attnkit.nn.cache import DecoderCache

    torch.manual_seed(0)
    cache = DecoderCache(n_layers=2, max_len=4)
    k, v = torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 6)
    for c in cache.self_attn:
        c.update(k, v)
    cache.grow(9)
    k2, v2 = torch.randn(1, 2, 6, 5), torch.randn(1, 2, 6, 6)
    for c in cache.self_attn:
        ck, cv = c.update(k2, v2)
        assert torch.equal(ck, torch.cat([k, k2], 2)) and torch.equal(cv, torch.cat([v, v2], 2))
    assert cache.max_len == 9 and cache.length == 9
    with pytest.raises(InputError, match="KV cache overflow"):
        cache.self_attn[0].update(k2[:, :, :1], v2[:, :, :1])
    with pytest.raises(InputError, match="keeps every position"):
        KVCache(max_len=8, keep=3).grow(16)
