"""Greedy decoding tokens/s: attnkit ``generate`` vs Hugging Face ``generate``, same weights.

GPT-2 small shape (124M, random weights given to both through ``attnkit.from_pretrained``),
a 16-token prompt, 128 new tokens, batch 1 and 8, fp32 and bf16 weights, no EOS (every run makes
all 128 tokens), alternating calls, median of the repeats. The batch-1 bound is one pass of the
weights through a matrix-vector product per token, with the fastest of
``hardware.matvec_kernels``, timed in the same alternating rounds as the decoding calls.

attnkit runs twice: with its defaults, which pack the weights for oneDNN at the start of every
call here (``pack_weights="auto"``, 128 new tokens; packing time included), and with
``pack_weights=False``.
"""

from __future__ import annotations

import copy
import tempfile

import torch

from hardware import matvec_kernels
from timing import alternate, median, spread, table

PROMPT, NEW_TOKENS = 16, 128
BOUND_PASSES = 16  # weight passes per timed call of a bound kernel
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build_pair():
    """HF ``GPT2LMHeadModel`` (GPT-2 small config) and the attnkit GPT loaded from its weights."""
    import attnkit
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    hf.generation_config.eos_token_id = None  # make every run produce all new tokens
    hf.generation_config.pad_token_id = 50256
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ak = attnkit.from_pretrained(d).eval()
    return ak, hf


def weight_bytes(model) -> int:
    """Bytes of the matrices a decoding step multiplies by (every linear layer and the LM head)."""
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, torch.nn.Linear))


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    ak32, hf32 = build_pair()
    repeats = 3
    rows, head = [], {}
    for dtype, dt in DTYPES.items():
        ak, hf = ak32.to(dt), hf32.to(dt)
        for batch in (1, 8):
            torch.manual_seed(batch)
            ids = torch.randint(0, 50257, (batch, PROMPT))
            mask = torch.ones_like(ids)
            out = {}

            def run_ak(n=NEW_TOKENS):
                out["ak"] = ak.generate(ids, max_new_tokens=n, attention_mask=mask, eos_token_id=None)

            def run_unpacked(n=NEW_TOKENS):
                out["unpacked"] = ak.generate(ids, max_new_tokens=n, attention_mask=mask, eos_token_id=None,
                                              pack_weights=False)

            def run_hf(n=NEW_TOKENS):
                out["hf"] = hf.generate(ids, max_new_tokens=n, attention_mask=mask, do_sample=False)

            run_ak(), run_unpacked(8), run_hf(8)  # warm-up (the default packs only for long calls)
            contenders = {"attnkit": run_ak, "unpacked": run_unpacked, "hf": run_hf}
            if batch == 1:  # the bound's kernels, timed in the same rounds: this VM's bandwidth drifts
                nbytes, kernels = matvec_kernels(dt)
                contenders.update({f"bound {k}": (lambda f=f: [f() for _ in range(BOUND_PASSES)]) for k, f in kernels.items()})
            times = alternate(contenders, repeats, warmup=0)
            same = torch.equal(out["ak"], out["hf"]) and torch.equal(out["unpacked"], out["hf"])
            tps = {k: batch * NEW_TOKENS / median(v) for k, v in times.items()}
            ratio, unpacked = tps["attnkit"] / tps["hf"], tps["unpacked"] / tps["hf"]
            head[f"generate_{dtype}_b{batch}_vs_hf"] = ratio
            head[f"generate_{dtype}_b{batch}_unpacked_vs_hf"] = unpacked
            share = "-"
            if batch == 1:  # tokens/s of a pure weight stream: the fastest kernel's bytes/s over the model's
                bandwidth = nbytes * BOUND_PASSES / min(median(v) for k, v in times.items() if k.startswith("bound"))
                bound = bandwidth / weight_bytes(ak)
                share = f"{100 * tps['attnkit'] / bound:.0f}% / {100 * tps['unpacked'] / bound:.0f}% (bound {bound:.0f} tok/s)"
                head[f"generate_{dtype}_b1_bound"] = tps["attnkit"] / bound
                head[f"generate_{dtype}_b1_unpacked_bound"] = tps["unpacked"] / bound
            target = "≥ 1.6× and ≥ 85% of bound" if batch == 1 else "≥ 1.4×"
            rows.append([dtype, batch, f"{tps['attnkit']:.1f}", f"{tps['unpacked']:.1f}", f"{tps['hf']:.1f}",
                         f"**{ratio:.2f}×** / {unpacked:.2f}×", share, target, "yes" if same else "no",
                         f"{spread(times['attnkit'])} / {spread(times['unpacked'])} / {spread(times['hf'])}"])
    md = table(["weights", "batch", "attnkit tokens/s", "attnkit unpacked tokens/s", "HF tokens/s",
                "ratio (default / unpacked)", "attnkit vs bandwidth bound (default / unpacked)", "target", "same tokens",
                "spread (default / unpacked / HF)"], rows)
    note = (f"GPT-2 small (124M), {PROMPT}-token prompt, {NEW_TOKENS} new tokens, greedy; median of {repeats} "
            "alternating calls after a warm-up; attnkit's default packs the weights for oneDNN at the start of "
            "each call (`pack_weights=\"auto\"`, packing time included), 'unpacked' is `pack_weights=False`. "
            f"The batch-1 bound streams the model's weights once per token with the fastest matrix-vector kernel, "
            f"timed ({BOUND_PASSES} passes per call) in the same alternating rounds, so it sees the same memory "
            "bandwidth (the ceilings table above is measured once, at the start). "
            "'same tokens': all three libraries produced identical ids (in bf16 the "
            "two libraries' matmul kernels round differently, so a near-tie between random-weight logits can flip).")
    return note + "\n\n" + md + "\n\n" + quantized_weights(ak32, hf32, repeats, head), head


