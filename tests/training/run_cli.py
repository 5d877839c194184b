"""``attnkit`` CLI for subprocess tests: one thread (bitwise-reproducible losses) and optional
self-inflicted SIGKILLs, so a test can crash a real run at a chosen point.

Environment: ``KILL_AT_BATCH=N`` kills the process when it asks for its N-th training batch
(mid-step); ``KILL_BEFORE_RENAME=N`` kills it when its N-th checkpoint is fully written (with
its COMPLETE manifest) but not yet renamed into place.
"""

import os
import signal
import sys

import torch

torch.set_num_threads(1)

from attnkit.cli import app  # noqa: E402
from attnkit.training import checkpoint, sources  # noqa: E402


def _kill_on_call(owner, name, n, counts=lambda *args: True):
    """Replace ``owner.name`` by a wrapper that SIGKILLs on the n-th call for which ``counts(*args)``."""
    original, calls = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += counts(*args)
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


if os.environ.get("KILL_AT_BATCH"):
    _kill_on_call(sources.LMDataSource, "next_batch", int(os.environ["KILL_AT_BATCH"]))
if os.environ.get("KILL_BEFORE_RENAME"):  # the rename of .tmp-step-N-PID to step-N
    _kill_on_call(checkpoint.os, "rename", int(os.environ["KILL_BEFORE_RENAME"]),
                  counts=lambda src, dst: os.path.basename(src).startswith(".tmp-step-"))

app(sys.argv[1:], prog_name="attnkit")
