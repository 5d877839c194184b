"""Key tables in both directions: a Hugging Face tensor split into several attnkit tensors
(Phi-3's gate_up_proj) and joined back, with the checks that keep a bad file from loading half."""

import pytest
import torch

from attnkit import CheckpointError
from attnkit.interop.keymap import Rename, from_hf, to_hf

RULES = [Rename(("l.{i}.gate", "l.{i}.up"), "m.{i}.gate_up"), Rename("l.{i}.down", "m.{i}.down"),
         Rename(("l.{i}.a", "l.{i}.b"), "m.{i}.ab", sizes=(1, 3))]


def test_split_on_load_and_joined_on_save_round_trip():
    hf = {"m.0.gate_up": torch.arange(12.0).view(4, 3), "m.0.down": torch.ones(3, 2),
          "m.0.ab": torch.arange(8.0).view(4, 2)}
    native, origin, unmatched = from_hf(RULES, hf)
    assert not unmatched and origin["l.0.up"] == "m.0.gate_up"
    assert torch.equal(native["l.0.gate"], hf["m.0.gate_up"][:2]) and torch.equal(native["l.0.up"], hf["m.0.gate_up"][2:])
    assert native["l.0.a"].shape == (1, 2) and native["l.0.b"].shape == (3, 2)  # unequal parts: sizes
    back = to_hf(RULES, native)
    assert back.keys() == hf.keys() and all(torch.equal(back[k], hf[k]) for k in hf)


def test_a_tensor_that_does_not_split_evenly_or_a_missing_part_is_an_error():
    with pytest.raises(CheckpointError, match=r"m.0.gate_up of shape \(5, 3\) does not split into 2 equal parts"):
        from_hf(RULES, {"m.0.gate_up": torch.zeros(5, 3)})
    with pytest.raises(CheckpointError, match=r"does not split into parts of \[1, 3\] rows"):
        from_hf(RULES, {"m.0.ab": torch.zeros(5, 2)})
    with pytest.raises(CheckpointError, match="some of the attnkit tensors fused into them are missing"):
        to_hf(RULES, {"l.0.gate": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="fuses on one side only"):
        Rename(("a", "b"), ("c", "d"))


def test_rows_interleaved_head_by_head_are_regrouped_part_by_part_and_back():
    """GPT-NeoX's query_key_value: rows (head, q/k/v, dim) in the checkpoint, (q/k/v, head, dim) in attnkit."""
    rules = [Rename(f"qkv.{p}", f"hf.qkv.{p}", interleaved=(2, 3)) for p in ("weight", "bias")]
    heads, parts, dim = 2, 3, 4
    rows = lambda order: torch.tensor(order, dtype=torch.float)  # noqa: E731
    labels = rows([[h, p, d] for h in range(heads) for p in range(parts) for d in range(dim)])
    native, _, _ = from_hf(rules, {"hf.qkv.weight": labels, "hf.qkv.bias": labels[:, 1]})
    expected = rows([[h, p, d] for p in range(parts) for h in range(heads) for d in range(dim)])
    assert torch.equal(native["qkv.weight"], expected) and torch.equal(native["qkv.bias"], expected[:, 1])
    back = to_hf(rules, native)
    assert torch.equal(back["hf.qkv.weight"], labels) and torch.equal(back["hf.qkv.bias"], labels[:, 1])
    with pytest.raises(CheckpointError, match=r"shape \(10, 3\) does not split into 2 groups of 3 heads"):
        from_hf(rules, {"hf.qkv.weight": torch.zeros(10, 3)})


def test_grouped_query_rows_are_regrouped_and_back():
    """Falcon's grouped query_key_value: per key/value group, its query heads, then its key and
    value head; attnkit's: the query heads in order (group by group), then the keys, the values."""
    rules = [Rename("qkv.weight", "hf.qkv.weight", interleaved=(2, 4))]  # 2 groups of 2 query heads
    labels = torch.tensor([[g, part] for g in range(2) for part in range(4) for _ in range(3)], dtype=torch.float)
    native, _, _ = from_hf(rules, {"hf.qkv.weight": labels})
    heads = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]  # q0 q1 q2 q3, k0 k1, v0 v1
    expected = torch.tensor([[g, part] for g, part in heads for _ in range(3)], dtype=torch.float)
    assert torch.equal(native["qkv.weight"], expected)
    assert torch.equal(to_hf(rules, native)["hf.qkv.weight"], labels)
