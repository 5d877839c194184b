"""Atomic checkpoints: complete or absent, last K kept, corruption detected, RNG states restored."""

import random

import numpy as np
import pytest
import torch

from attnkit.errors import CheckpointError
from attnkit.training import checkpoint as ckpt


def write_files(tmp):
    (tmp / "a.bin").write_bytes(b"x" * 1000)
    torch.save({"t": torch.arange(5)}, tmp / ckpt.TRAINING_STATE)


def test_failed_write_leaves_no_checkpoint_and_keeps_the_previous_one(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, write_files)

    def crash(tmp):
        (tmp / "a.bin").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 2, crash)
    assert [s for s, _ in ckpt.complete_checkpoints(tmp_path)] == [1]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-1"
    assert sorted(d.name for d in (tmp_path / "checkpoints").iterdir()) == ["step-1"]  # temp dir removed


def test_directory_without_complete_manifest_is_ignored(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, write_files)
    (tmp_path / "checkpoints" / "step-9").mkdir()  # e.g. made by hand or by an older tool
    (tmp_path / "checkpoints" / "step-9" / "a.bin").write_bytes(b"x")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-1"


def test_keep_last_k(tmp_path):
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, step, write_files, keep_last=2)
    assert [s for s, _ in ckpt.complete_checkpoints(tmp_path)] == [4, 5]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupt_file_is_an_error_naming_it(tmp_path, damage):
    path = ckpt.save_checkpoint(tmp_path, 1, write_files)
    target = path / "a.bin"
    if damage == "flip":
        target.write_bytes(b"y" + target.read_bytes()[1:])
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    else:
        target.unlink()
    with pytest.raises(CheckpointError, match="a.bin"):
        ckpt.load_training_state(path)


def test_training_state_loads_with_weights_only(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 1, write_files)
    assert torch.equal(ckpt.load_training_state(path)["t"], torch.arange(5))


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in NumPy's state
    torch.save(ckpt.rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random(), random.gauss(0, 1))
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random(), random.gauss(0, 1))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]


def test_cuda_rng_state_is_the_training_gpus_and_resumes_with_fewer_gpus_visible(monkeypatch):
    """Only the training GPU's generator is saved, and it goes back to the GPU the run resumes on:
    saving every visible GPU's made a resume with fewer GPUs visible fail with an IndexError.
    The CUDA calls are stubbed (CI has no GPU); tests/test_cuda.py resumes on a real one."""
    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.tensor([device.index, 7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.update({str(device): s.tolist()}))
    state = ckpt.rng_state(torch.device("cuda", 1))
    assert state["cuda"].tolist() == [1, 7]
    ckpt.set_rng_state(state, torch.device("cuda", 0))
    assert restored == {"cuda:0": [1, 7]}
    older = {**state, "cuda": [torch.tensor([0], dtype=torch.uint8), torch.tensor([1], dtype=torch.uint8)]}
    ckpt.set_rng_state(older, "cuda:1")  # the earlier format: a list over the GPUs visible then
    assert restored["cuda:1"] == [1]
    restored.clear()
    ckpt.set_rng_state({**older, "cuda": older["cuda"][:1]}, "cuda:1")  # that GPU was not visible then
    ckpt.set_rng_state(state, "cpu")
    assert restored == {} and ckpt.rng_state("cpu")["cuda"] is None
