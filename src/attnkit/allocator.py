"""Memory: glibc malloc settings for training loops (Linux), and how much memory is free.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and hands it back to the kernel on ``free``. A training step allocates and frees the same large
tensors every step (the logits alone are batch x context x vocab floats, 412 MB for a GPT-2
vocabulary at batch 8 x 256), so each step page-faults them in again and the kernel zeroes them:
for a small GPT on CPU that costs a third of the step. :func:`keep_freed_memory` tells glibc
to serve them from its heap and keep freed memory for reuse, which is what
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`` does from the shell.

The price: the process keeps its peak memory until it exits (it is not returned to the
kernel). That is what a training or serving process wants and not what a library import
should do behind a user's back, so attnkit calls this from its entry points only: the
``Trainer`` and the ``attnkit`` command (whose process it owns). Set
``ATTNKIT_MALLOC_TUNING=0`` to turn it off; glibc's own ``MALLOC_*`` variables, when set,
win over it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_VAR = "ATTNKIT_MALLOC_TUNING"
_M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
_M_MMAP_MAX = -4
_GLIBC_VARS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it (see the module doc).

    Returns True when the setting is in effect (now or from an earlier call). Does nothing and
    returns False off glibc, when ``ATTNKIT_MALLOC_TUNING=0``, or when the user set glibc's
    ``MALLOC_*`` tunables themselves.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _GLIBC_VARS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; M_TRIM_THRESHOLD = -1 disables trimming (mallopt(3)).
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
    _applied = ok
    return ok


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: Linux's ``MemAvailable``, capped
    by the cgroup's (container's) limit, or free physical memory elsewhere; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:  # cgroup v2: the container's limit minus what it uses
        with open("/sys/fs/cgroup/memory.max") as f_max, open("/sys/fs/cgroup/memory.current") as f_cur:
            limit = f_max.read().strip()
            if limit != "max":
                free = min(free, int(limit) - int(f_cur.read()))
    except (OSError, ValueError):
        pass
    return free
