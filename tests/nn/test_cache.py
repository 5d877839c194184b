"""KVCache.reorder (beam search) equals index_select on the cached rows, and appending continues after it."""

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
