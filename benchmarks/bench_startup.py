"""Start-up: ``python -c "import attnkit"`` in fresh processes, and what that import pulls in;
then loading a checkpoint.

``import attnkit`` must stay under a second and must not import ``transformers`` (or torch:
models load lazily on first use). Each command runs in turn, median of the repeats.

Loading (no target): a Llama-shaped checkpoint of 0.5B parameters in bf16, saved by
``transformers``, loaded by ``attnkit.from_pretrained`` and by ``AutoModelForCausalLM.from_pretrained``
in fresh processes taking turns (the file in the page cache for both), then one forward pass
over 8 tokens: the seconds to a loaded model, to the first logits, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

from timing import alternate, median, run_worker, spread, table

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


LLAMA = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=16,
             num_key_value_heads=4, vocab_size=32000)


def _save_checkpoint(path: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**LLAMA)).to(torch.bfloat16).save_pretrained(path)


def _load_worker(peer: str, path: str) -> dict:
    """Fresh process: load the checkpoint, then one forward; seconds and peak RSS."""
    import torch

    if peer == "attnkit":
        import attnkit
        load = lambda: attnkit.from_pretrained(path, dtype=torch.bfloat16)  # noqa: E731
    else:
        from transformers import AutoModelForCausalLM
        load = lambda: AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)  # noqa: E731
    t0 = time.perf_counter()
    model = load()
    loaded = time.perf_counter() - t0
    with torch.inference_mode():
        model(torch.arange(8)[None]).logits
    first = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    del model
    t0 = time.perf_counter()
    load()  # again, with the code imported
    return {"load_s": loaded, "first_s": first, "again_s": time.perf_counter() - t0, "rss_gib": rss}


def loading(quick: bool) -> str:
    with tempfile.TemporaryDirectory() as path:
        _save_checkpoint(path)
        peers = {"attnkit": "attnkit", "HF": "hf"}
        runs: dict[str, list[dict]] = {name: [] for name in peers}
        for i in range(1 + (2 if quick else 4)):  # the first round warms the page cache and is dropped
            for name, peer in peers.items():
                result = run_worker("bench_startup.py", ["--load-worker", peer, path])
                if i:
                    runs[name].append(result)
    rows = []
    for name, results in runs.items():
        cells = []
        for key in ("load_s", "first_s", "again_s"):
            seconds = [r[key] for r in results]
            cells += [f"{median(seconds):.2f} s", spread(seconds)]
        rows.append([name, *cells, f"{median([r['rss_gib'] for r in results]):.2f} GiB"])
    ratio = median([r["first_s"] for r in runs["HF"]]) / median([r["first_s"] for r in runs["attnkit"]])
    md = table(["loader", "loaded", "spread", "first logits", "spread", "loaded again", "spread", "peak RSS"], rows)
    return (f"Loading a 0.5B-parameter Llama-shaped bf16 checkpoint in fresh processes, then one forward over 8 "
            f"tokens, then loading it again in the same process (no target; the first load includes importing the "
            f"model code): attnkit reaches the first logits **{ratio:.2f}×** as fast as HF.\n\n{md}")


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    times = alternate({name: _python(code) for name, code in COMMANDS.items()}, 3 if quick else 5, warmup=1)
    mods = imported_modules()
    t_import = median(times['python -c "import attnkit"'])
    rows = [[name, f"{median(t):.2f} s", spread(t)] for name, t in times.items()]
    md = table(["command", "median wall time", "spread"], rows)
    head = {"startup_s": t_import, "startup_imports_transformers": mods["transformers"]}
    note = (f"`import attnkit`: **{t_import:.2f} s** (target < 1.0 s); imports transformers: "
            f"**{'yes' if mods['transformers'] else 'no'}**; imports torch: {'yes' if mods['torch'] else 'no'}.")
    return note + "\n\n" + md + "\n\n" + loading(quick), head


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--load-worker", nargs=2, metavar=("PEER", "PATH"))
    a = p.parse_args()
    if a.load_worker:
        print(json.dumps(_load_worker(*a.load_worker)))
    else:
        print(run({})[0])
