"""Run the benchmark suite side by side with its peers and write benchmarks/RESULTS.md.

    make bench                                   # everything (about 6 minutes on 2 quiet cores)
    python benchmarks/run.py --quick             # fewer repeats, shorter sequences
    python benchmarks/run.py --only train generate

Each benchmark module has ``run(hw, quick) -> (markdown, headline numbers)``; the headline
numbers are checked against issue 6's targets (``TARGETS``). RESULTS.md is rewritten above
its "## Profile notes" heading; the notes below it are kept.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

import hardware
from timing import ROOT, table

BENCHMARKS = {
    "startup": ("bench_startup", "Start-up"),
    "attention_memory": ("bench_attention_memory", "Attention memory"),
    "train": ("bench_train", "Training throughput"),
    "generate": ("bench_generate", "Greedy decoding"),
    "beam": ("bench_beam", "Beam search (encoder-decoder)"),
    "encoder": ("bench_encoder", "Encoder throughput"),
    "families": ("bench_families", "ViT, T5, Whisper, a mixture of experts, Qwen2.5 and ModernBERT (no target)"),
    "lookup": ("bench_lookup", "Prompt lookup decoding (no target)"),
    "serve": ("bench_serve", "Server completions (no target)"),
}
# Issue 6's targets: (headline key, what, ">=" or "<=", threshold, as percent?)
TARGETS = [
    ("train_fp32_out_of_the_box", "training fp32, out of the box vs HF", ">=", 1.5, False),
    ("train_bf16_out_of_the_box", "training bf16, out of the box vs HF", ">=", 1.5, False),
    ("train_fp32_vs_hf", "training fp32, same process vs HF", ">=", 1.1, False),
    ("train_bf16_vs_hf", "training bf16, same process vs HF", ">=", 1.1, False),
    ("train_fp32_mfu", "training fp32, model FLOP/s of matmul peak", ">=", 0.9, True),
    ("train_bf16_mfu", "training bf16, model FLOP/s of matmul peak", ">=", 0.9, True),
    ("generate_fp32_b1_vs_hf", "greedy fp32 batch 1 vs HF", ">=", 1.6, False),
    ("generate_fp32_b1_unpacked_vs_hf", "greedy fp32 batch 1 vs HF, pack_weights=False", ">=", 1.6, False),
    ("generate_bf16_b1_vs_hf", "greedy bf16 batch 1 vs HF", ">=", 1.6, False),
    ("generate_bf16_b1_unpacked_vs_hf", "greedy bf16 batch 1 vs HF, pack_weights=False", ">=", 1.6, False),
    ("generate_fp32_b1_bound", "greedy fp32 batch 1, share of bandwidth bound", ">=", 0.85, True),
    ("generate_fp32_b1_unpacked_bound", "greedy fp32 batch 1, share of bandwidth bound, pack_weights=False", ">=", 0.85, True),
    ("generate_bf16_b1_bound", "greedy bf16 batch 1, share of bandwidth bound", ">=", 0.85, True),
    ("generate_bf16_b1_unpacked_bound", "greedy bf16 batch 1, share of bandwidth bound, pack_weights=False", ">=", 0.85, True),
    ("generate_fp32_b8_vs_hf", "greedy fp32 batch 8 vs HF", ">=", 1.4, False),
    ("generate_fp32_b8_unpacked_vs_hf", "greedy fp32 batch 8 vs HF, pack_weights=False", ">=", 1.4, False),
    ("generate_bf16_b8_vs_hf", "greedy bf16 batch 8 vs HF", ">=", 1.4, False),
    ("generate_bf16_b8_unpacked_vs_hf", "greedy bf16 batch 8 vs HF, pack_weights=False", ">=", 1.4, False),
    ("beam_vs_hf", "beam search vs Marian", ">=", 2.0, False),
    ("beam_unpacked_vs_hf", "beam search vs Marian, pack_weights=False", ">=", 2.0, False),
    ("encoder_vs_hf", "MiniLM encoder vs HF", ">=", 1.2, False),
    ("attention_growth_vs_linear", "attention memory growth (1 = linear)", "<=", 1.0, False),
    ("attention_peak_gib_max_len", "attention peak at the longest length, GiB", "<=", 2.0, False),
    ("startup_s", "`import attnkit`, seconds", "<=", 1.0, False),
    ("startup_imports_transformers", "`import attnkit` imports transformers (0 = no)", "<=", 0, False),
]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
NOTES_HEADING = "## Profile notes"


def versions() -> str:
    from importlib.metadata import version

    libs = ["torch", "transformers", "x-transformers", "attnkit"]
    return ", ".join(f"{lib} {version(lib)}" for lib in libs)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def targets(numbers: dict) -> str:
    """Each measured target: met, or missed by how much (relative to the target)."""
    rows = []
    for key, what, op, goal, percent in TARGETS:
        if key not in numbers:
            continue
        value = numbers[key]
        met = value >= goal if op == ">=" else value <= goal
        show = (lambda x: f"{100 * x:.1f}%") if percent else (lambda x: f"{x:.3f}")
        status = "met" if met else (f"missed by {100 * abs(value - goal) / goal:.1f}%" if goal else "missed")
        rows.append([what, f"{'≥' if op == '>=' else '≤'} {show(goal)}", show(value), status])
    return table(["target (issue 6)", "goal", "measured", "status"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and lengths")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these benchmarks only")
    p.add_argument("--output", type=Path, default=RESULTS, help="where to write the results")
    args = p.parse_args()
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "make bench"
    torch.manual_seed(0)
    start, load_before = time.time(), load()

    print(f"machine: {hardware.cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads", flush=True)
    hw = hardware.measure(args.quick)
    sections = [("Hardware ceilings", hardware.report(hw))]
    numbers: dict = {}
    print(sections[0][1], flush=True)
    for name in args.only or BENCHMARKS:
        module, title = BENCHMARKS[name]
        t0 = time.time()
        try:
            md, head = importlib.import_module(module).run(hw, args.quick)
            numbers.update(head)
        except Exception as e:  # one broken comparison must not hide the others
            md = f"**failed**: `{type(e).__name__}: {str(e)[-500:]}`"
        sections.append((title, md))
        print(f"\n## {title} ({time.time() - t0:.0f} s)\n\n{md}", flush=True)

    header = [
        "# attnkit benchmark results",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, {time.time() - start:.0f} s",
        f"- machine: {hardware.cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- versions: {versions()}",
        f"- load average before: {load_before}; after: {load()} (above the core count means other work "
        "shared the CPU while this ran, and the timings are noisy)",
        "- ratios are attnkit ÷ peer (higher is better for attnkit); spreads are half the min–max range of the "
        "repeats as % of the median, attnkit / peer",
    ]
    sections.insert(0, ("Targets", targets(numbers)))
    print(f"\n## Targets\n\n{sections[0][1]}")
    body = "\n".join(header + [f"\n## {t}\n\n{md}" for t, md in sections]) + "\n"
    old = args.output.read_text() if args.output.exists() else ""
    notes = old[old.index(NOTES_HEADING):] if NOTES_HEADING in old else ""
    args.output.write_text(body + ("\n" + notes if notes else ""))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
