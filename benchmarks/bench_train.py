"""Training tokens/s: attnkit GPT vs Hugging Face GPT2LMHeadModel vs x-transformers.

GPT with 6 layers x 384 wide (6 heads), vocabulary 50304, context 256, batch 8, AdamW, in fp32
and under bf16 autocast. Two comparisons:

* same process: the three models take turns step by step, same threads, same allocator
  settings (attnkit's training allocator setting applied to all), median of the repeats;
* out of the box: each library's defaults in a fresh process, processes alternating. attnkit
  as its Trainer sets up: :func:`attnkit.allocator.keep_freed_memory` and
  :func:`attnkit.training.optim.make_optimizer`; Hugging Face as its Trainer sets up: glibc
  left as it is, ``adamw_torch_fused``.

Every other optimiser is ``torch.optim.AdamW(fused=True)``.

Model FLOPs per token are 6N + 12·L·T·d (N = weights in matmuls, LM head included; attention
scores and values counted in full, PaLM's convention), as a share of the measured matmul peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

import torch
import torch.nn.functional as F

from timing import alternate, median, run_worker, spread, table

LAYERS, WIDTH, HEADS, VOCAB, CONTEXT, BATCH = 6, 384, 6, 50304, 256, 8
PEERS = {"attnkit": "attnkit GPT", "hf": "HF GPT2LMHeadModel", "xt": "x-transformers"}


def flops_per_token() -> int:
    n_matmul = LAYERS * 12 * WIDTH**2 + VOCAB * WIDTH
    return 6 * n_matmul + 12 * LAYERS * CONTEXT * WIDTH


def build(peer: str) -> torch.nn.Module:
    """The same architecture in each library (dropout off everywhere). attnkit gets the Hugging
    Face model's weights through ``attnkit.from_pretrained``; x-transformers its own."""
    torch.manual_seed(0)
    if peer in ("attnkit", "hf"):
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        hf = GPT2LMHeadModel(cfg)
        if peer == "hf":
            return hf
        import attnkit

        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            return attnkit.from_pretrained(d)
    if peer == "xt":
        from x_transformers import Decoder, TransformerWrapper

        return TransformerWrapper(num_tokens=VOCAB, max_seq_len=CONTEXT, tie_embedding=True,
                                  attn_layers=Decoder(dim=WIDTH, depth=LAYERS, heads=HEADS, attn_flash=True))
    raise ValueError(peer)


def make_step(peer: str, model: torch.nn.Module, bf16: bool, optimizer=None):
    """One optimiser step on a fixed random batch. ``optimizer`` defaults to the fused AdamW
    (Hugging Face Trainer's default ``adamw_torch_fused``)."""
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (BATCH, CONTEXT))
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    model.train()

    def loss_fn():
        if peer == "xt":  # x-transformers returns logits; next-token loss as HF computes it
            logits = model(ids)
            labels = F.pad(ids[:, 1:], (0, 1), value=-100)
            return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return model(ids, labels=ids).loss

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
        opt.step()

    return step


def worker(peer: str, dtype: str, steps: int) -> dict:
    """Fresh-process run with the library's own defaults: median seconds per step."""
    model, optimizer = build(peer), None
    if peer == "attnkit":  # what attnkit's Trainer does: its allocator setting and optimiser
        from attnkit.allocator import keep_freed_memory
        from attnkit.training.optim import make_optimizer

        keep_freed_memory()
        optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1)
    step = make_step(peer, model, dtype == "bf16", optimizer)
    times = alternate({peer: step}, steps, warmup=1)[peer]
    return {"seconds": median(times), "times": times}


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    """Both comparisons; returns (markdown, headline numbers)."""
    from attnkit.allocator import keep_freed_memory

    tokens = BATCH * CONTEXT
    fpt = flops_per_token()
    repeats, fresh_rounds, fresh_steps = (3, 1, 2) if quick else (5, 2, 3)
    rows, head = [], {}
    for dtype in ("fp32", "bf16"):
        # Out of the box: fresh processes, alternating attnkit / HF.
        fresh: dict[str, list[float]] = {"attnkit": [], "hf": []}
        for _ in range(fresh_rounds):
            for peer in fresh:
                fresh[peer] += run_worker("bench_train.py", ["--worker", peer, "--dtype", dtype, "--steps", str(fresh_steps)])["times"]
        ootb = median(fresh["hf"]) / median(fresh["attnkit"])
        head[f"train_{dtype}_out_of_the_box"] = ootb
        rows.append([f"{dtype}, out of the box (fresh processes)", "attnkit vs HF",
                     f"{tokens / median(fresh['attnkit']):.0f}", f"{tokens / median(fresh['hf']):.0f}",
                     f"**{ootb:.2f}×**", "≥ 1.5×", f"{spread(fresh['attnkit'])} / {spread(fresh['hf'])}"])

    keep_freed_memory()  # same allocator settings for every peer from here on
    for dtype in ("fp32", "bf16"):
        steps = {peer: make_step(peer, build(peer), dtype == "bf16") for peer in PEERS}
        times = alternate(steps, repeats, warmup=1)
        t_ak = median(times["attnkit"])
        mfu = tokens * fpt / t_ak / hw["matmul"][dtype]
        head[f"train_{dtype}_mfu"] = mfu
        for peer in ("hf", "xt"):
            ratio = median(times[peer]) / t_ak
            head[f"train_{dtype}_vs_{peer}"] = ratio
            rows.append([f"{dtype}, same process", f"attnkit vs {PEERS[peer]}", f"{tokens / t_ak:.0f}",
                         f"{tokens / median(times[peer]):.0f}", f"**{ratio:.2f}×**", "≥ 1.1×" if peer == "hf" else "-",
                         f"{spread(times['attnkit'])} / {spread(times[peer])}"])
        rows.append([f"{dtype}, same process", "attnkit model FLOP/s vs matmul peak",
                     f"{tokens * fpt / t_ak / 1e9:.0f} GFLOP/s", f"{hw['matmul'][dtype] / 1e9:.0f} GFLOP/s",
                     f"**{100 * mfu:.0f}%**", "≥ 90%", spread(times["attnkit"])])
        del steps
    md = table(["setting", "comparison", "attnkit tokens/s", "peer tokens/s", "ratio", "target", "spread"], rows)
    note = (f"GPT {LAYERS}×{WIDTH} ({HEADS} heads), vocab {VOCAB}, context {CONTEXT}, batch {BATCH}, AdamW; "
            f"{fpt / 1e6:.0f} MFLOP per token. Same process: median of {repeats} steps after a warm-up step, peers "
            f"alternating; out of the box: {fresh_rounds} × {fresh_steps} steps in alternating fresh processes.")
    return note + "\n\n" + md, head


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=list(PEERS))
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.dtype, a.steps)))
        sys.exit(0)
    import hardware

    print(run(hardware.measure(a.quick), a.quick)[0])
