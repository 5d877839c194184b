"""The GPU side of issue 6's comparisons, on one CUDA device: attnkit vs Hugging Face with the
same weights, alternating calls, medians. Writes ``benchmarks/RESULTS-GPU.md``.

    python benchmarks/bench_gpu.py            # about 3 minutes on an H100/H200
    python benchmarks/bench_gpu.py --quick

Not part of ``make bench`` (CI and most machines have no GPU). What it measures:

* ceilings: a large bf16 and fp32 matmul (TF32 off) and a device-to-device copy;
* training tokens/s: GPT-2 small (124M), context 1024, batch 8, fused AdamW, bf16 autocast and
  fp32 (TF32 off), same process, steps alternating; model FLOP/s (6N + 12·L·T·d per token) as
  a share of the matmul ceiling;
* greedy decoding tokens/s: GPT-2 small, 16-token prompt, 128 new tokens, batch 1 and 8,
  fp32 and bf16 weights; batch 1 against the bound of reading every weight once per token at
  the copy bandwidth;
* beam search: the OPUS-MT-shaped Marian model, batch 8, beam 4, 32 new tokens;
* encoder: the all-MiniLM-L6-v2 shape (random weights), batch 32 × 128, fp32 and bf16;
* causal attention memory and time, forward + backward, 8 heads × 64, bf16, 1k..64k tokens.

Every timed call ends with ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import ROOT, alternate, median, spread, table  # noqa: E402

DEV = "cuda"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync_call(fn):
    def call():
        fn()
        torch.cuda.synchronize()
    return call


def ceilings(repeats: int) -> dict:
    """Matmul FLOP/s (n = 8192, random data) per dtype and copy bandwidth (bytes read + written)."""
    out = {}
    n = 8192
    for name, dt in DTYPES.items():
        a, b = torch.randn(n, n, device=DEV, dtype=dt), torch.randn(n, n, device=DEV, dtype=dt)
        t = median(alternate({"mm": sync_call(lambda: a @ b)}, repeats, warmup=2)["mm"])
        out[name] = 2 * n**3 / t
    src = torch.randn(2**30 // 4, device=DEV)
    dst = torch.empty_like(src)
    t = median(alternate({"copy": sync_call(lambda: dst.copy_(src))}, repeats * 2, warmup=2)["copy"])
    out["copy"] = 2 * src.numel() * 4 / t
    return out


def gpt2_pair(n_positions=1024, dropout=0.0):
    import attnkit
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=n_positions, resid_pdrop=dropout, embd_pdrop=dropout,
                                    attn_pdrop=dropout))
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 50256
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ak = attnkit.from_pretrained(d, device=DEV)
    return ak, hf.to(DEV)


def bench_train(hw: dict, repeats: int) -> tuple[str, dict]:
    layers, width, vocab, context, batch = 12, 768, 50257, 1024, 8
    n_matmul = layers * 12 * width**2 + vocab * width
    fpt = 6 * n_matmul + 12 * layers * context * width
    ak, hf = gpt2_pair()
    ids = torch.randint(0, vocab, (batch, context), device=DEV)
    rows, head = [], {}
    for dtype in ("bf16", "fp32"):
        steps = {}
        for name, model in (("attnkit", ak), ("hf", hf)):
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)

            def step(model=model, opt=opt, bf16=dtype == "bf16"):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(DEV, dtype=torch.bfloat16, enabled=bf16):
                    loss = model(ids, labels=ids).loss
                loss.backward()
                opt.step()

            steps[name] = sync_call(step)
        times = alternate(steps, repeats, warmup=2)
        t_ak, t_hf = median(times["attnkit"]), median(times["hf"])
        tokens = batch * context
        mfu = tokens * fpt / t_ak / hw[dtype]
        head[f"gpu_train_{dtype}_vs_hf"], head[f"gpu_train_{dtype}_mfu"] = t_hf / t_ak, mfu
        rows.append([dtype if dtype == "bf16" else "fp32 (TF32 off)", f"{tokens / t_ak:,.0f}", f"{tokens / t_hf:,.0f}",
                     f"**{t_hf / t_ak:.2f}×**", f"{100 * mfu:.0f}% / {100 * tokens * fpt / t_hf / hw[dtype]:.0f}%",
                     f"{spread(times['attnkit'])} / {spread(times['hf'])}"])
        del steps
    del ak, hf
    md = table(["precision", "attnkit tokens/s", "HF tokens/s", "ratio", "model FLOP/s of matmul ceiling (attnkit / HF)",
                "spread"], rows)
    return (f"GPT-2 small (124M), context {context}, batch {batch}, fused AdamW, dropout 0, same process, "
            f"median of {repeats} alternating steps after 2 warm-ups; {fpt / 1e6:.0f} MFLOP per token.\n\n" + md), head


def bench_generate(hw: dict, repeats: int) -> tuple[str, dict]:
    ak32, hf32 = gpt2_pair()
    ak32.eval(), hf32.eval()
    weight_bytes = sum(m.weight.numel() for m in ak32.modules() if isinstance(m, torch.nn.Linear))
    rows, head = [], {}
    for dtype, dt in DTYPES.items():
        ak, hf = ak32.to(dt), hf32.to(dt)
        for batch in (1, 8):
            torch.manual_seed(batch)
            ids = torch.randint(0, 50257, (batch, 16), device=DEV)
            mask = torch.ones_like(ids)
            out = {}

            def run_ak():
                out["ak"] = ak.generate(ids, max_new_tokens=128, attention_mask=mask, eos_token_id=None)

            def run_hf():
                out["hf"] = hf.generate(ids, max_new_tokens=128, attention_mask=mask, do_sample=False)

            times = alternate({"attnkit": sync_call(run_ak), "hf": sync_call(run_hf)}, repeats, warmup=1)
            tps = {k: batch * 128 / median(v) for k, v in times.items()}
            ratio = tps["attnkit"] / tps["hf"]
            head[f"gpu_generate_{dtype}_b{batch}_vs_hf"] = ratio
            bound = "-"
            if batch == 1:
                tok_bound = hw["copy"] / 2 / (weight_bytes * dt.itemsize)  # weights read once per token
                bound = f"{100 * tps['attnkit'] / tok_bound:.0f}% of {tok_bound:,.0f}"
            rows.append([dtype, batch, f"{tps['attnkit']:.0f}", f"{tps['hf']:.0f}", f"**{ratio:.2f}×**", bound,
                         "yes" if torch.equal(out["ak"], out["hf"]) else "no",
                         f"{spread(times['attnkit'])} / {spread(times['hf'])}"])
    del ak32, hf32
    md = table(["weights", "batch", "attnkit tokens/s", "HF tokens/s", "ratio", "attnkit vs weight-read bound (tok/s)",
                "same tokens", "spread"], rows)
    return (f"GPT-2 small, 16-token prompt, 128 new tokens, greedy, no EOS; median of {repeats} alternating calls "
            "after a warm-up. The bound reads every weight matrix once per token at the copy bandwidth.\n\n" + md), head


def bench_beam(repeats: int) -> tuple[str, dict]:
    import bench_beam as bb

    ak, hf = bb.build_pair()
    ak, hf = ak.to(DEV), hf.to(DEV)
    src = torch.randint(1, bb.PAD, (bb.BATCH, bb.SOURCE), device=DEV)
    kw = dict(attention_mask=torch.ones_like(src), num_beams=bb.BEAMS, max_new_tokens=bb.NEW_TOKENS)
    out = {}

    def run_ak():
        out["ak"] = ak.generate(src, pad_token_id=bb.PAD, eos_token_id=None, **kw)

    def run_hf():
        out["hf"] = hf.generate(input_ids=src, do_sample=False, **kw)

    times = alternate({"attnkit": sync_call(run_ak), "hf": sync_call(run_hf)}, repeats, warmup=1)
    sps = {k: bb.BATCH / median(v) for k, v in times.items()}
    ratio = sps["attnkit"] / sps["hf"]
    md = table(["model", "attnkit sentences/s", "HF sentences/s", "ratio", "same tokens", "spread"],
               [["Transformer vs MarianMTModel, fp32, beam 4", f"{sps['attnkit']:.1f}", f"{sps['hf']:.1f}",
                 f"**{ratio:.2f}×**", "yes" if torch.equal(out["ak"], out["hf"]) else "no",
                 f"{spread(times['attnkit'])} / {spread(times['hf'])}"]])
    return (f"OPUS-MT shape (6+6 × 512), batch {bb.BATCH} × {bb.SOURCE} source tokens, beam {bb.BEAMS}, "
            f"{bb.NEW_TOKENS} new tokens; median of {repeats} alternating calls.\n\n" + md), {"gpu_beam_vs_hf": ratio}


def bench_encoder(repeats: int) -> tuple[str, dict]:
    import attnkit
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    hf = BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                              intermediate_size=1536)).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ak32 = attnkit.from_pretrained(d, device=DEV)
    hf32 = hf.to(DEV)
    ids = torch.randint(1000, 30000, (32, 128), device=DEV)
    mask = torch.ones_like(ids)
    rows, head = [], {}
    for dtype, dt in DTYPES.items():
        ak, hf = ak32.to(dt), hf32.to(dt)
        out = {}
        calls = {"attnkit": lambda: out.update(ak=ak(ids, attention_mask=mask).last_hidden_state),
                 "hf": lambda: out.update(hf=hf(input_ids=ids, attention_mask=mask).last_hidden_state)}
        with torch.inference_mode():
            times = alternate({k: sync_call(f) for k, f in calls.items()}, repeats * 3, warmup=3)
        sps = {k: 32 / median(v) for k, v in times.items()}
        ratio = sps["attnkit"] / sps["hf"]
        head[f"gpu_encoder_{dtype}_vs_hf"] = ratio
        rows.append([dtype, f"{sps['attnkit']:,.0f}", f"{sps['hf']:,.0f}", f"**{ratio:.2f}×**",
                     f"{(out['ak'].float() - out['hf'].float()).abs().max().item():.1e}",
                     f"{spread(times['attnkit'])} / {spread(times['hf'])}"])
    md = table(["weights", "attnkit sequences/s", "HF sequences/s", "ratio", "max |Δ hidden|", "spread"], rows)
    return ("all-MiniLM-L6-v2 shape (6 × 384, random weights), batch 32 × 128 tokens, forward under "
            f"inference_mode; median of {repeats * 3} alternating calls.\n\n" + md), head


def bench_attention(quick: bool) -> tuple[str, dict]:
    from attnkit.nn import scaled_dot_product_attention

    rows, peaks = [], {}
    lengths = [1024, 4096, 16384] + ([] if quick else [65536])
    for n in lengths:
        q, k, v = (torch.randn(1, 8, n, 64, device=DEV, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()  # warm-up
        q.grad = k.grad = v.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peaks[n] = torch.cuda.max_memory_allocated() - before
        flops = 4 * n * n * 64 * 8 / 2 * 3.5  # causal: half the scores; backward ≈ 2.5× forward
        rows.append([n, f"{peaks[n] / 2**20:.0f} MiB", f"{1e3 * seconds:.1f} ms", f"{flops / seconds / 1e12:.0f}"])
        del q, k, v
    growth = (peaks[lengths[-1]] / peaks[lengths[0]]) / (lengths[-1] / lengths[0])
    md = table(["length", "peak rise over inputs", "fwd+bwd", "TFLOP/s (causal)"], rows)
    return (f"B=1, 8 heads × 64, bf16, `is_causal=True`, one forward + backward after a warm-up. Memory grew "
            f"{growth:.2f}× as fast as length from {lengths[0]} to {lengths[-1]} (1.00 = linear).\n\n" + md), \
        {"gpu_attention_growth_vs_linear": growth}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS-GPU.md"))
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device")
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    repeats = 3 if a.quick else 5
    t0 = time.time()
    hw = ceilings(repeats)
    sections = [("Ceilings", table(["what", "measured"], [
        ["bf16 matmul, 8192³", f"{hw['bf16'] / 1e12:.0f} TFLOP/s"],
        ["fp32 matmul, 8192³ (TF32 off)", f"{hw['fp32'] / 1e12:.1f} TFLOP/s"],
        ["device-to-device copy (read + write)", f"{hw['copy'] / 1e12:.2f} TB/s"]]))]
    heads = {}
    for title, fn in (("Training throughput", lambda: bench_train(hw, repeats)),
                      ("Greedy decoding", lambda: bench_generate(hw, repeats)),
                      ("Beam search (encoder-decoder)", lambda: bench_beam(repeats)),
                      ("Encoder throughput", lambda: bench_encoder(repeats)),
                      ("Causal attention, memory and time", lambda: bench_attention(a.quick))):
        md, head = fn()
        sections.append((title, md))
        heads.update(head)
        print(f"## {title}\n\n{md}\n", flush=True)
        torch.cuda.empty_cache()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# attnkit GPU benchmark results\n\nGenerated by `python benchmarks/bench_gpu.py{' --quick' if a.quick else ''}` "
              f"on {stamp} in {time.time() - t0:.0f} s.\n\n- GPU: {torch.cuda.get_device_name()}\n"
              f"- Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}\n")
    body = "\n\n".join(f"## {t}\n\n{m}" for t, m in sections)
    Path(a.out).write_text(header + "\n" + body + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
