"""How every benchmark measures: warm-up, alternating repeats, medians, fresh processes.

The machine may be shared, so a peer is never timed in one block after another: each repeat
runs every contender once, in turn, and the median over repeats is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Quiet, offline peers: no progress bars or hub calls in the timed code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """Min–max of the repeats as a percentage of the median (how noisy the machine was)."""
    m = median(xs)
    return f"±{50 * (max(xs) - min(xs)) / m:.0f}%" if m else "-"


def time_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each contender, run in turn (A B C A B C ...) after ``warmup`` calls each."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(time_once(fn))
    return times


def run_worker(script: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python benchmarks/<script> --worker ...`` in a fresh process; it prints one JSON line last."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    full_env = {**os.environ, **(env or {})}
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
