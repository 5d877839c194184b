"""Start-up: ``python -c "import attnkit"`` in fresh processes, and what that import pulls in.

``import attnkit`` must stay under a second and must not import ``transformers`` (or torch:
models load lazily on first use). Each command runs in turn, median of the repeats.
"""

from __future__ import annotations

import json
import subprocess
import sys

from timing import alternate, median, spread, table

COMMANDS = {
    "python -c pass": "pass",
    'python -c "import attnkit"': "import attnkit",
    'python -c "import attnkit; attnkit.GPT"': "import attnkit; attnkit.GPT",
    'python -c "import transformers; transformers.GPT2LMHeadModel"': "import transformers; transformers.GPT2LMHeadModel",
}


def _python(code: str):
    return lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def imported_modules() -> dict:
    code = "import sys, json, attnkit; print(json.dumps({m: m in sys.modules for m in ('torch', 'transformers')}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    times = alternate({name: _python(code) for name, code in COMMANDS.items()}, 3 if quick else 5, warmup=1)
    mods = imported_modules()
    t_import = median(times['python -c "import attnkit"'])
    rows = [[name, f"{median(t):.2f} s", spread(t)] for name, t in times.items()]
    md = table(["command", "median wall time", "spread"], rows)
    head = {"startup_s": t_import, "startup_imports_transformers": mods["transformers"]}
    note = (f"`import attnkit`: **{t_import:.2f} s** (target < 1.0 s); imports transformers: "
            f"**{'yes' if mods['transformers'] else 'no'}**; imports torch: {'yes' if mods['torch'] else 'no'}.")
    return note + "\n\n" + md, head


if __name__ == "__main__":
    print(run({})[0])
