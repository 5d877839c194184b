"""Exact resume after a real SIGKILL of a real training process (fp32, CPU, one thread)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.training.checkpoint import COMPLETE, complete_checkpoints, latest_checkpoint

RUNNER = Path(__file__).with_name("run_cli.py")
STEPS = ["train.max_steps=8", "train.save_every=3"]  # checkpoints at steps 3, 6 and 8


def train(tiny_lm, out, *extra, env=None, resume=False):
    sets = [a for s in [*tiny_lm.overrides, *STEPS] for a in ("--set", s)]
    cmd = [sys.executable, str(RUNNER), "train", str(tiny_lm.recipe), "--out", str(out), *sets, *extra]
    return subprocess.run(cmd + (["--resume"] if resume else []), capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def curve(out):
    """Every logged number that must be reproduced exactly (not the timings)."""
    keys = ("step", "loss", "lr", "grad_norm", "eval_loss")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [tuple(json.loads(ln).get(k) for k in keys) for ln in lines]


@pytest.fixture(scope="module")
def reference(tiny_lm, tmp_path_factory):
    """The metrics of a run that was never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = train(tiny_lm, out)
    assert done.returncode == 0, done.stderr
    return curve(out)


def test_sigkill_mid_step_then_resume_logs_bitwise_identical_losses(tiny_lm, tmp_path, reference):
    killed = train(tiny_lm, tmp_path / "run", env={"KILL_AT_BATCH": "5"})  # dies inside step 5
    assert killed.returncode == -signal.SIGKILL
    assert [s for s, _ in complete_checkpoints(tmp_path / "run")] == [3]
    resumed = train(tiny_lm, tmp_path / "run", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert curve(tmp_path / "run") == reference
    assert len(reference) == 8 + 3  # 8 steps + evaluations at 3, 6, 8


def test_a_run_killed_before_its_first_checkpoint_starts_again_with_resume(tiny_lm, tmp_path, reference):
    killed = train(tiny_lm, tmp_path / "run", env={"KILL_AT_BATCH": "2"})  # dies inside step 2
    assert killed.returncode == -signal.SIGKILL and not complete_checkpoints(tmp_path / "run")
    again = train(tiny_lm, tmp_path / "run")
    assert again.returncode == 1 and "stopped before its first checkpoint: pass --resume" in again.stderr
    resumed = train(tiny_lm, tmp_path / "run", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert curve(tmp_path / "run") == reference


def test_sigkill_while_saving_never_leaves_a_complete_looking_checkpoint(tiny_lm, tmp_path, reference):
    # Killed after step 6's checkpoint is fully written, COMPLETE manifest included, but not renamed.
    killed = train(tiny_lm, tmp_path / "run", env={"KILL_BEFORE_RENAME": "2"})
    assert killed.returncode == -signal.SIGKILL
    leftovers = [d for d in (tmp_path / "run" / "checkpoints").iterdir() if d.name.startswith(".")]
    assert leftovers and (leftovers[0] / COMPLETE).is_file()  # the partial save is there, with a manifest...
    assert latest_checkpoint(tmp_path / "run").name == "step-3"  # ...and is ignored
    resumed = train(tiny_lm, tmp_path / "run", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert curve(tmp_path / "run") == reference
    assert [s for s, _ in complete_checkpoints(tmp_path / "run")] == [3, 6, 8]
    assert not [d for d in (tmp_path / "run" / "checkpoints").iterdir() if d.name.startswith(".")]
