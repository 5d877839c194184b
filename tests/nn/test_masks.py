"""Mask builders against element-by-element definitions (True = may attend)."""

import pytest
import torch

from attnkit.errors import InputError
from attnkit.nn import (
    as_padding_mask,
    causal_mask,
    combine_masks,
    expand_padding_mask,
    padding_mask_from_lengths,
    positions_from_padding,
)


@pytest.mark.parametrize("T,S", [(1, 1), (4, 4), (1, 6), (3, 7), (5, 2)])
def test_causal_mask_is_bottom_right_aligned(T, S):
    m = causal_mask(T, S)
    assert m.shape == (T, S) and m.dtype == torch.bool
    for i in range(T):
        for j in range(S):
            assert bool(m[i, j]) == (j <= S - T + i)


@pytest.mark.parametrize("T,S,window", [(6, 6, 1), (6, 6, 3), (2, 9, 4), (5, 5, 10)])
def test_sliding_window_mask_keeps_each_query_and_the_window_minus_one_keys_before_it(T, S, window):
    m = causal_mask(T, S, window=window)
    for i in range(T):
        pos = S - T + i  # the query's position in the sequence
        assert [j for j in range(S) if m[i, j]] == list(range(max(0, pos - window + 1), pos + 1))


def test_causal_mask_offset_and_torch_convention():
    # offset=0 is PyTorch's top-left is_causal convention: tril of ones.
    torch.testing.assert_close(causal_mask(3, 5, offset=0), torch.ones(3, 5, dtype=torch.bool).tril())
    torch.testing.assert_close(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    m = causal_mask(2, 6, offset=2)
    assert m.tolist() == [[True, True, True, False, False, False], [True, True, True, True, False, False]]


def test_padding_mask_from_lengths_right_and_left():
    lengths = torch.tensor([3, 1, 0, 4])
    right = padding_mask_from_lengths(lengths)
    left = padding_mask_from_lengths(lengths, left=True)
    for b, n in enumerate(lengths.tolist()):
        assert right[b].tolist() == [True] * n + [False] * (4 - n)
        assert left[b].tolist() == [False] * (4 - n) + [True] * n
    assert padding_mask_from_lengths(lengths, max_len=6).shape == (4, 6)
    with pytest.raises(InputError, match="lengths must lie in"):
        padding_mask_from_lengths(lengths, max_len=2)
    with pytest.raises(InputError, match="1-D"):
        padding_mask_from_lengths(torch.ones(2, 2, dtype=torch.long))


def test_as_padding_mask_accepts_bool_and_int_refuses_float_and_bad_shape():
    ints = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert as_padding_mask(ints, 2, 3).tolist() == ints.bool().tolist()
    assert as_padding_mask(ints.bool(), 2, 3).dtype == torch.bool
    with pytest.raises(InputError, match="must be bool or integer"):
        as_padding_mask(ints.float(), 2, 3)
    with pytest.raises(InputError, match=r"must have shape \(batch, seq_len\) = \(2, 4\)"):
        as_padding_mask(ints, 2, 4)
    with pytest.raises(InputError, match="only 0 and 1"):
        as_padding_mask(ints * 2, 2, 3)
    with pytest.raises(InputError, match="torch.Tensor"):
        as_padding_mask([[1, 1, 1]], 1, 3)


def test_expand_and_combine_broadcast_like_sdpa():
    pad = torch.tensor([[False, True, True], [True, True, False]])
    full = combine_masks(expand_padding_mask(pad), None, causal_mask(3))
    assert full.shape == (2, 1, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert bool(full[b, 0, i, j]) == (bool(pad[b, j]) and j <= i)
    assert combine_masks(None, None) is None


def test_positions_from_padding_start_at_first_real_token():
    pad = torch.tensor([[False, False, True, True], [True, True, True, True], [False, True, True, True]])
    assert positions_from_padding(pad).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3], [0, 0, 1, 2]]
