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
