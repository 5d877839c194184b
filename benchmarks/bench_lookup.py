"""Prompt lookup decoding: attnkit vs Hugging Face ``generate(prompt_lookup_num_tokens=10)``.

GPT-2 small (124M, random weights built by ``transformers``, given to attnkit through
``attnkit.from_pretrained``), fp32, one prompt of 200 tokens that repeats its first 100, 128
new tokens, greedy without EOS; plain greedy decoding of both libraries for reference. How
much prompt lookup gains over greedy decoding depends on how often the text repeats what came
before: random weights soon fall into loops, which it guesses well (an upper bound for a trained
model, which keeps fewer guesses except where it copies its input); the comparison with Hugging
Face's prompt lookup, which keeps the same guesses, does not depend on that. Alternating calls,
median of the repeats; the four outputs are compared.
"""

from __future__ import annotations

import tempfile

import torch

from timing import alternate, median, spread, table

NEW_TOKENS, LOOKUP = 128, 10


def build_pair():
    import attnkit
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    # Output projections drawn 4x wider than their init, so that greedy text varies (at
    # transformers' init it repeats one token, and every guess would be kept).
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("attn.c_proj.weight", "mlp.c_proj.weight")):
                p.normal_(0.0, 4.0 / p.shape[0] ** 0.5)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ak = attnkit.from_pretrained(d).eval()
    return ak, hf


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    ak, hf = build_pair()
    g = torch.Generator().manual_seed(0)
    half = torch.randint(0, 50257, (1, 100), generator=g)
    ids = torch.cat([half, half], dim=1)
    mask = torch.ones_like(ids)
    out, calls = {}, {}

    def count(model):
        forward = model.forward

        def counted(*a, **k):
            calls[model] = calls.get(model, 0) + 1
            return forward(*a, **k)
        return counted

    ak.forward = count(ak)

    def run_ak(lookup):
        def call():
            calls[ak] = 0
            out[("ak", lookup)] = ak.generate(ids, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                                              prompt_lookup_num_tokens=lookup)
            out[("passes", lookup)] = calls[ak]
        return call

    def run_hf(lookup):
        def call():
            out[("hf", lookup)] = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                                              prompt_lookup_num_tokens=lookup, eos_token_id=None, pad_token_id=0)
        return call

    repeats = 2 if quick else 3
    times = alternate({"ak lookup": run_ak(LOOKUP), "hf lookup": run_hf(LOOKUP), "ak greedy": run_ak(None),
                       "hf greedy": run_hf(None)}, repeats, warmup=1)
    tps = {k: NEW_TOKENS / median(v) for k, v in times.items()}
    same = all(torch.equal(out[k], out[("ak", None)]) for k in out if k[0] in ("ak", "hf"))
    ratio, gain = tps["ak lookup"] / tps["hf lookup"], tps["ak lookup"] / tps["ak greedy"]
    md = table(["decoding", "attnkit tokens/s", "HF tokens/s", "ratio", "attnkit forward passes", "same tokens",
                "spread"],
               [[f"prompt lookup ({LOOKUP} guesses)", f"{tps['ak lookup']:.1f}", f"{tps['hf lookup']:.1f}",
                 f"**{ratio:.2f}×**", f"{out[('passes', LOOKUP)]} for {NEW_TOKENS} tokens", "yes" if same else "no",
                 f"{spread(times['ak lookup'])} / {spread(times['hf lookup'])}"],
                ["greedy", f"{tps['ak greedy']:.1f}", f"{tps['hf greedy']:.1f}",
                 f"{tps['ak greedy'] / tps['hf greedy']:.2f}×", f"{out[('passes', None)]}", "yes" if same else "no",
                 f"{spread(times['ak greedy'])} / {spread(times['hf greedy'])}"]])
    note = (f"GPT-2 small, fp32, a 200-token prompt repeating its first 100 tokens, {NEW_TOKENS} new tokens, greedy; "
            f"median of {repeats} alternating calls after a warm-up. attnkit's prompt lookup is {gain:.2f}× its plain "
            "greedy decoding here, where random weights soon loop and most guesses are kept (an upper bound for a "
            "trained model); both libraries keep the same guesses.")
    return note + "\n\n" + md, {"lookup_vs_hf": ratio, "lookup_vs_greedy": gain}


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
