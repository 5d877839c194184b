"""The same Trainer under ``torchrun`` (2 CPU processes, gloo) against one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.training.checkpoint import complete_checkpoints, read_trainer_state

RUNNER = Path(__file__).with_name("run_cli.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS = ["train.max_steps=6", "train.save_every=3", "train.eval_every=3"]


def train(tiny_lm, out, *extra, nproc=1, resume=False):
    sets = [a for s in [*tiny_lm.overrides, *STEPS, *extra] for a in ("--set", s)]
    launch = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    cmd = [*launch, str(RUNNER), "train", str(tiny_lm.recipe), "--out", str(out), *sets]
    done = subprocess.run(cmd + (["--resume"] if resume else []), capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(out, key="loss"):
    return [json.loads(ln)[key] for ln in (out / "metrics.jsonl").read_text().splitlines() if key in json.loads(ln)]


@pytest.fixture(scope="module")
def single(tiny_lm, tmp_path_factory):
    """The output directory of the single-process run."""
    out = tmp_path_factory.mktemp("single") / "out"
    train(tiny_lm, out)
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process_and_resume_in_one(tiny_lm, tmp_path, strategy, single):
    train(tiny_lm, tmp_path / "two", f"train.distributed={strategy}", nproc=2)
    two = losses(tmp_path / "two")
    assert len(two) == 6
    assert two == pytest.approx(losses(single), abs=1e-5)
    assert losses(tmp_path / "two", "eval_loss") == pytest.approx(losses(single, "eval_loss"), abs=1e-5)
    assert read_trainer_state(tmp_path / "two" / "checkpoints" / "step-6")["world_size"] == 2

    # The 2-process checkpoint of step 3 resumes in a single process and continues the same curve.
    shutil.copytree(tmp_path / "two", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-6")
    train(tiny_lm, tmp_path / "resumed", resume=True)
    assert [s for s, _ in complete_checkpoints(tmp_path / "resumed")] == [3, 6]
    assert losses(tmp_path / "resumed") == pytest.approx(losses(single), abs=1e-5)