def quantized_weights(ak, hf, repeats: int, head: dict) -> str:
    """Batch-1 greedy decoding with int8 and int4 weights (``attnkit.nn.quantize_int8``,
    ``quantize_int4``) next to bf16 weights, attnkit's and HF's (no issue-6 target)."""
    from attnkit.nn import quantize_int4, quantize_int8

    ak, hf = ak.to(torch.bfloat16), hf.to(torch.bfloat16)
    models = {"int8": quantize_int8(copy.deepcopy(ak)), "int4": quantize_int4(copy.deepcopy(ak)), "bf16": ak}
    ids = torch.randint(0, 50257, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    out = {}

    def decode(name):
        def run():
            out[name] = models[name].generate(ids, max_new_tokens=NEW_TOKENS, eos_token_id=None)
        return run

    def run_hf():
        hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)

    times = alternate({**{name: decode(name) for name in models}, "hf": run_hf}, repeats, warmup=1)
    tps = {k: NEW_TOKENS / median(v) for k, v in times.items()}
    rows = []
    for name in ("int8", "int4"):
        head[f"generate_{name}_b1_vs_bf16"] = tps[name] / tps["bf16"]
        same = float((out[name][0, PROMPT:] == out["bf16"][0, PROMPT:]).float().mean())
        rows.append([name, f"{tps[name]:.1f}", f"{tps['bf16']:.1f}", f"{tps['hf']:.1f}",
                     f"**{tps[name] / tps['bf16']:.2f}×**", f"{tps[name] / tps['hf']:.2f}×", f"{100 * same:.0f}%",
                     f"{spread(times[name])} / {spread(times['bf16'])} / {spread(times['hf'])}"])
    md = table(["weights", "attnkit tokens/s", "attnkit bf16 tokens/s", "HF bf16 tokens/s", "vs attnkit bf16",
                "vs HF bf16", "new tokens equal to bf16's", "spread (quantized / bf16 / HF)"], rows)
    return (f"Quantized weights at batch 1 (`attnkit.nn.quantize_int8`: a scale per output feature; `quantize_int4`: "
            f"groups of 32 inputs with a scale and an offset; bf16 activations), the same model and prompt shape, "
            f"median of {repeats} alternating calls after a warm-up; no target in issue 6 (for information). "
            "Quantization changes the logits, so tokens part from bf16's after a near-tie (int4 sooner).\n\n" + md)


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
