"""The same Trainer under ``torchrun`` (2 CPU processes, gloo) against one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

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


def test_fsdp_with_dropout_resumes_exactly(tiny_lm, tmp_path):
    """Saving an FSDP checkpoint (or the best model: the shards are gathered for both) must not move
    rank 0's random stream (dropout) away from the others'."""
    from safetensors.torch import load_file

    extra = ("train.distributed=fsdp", "model.config.dropout=0.1", "train.best_metric=eval_loss")
    train(tiny_lm, tmp_path / "two", *extra, nproc=2)
    shutil.copytree(tmp_path / "two", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-6")
    train(tiny_lm, tmp_path / "resumed", *extra, nproc=2, resume=True)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "two")
    best = json.loads((tmp_path / "two" / "best" / "best.json").read_text())
    evals = dict(zip((3, 6), losses(tmp_path / "two", "eval_loss")))
    assert best["step"] == min(evals, key=evals.get) and best["value"] == pytest.approx(min(evals.values()))
    gathered = load_file(tmp_path / "two" / "best" / "model.safetensors")
    saved = load_file(tmp_path / "two" / "checkpoints" / f"step-{best['step']}" / "model.safetensors")
    assert gathered.keys() == saved.keys() and all(torch.equal(gathered[k], saved[k]) for k in saved)


TRANSLATION = Path(__file__).parents[2] / "recipes" / "translate-numbers.toml"
TINY_TRANSLATION = ["model.config.d_model=16", "model.config.d_ff=32", "model.config.n_heads=2",
                    "model.config.n_encoder_layers=1", "model.config.n_decoder_layers=1", "model.config.dropout=0.0",
                    "tokenizer.vocab_size=300", "data.max_tokens=40", "train.max_steps=4", "train.eval_every=2",
                    "train.save_every=2", "train.progress=false",
                    # Adam with a tiny eps moves a parameter by about lr whatever the size of its
                    # gradient, so 1e-9 rounding differences would become visible: keep lr small.
                    "train.schedule=constant", "train.lr=1e-5", "train.eps=1e-6"]


def test_padded_translation_batches_under_two_processes_match_one(tmp_path):
    """Ranks hold different numbers of target tokens: the loss is the mean over all of them, as in
    one process; validation batches with a single (long) pair are merged so every rank has rows."""
    recipe = SimpleNamespace(recipe=TRANSLATION, overrides=TINY_TRANSLATION)
    for nproc in (1, 2):
        train(recipe, tmp_path / f"p{nproc}", nproc=nproc)
    assert losses(tmp_path / "p2") == pytest.approx(losses(tmp_path / "p1"), abs=1e-5)
    assert losses(tmp_path / "p2", "eval_loss") == pytest.approx(losses(tmp_path / "p1", "eval_loss"), abs=1e-5)
    assert len(losses(tmp_path / "p2", "eval_loss")) == 2
