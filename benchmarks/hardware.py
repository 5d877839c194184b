"""What this machine can do: matmul peak (fp32, bf16) and matrix-vector weight bandwidth.

These are the ceilings the other benchmarks are measured against: training is matmul-bound,
and decoding one token at a time streams every weight through a matrix-vector product.
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

from timing import alternate, median, table

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def matmul_peak(dtype: torch.dtype, repeats: int) -> float:
    """FLOP/s of the fastest square matmul (sizes 1024..4096) by either of PyTorch's CPU gemm
    libraries: ``torch.mm`` (MKL for fp32, oneDNN for bf16) and oneDNN's linear (on AMD CPUs
    MKL's fp32 gemm takes an AVX2 path at about half of oneDNN's speed). The median of the
    repeats, like every throughput it is compared with: this VM's speed drifts up as well as
    down between runs, so the fastest repeat made an unstable ceiling."""
    best = 0.0
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        kernels = {"mm": lambda: torch.mm(a, b)}
        if HAS_ONEDNN:
            kernels["onednn"] = lambda: _onednn(a, b)
        t = min(median(ts) for ts in alternate(kernels, repeats, warmup=1).values())
        best = max(best, 2 * n**3 / t)
    return best


def gpt2_small_matrices() -> list[tuple[int, int]]:
    """(out, in) of every weight matrix GPT-2 small multiplies by per token: 12 layers of
    qkv, attention output, two feed-forward matrices, and the 50257-row tied LM head."""
    d, layers, vocab = 768, 12, 50257
    return [(3 * d, d), (d, d), (4 * d, d), (d, 4 * d)] * layers + [(vocab, d)]


def matvec_kernels(dtype: torch.dtype) -> tuple[int, dict]:
    """``(bytes, {name: kernel})``: the kernels PyTorch has for a batch-1 decoding step (``F.linear``
    with one row, ``torch.mv``, oneDNN's linear on plain and on packed weights), each streaming
    the weights of GPT-2 small's matrices once per call, and the bytes of those weights."""
    ws = [torch.randn(o, i).to(dtype) for o, i in gpt2_small_matrices()]
    xs = {i: torch.randn(i).to(dtype) for _, i in gpt2_small_matrices()}
    kernels = {
        "linear": lambda: [F.linear(xs[w.shape[1]][None], w) for w in ws],
        "mv": lambda: [torch.mv(w, xs[w.shape[1]]) for w in ws],
    }
    if HAS_ONEDNN:
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in ws]
        kernels["onednn"] = lambda: [_onednn(xs[w.shape[1]][None], w) for w in ws]
        kernels["onednn packed"] = lambda: [_onednn(xs[w.shape[1]][None], p) for w, p in zip(ws, packed)]
    return sum(w.numel() * w.element_size() for w in ws), kernels


def matvec_bandwidth(dtype: torch.dtype, repeats: int) -> float:
    """Bytes/s of weights streamed through GPT-2 small's matrices by one token: the ceiling of
    a batch-1 decoding step. The working set is the model's own size (495 MB fp32, 248 MB
    bf16), so the caches count exactly as they do when decoding. The fastest of
    :func:`matvec_kernels`, median of the repeats."""
    nbytes, kernels = matvec_kernels(dtype)
    times = alternate(kernels, repeats * 2, warmup=2)
    return nbytes / min(median(t) for t in times.values())


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(quick: bool = False) -> dict:
    """``{"matmul": {dtype: FLOP/s}, "matvec": {dtype: bytes/s}}`` (matvec over GPT-2 small's weights)."""
    repeats = 3 if quick else 5
    hw = {
        "matmul": {k: matmul_peak(d, repeats) for k, d in DTYPES.items()},
        "matvec": {k: matvec_bandwidth(d, repeats) for k, d in DTYPES.items()},
    }
    return hw


def report(hw: dict) -> str:
    rows = [[k, f"{hw['matmul'][k] / 1e9:.0f} GFLOP/s", f"{hw['matvec'][k] / 1e9:.1f} GB/s"] for k in DTYPES]
    return table(["dtype", "matmul peak (fastest of n=1024..4096)", "matrix-vector bandwidth (GPT-2 small weights, 1 token)"], rows)


def standalone(run) -> None:
    """``python benchmarks/bench_<name>.py [--quick]``: measure the machine, run one comparison,
    print its table."""
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    quick = p.parse_args().quick
    print(run(measure(quick), quick)[0])


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads")
    print(report(measure()))
