"""``make demo``: train a small GPT on the Python standard library's source, then let it write Python.

Runs ``recipes/gpt-stdlib.toml`` (byte-level BPE + a 3-layer GPT) into a fresh ``runs/`` directory,
bounded to a few minutes of training on a laptop CPU, streams a sample, and prints how to go on.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "gpt-stdlib.toml"
TRAIN_MINUTES = 3.75  # leaves time for tokenizing (~20 s) and sampling inside 5 minutes on 2 cores
PROMPT = "def "


def main() -> None:
    import torch

    from attnkit.cli import load_model_dir
    from attnkit.generation.text import TextStream
    from attnkit.training import run_recipe
    from attnkit.training.checkpoint import latest_checkpoint

    if not RECIPE.is_file():
        sys.exit(f"demo recipe {RECIPE} not found: run the demo from a checkout of attnkit")
    out = Path("runs") / time.strftime("gpt-stdlib-%Y%m%d-%H%M%S")
    print("attnkit demo: a small GPT learns Python from the standard library's own source code.\n"
          f"recipe {RECIPE}, output {out}, training for at most {TRAIN_MINUTES} minutes "
          f"on {torch.get_num_threads()} CPU threads\n", flush=True)
    start = time.monotonic()
    run_recipe(RECIPE, out, [f"train.max_minutes={TRAIN_MINUTES}"])
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if "loss" in r]
    evals = [r for r in lines if "eval_loss" in r]
    print(f"\ntrained {train[-1]['step']} steps in {time.monotonic() - start:.0f} s: training loss "
          f"{train[0]['loss']:.2f} -> {train[-1]['loss']:.2f}, validation loss "
          + " -> ".join(f"{r['eval_loss']:.2f} (step {r['step']})" for r in evals))

    model, tokenizer, checkpoint = load_model_dir(out)
    print(f"\nsample (temperature 0.8, top-k 40):\n{'-' * 60}\n{PROMPT}", end="", flush=True)
    torch.manual_seed(0)
    for piece in TextStream(model, tokenizer, PROMPT, max_new_tokens=120, do_sample=True, temperature=0.8, top_k=40,
                            generator=torch.Generator().manual_seed(0)):
        print(piece, end="", flush=True)
    print(f"\n{'-' * 60}\ncheckpoint: {latest_checkpoint(out)}")
    print(f"continue:   attnkit generate {out} --prompt 'import os' --max-new-tokens 100")
    print(f"train more: attnkit train recipes/gpt-stdlib.toml --out {out} --resume --set train.max_steps=5000")


if __name__ == "__main__":
    main()
