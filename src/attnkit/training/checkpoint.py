"""Training checkpoints: ``OUT/checkpoints/step-N/``, written atomically, the last K kept.

A checkpoint directory is a model directory (``config.json`` + ``model.safetensors`` +
``tokenizer.json``, loadable on its own with ``attnkit.from_pretrained``) plus
``training_state.pt`` (optimizer, scheduler, RNG and data-generator states; plain tensors and
lists, read with ``torch.load(weights_only=True)``) and ``trainer_state.json`` (step, recipe).

Atomicity: everything is written into ``.tmp-step-N-PID``, each file fsynced, then a
``COMPLETE`` manifest (size and sha256 of every file) is written last and the directory is
renamed to ``step-N``. A crash at any point leaves either no ``step-N`` or a temporary
directory that loading ignores; a ``step-N`` whose files do not match its manifest is reported
as corrupt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from attnkit.errors import CheckpointError
from attnkit.interop.files import fsync_path

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
RECIPE = "recipe.json"
RUN_FILES = (RECIPE, METRICS)  # what a run writes before its first checkpoint
COMPLETE = "COMPLETE"
TRAINING_STATE = "training_state.pt"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def complete_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of the ``step-N`` directories with a ``COMPLETE`` manifest, oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for d in root.iterdir():
            m = _STEP_DIR.match(d.name)
            if m and (d / COMPLETE).is_file():
                found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``OUT/checkpoints``, or None."""
    found = complete_checkpoints(out_dir)
    return found[-1][1] if found else None


def _stopped_before_first_checkpoint(out: Path) -> bool:
    """Whether ``OUT`` holds a run (its recipe or metrics) that never completed a checkpoint."""
    return any((out / name).is_file() for name in RUN_FILES) and latest_checkpoint(out) is None


def prepare_run_dir(out_dir: str | Path, resume: bool) -> Path | None:
    """Check ``OUT`` before a run writes anything; return the checkpoint to resume from (or None).

    A new run refuses a non-empty directory. A resumed one continues its newest complete, intact
    checkpoint; a run that stopped before its first checkpoint starts again from step 0 (its
    metrics and TensorBoard logs are removed; its tokenizer and data are rebuilt or reused).
    """
    out = Path(out_dir)
    if not resume:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            hint = ("pass --resume to continue the run in it, or" if latest_checkpoint(out) else
                    "it holds a run that stopped before its first checkpoint: pass --resume to start it again, or"
                    if _stopped_before_first_checkpoint(out) else "it holds no training run:")
            raise CheckpointError(f"output directory {out} already exists and is not empty; {hint} "
                                  "choose a new --out (nothing was overwritten)")
        return None
    if _stopped_before_first_checkpoint(out):
        (out / METRICS).unlink(missing_ok=True)
        shutil.rmtree(out / TENSORBOARD, ignore_errors=True)
        return None
    last = latest_checkpoint(out)
    if last is None:
        raise CheckpointError(f"cannot resume: {out / CHECKPOINTS} holds no complete checkpoint (a step-N directory "
                              f"with a COMPLETE file) and {out} no {' or '.join(RUN_FILES)} of a run that stopped "
                              "before its first one; start a new run without --resume")
    verify_checkpoint(last)
    return last


@contextmanager
def removed_on_failure(out_dir: str | Path, is_main: bool = True) -> Iterator[None]:
    """Around a new run's set-up (tokenizer, data, model, Trainer): if it fails, rank 0 removes
    what it wrote, leaving ``OUT`` as it was (empty or absent), so the corrected command can run."""
    out = Path(out_dir)
    existed = out.exists()
    try:
        yield
    except BaseException:
        if is_main and out.is_dir():
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for p in out.iterdir():
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
        raise


def save_checkpoint(out_dir: str | Path, step: int, write: Callable[[Path], None], keep_last: int | None = None) -> Path:
    """Create ``OUT/checkpoints/step-{step}`` atomically; ``write(tmp_dir)`` fills it with files.

    Older complete checkpoints beyond the newest ``keep_last`` are deleted afterwards.
    """
    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".*"):  # temporary directories left by a crash while saving; never complete
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-step-{step}-{os.getpid()}"
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {"step": step, "files": {}}
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        fsync_path(f)
        manifest["files"][f.relative_to(tmp).as_posix()] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    with open(tmp / COMPLETE, "w") as f:  # written last: its presence means every file above is whole
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_path(tmp)
    final = root / f"step-{step}"
    if final.exists():  # re-saving a step after a resume: swap, then drop the old copy
        old = root / f".tmp-step-{step}-old-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    fsync_path(root)
    if keep_last:
        for _, d in complete_checkpoints(out_dir)[:-keep_last]:
            shutil.rmtree(d)
    return final


def verify_checkpoint(path: str | Path) -> dict:
    """Check every file against the ``COMPLETE`` manifest; return the manifest.

    Raises :class:`CheckpointError` naming the file when one is missing, truncated or altered.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / COMPLETE).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is incomplete or corrupt: cannot read {path / COMPLETE} ({e})") from None
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is corrupt: {f} is missing")
        if f.stat().st_size != meta["size"] or _sha256(f) != meta["sha256"]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {f} does not match its checksum in {path / COMPLETE} "
                f"(size {f.stat().st_size}, expected {meta['size']}). Delete {path} to resume from an earlier checkpoint."
            )
    return manifest


def load_training_state(path: str | Path) -> dict:
    """Verify the checkpoint at ``path`` and read its ``training_state.pt`` (weights_only)."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        return torch.load(path / TRAINING_STATE, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointError(f"cannot read {path / TRAINING_STATE}: {e}") from None


def read_trainer_state(path: str | Path) -> dict:
    """The ``trainer_state.json`` of a checkpoint (step, recipe, model config)."""
    f = Path(path) / TRAINER_STATE
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {f}: {e}") from None


def rng_state(device: torch.device | str = "cpu") -> dict:
    """Torch, CUDA (the training ``device``'s generator), NumPy and Python RNG states as tensors
    and plain lists (weights_only-safe)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    device = torch.device(device)
    return {
        "torch": torch.get_rng_state(),
        # One GPU's generator, not every visible GPU's: the run may resume with fewer GPUs visible.
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": [version, list(internal), py_gauss],
    }


def set_rng_state(state: dict, device: torch.device | str = "cpu") -> None:
    """Restore what :func:`rng_state` returned; the CUDA state goes to the training ``device``."""
    torch.set_rng_state(state["torch"])
    device, cuda = torch.device(device), state["cuda"]
    if isinstance(cuda, list):  # checkpoints before 2026-11-28 saved every visible GPU's generator
        cuda = cuda[device.index or 0] if len(cuda) > (device.index or 0) else None
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory: ``path`` itself, or the newest complete checkpoint of a training output dir."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if (path / CHECKPOINTS).is_dir() or not (path / "config.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{path} is neither a model directory (no config.json) nor a training output "
                                  f"directory with a complete checkpoint under {path / CHECKPOINTS}")
        path = latest
    if (path / COMPLETE).is_file():
        verify_checkpoint(path)
    return path
