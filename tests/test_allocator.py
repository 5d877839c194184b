"""attnkit.allocator: glibc keeps freed training-sized blocks only when asked, and never when
switched off. Each case runs in a fresh interpreter: mallopt settings are process-wide."""

import os
import subprocess
import sys

import pytest

from attnkit import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")

# Allocate, touch and free 256 MiB; report whether keep_freed_memory applied and whether the
# process still holds the freed pages (resident set shrank by less than half of the block).
SCRIPT = """
import os, torch
from attnkit.allocator import keep_freed_memory
applied = keep_freed_memory() if os.environ.get("APPLY") == "1" else False
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
x = torch.ones(64 * 2**20)  # 256 MiB, written
held = rss()
del x
kept = held - rss() < 128 * 2**20
print(applied, kept)
"""


def run(apply: bool, **env) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ATTNKIT_MALLOC_TUNING"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**clean, "APPLY": "1" if apply else "0", **env},
                         capture_output=True, text=True, check=True)
    return tuple(out.stdout.split())


def test_glibc_returns_large_blocks_by_default():
    assert run(apply=False) == ("False", "False")


def test_keep_freed_memory_keeps_large_blocks():
    assert run(apply=True) == ("True", "True")


def test_env_var_turns_it_off():
    assert run(apply=True, ATTNKIT_MALLOC_TUNING="0") == ("False", "False")


def test_users_own_glibc_settings_win():
    assert run(apply=True, MALLOC_TRIM_THRESHOLD_="0")[0] == "False"


def test_available_memory_is_within_physical_memory():
    free = allocator.available_memory()
    assert 0 < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_available_memory_is_capped_by_the_container_limit(monkeypatch):
    import io

    files = {"/proc/meminfo": "MemTotal: 8000000 kB\nMemAvailable:    4000000 kB\n",
             "/sys/fs/cgroup/memory.max": "3000000000\n", "/sys/fs/cgroup/memory.current": "1000000000\n"}

    def fake_open(path, *args, **kwargs):
        if path not in files:
            raise FileNotFoundError(path)
        return io.StringIO(files[path])

    monkeypatch.setattr(allocator, "open", fake_open, raising=False)
    assert allocator.available_memory() == 2_000_000_000  # limit - usage < MemAvailable
    files["/sys/fs/cgroup/memory.max"] = "max\n"
    assert allocator.available_memory() == 4_000_000 * 1024
    del files["/sys/fs/cgroup/memory.max"]  # no cgroup v2
    assert allocator.available_memory() == 4_000_000 * 1024


def test_the_attnkit_command_keeps_freed_memory_in_its_own_process():
    """Every ``attnkit`` subcommand (here one that fails at once) applies the setting first."""
    script = ("from typer.testing import CliRunner; from attnkit.cli import app; from attnkit import allocator; "
              "CliRunner().invoke(app, ['info', '/nonexistent']); print(allocator._applied)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ATTNKIT_MALLOC_TUNING"}
    for env, expected in (({}, "True"), ({"ATTNKIT_MALLOC_TUNING": "0"}, "False")):
        out = subprocess.run([sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True,
                             check=True)
        assert out.stdout.split()[-1] == expected, out.stderr
