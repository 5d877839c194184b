"""Beam search sentences/s: attnkit's encoder-decoder Transformer vs Hugging Face's MarianMTModel.

The Marian model in the OPUS-MT shape (6 + 6 layers, 512 wide, 8 heads, 2048 feed-forward,
58,101-token vocabulary), random weights given to attnkit through ``attnkit.from_pretrained``.
A batch of 8 sources of 24 tokens, beam 4, 32 new tokens without EOS (every hypothesis runs
to the end), alternating calls, median of the repeats.
"""

from __future__ import annotations

import tempfile

import torch

from timing import alternate, median, spread, table

VOCAB, PAD, BATCH, SOURCE, NEW_TOKENS, BEAMS = 58101, 58100, 8, 24, 32, 4


def build_pair():
    import attnkit
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=VOCAB, d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                       decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                       max_position_embeddings=512, pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=0,
                       forced_eos_token_id=None, scale_embedding=True, activation_function="swish")
    hf = MarianMTModel(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ak = attnkit.from_pretrained(d).eval()
    hf.generation_config.eos_token_id = None  # every hypothesis makes all new tokens
    hf.generation_config.forced_eos_token_id = None
    return ak, hf


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    ak, hf = build_pair()
    torch.manual_seed(0)
    src = torch.randint(1, PAD, (BATCH, SOURCE))
    mask = torch.ones_like(src)
    kw = dict(attention_mask=mask, num_beams=BEAMS, max_new_tokens=NEW_TOKENS)
    out = {}

    def run_ak():
        out["ak"] = ak.generate(src, pad_token_id=PAD, eos_token_id=None, **kw)

    def run_unpacked():
        out["unpacked"] = ak.generate(src, pad_token_id=PAD, eos_token_id=None, pack_weights=False, **kw)

    def run_hf():
        out["hf"] = hf.generate(input_ids=src, do_sample=False, **kw)

    repeats = 3
    times = alternate({"attnkit": run_ak, "unpacked": run_unpacked, "hf": run_hf}, repeats, warmup=1)
    sps = {k: BATCH / median(v) for k, v in times.items()}
    ratio, unpacked = sps["attnkit"] / sps["hf"], sps["unpacked"] / sps["hf"]
    same = all(out[k].shape == out["hf"].shape and torch.equal(out[k], out["hf"]) for k in ("ak", "unpacked"))
    md = table(["model", "attnkit sentences/s", "attnkit unpacked sentences/s", "HF sentences/s",
                "ratio (default / unpacked)", "target", "same tokens", "spread (default / unpacked / HF)"],
               [["Transformer vs MarianMTModel, fp32, beam 4", f"{sps['attnkit']:.2f}", f"{sps['unpacked']:.2f}",
                 f"{sps['hf']:.2f}", f"**{ratio:.2f}×** / {unpacked:.2f}×", "≥ 2×", "yes" if same else "no",
                 f"{spread(times['attnkit'])} / {spread(times['unpacked'])} / {spread(times['hf'])}"]])
    note = (f"OPUS-MT shape (6+6 × 512, vocab {VOCAB}), batch {BATCH} × {SOURCE} source tokens, beam {BEAMS}, "
            f"{NEW_TOKENS} new tokens; median of {repeats} alternating calls after a warm-up; attnkit's default packs "
            "the weights for oneDNN at the start of each call (`pack_weights=\"auto\"`, packing time included), "
            "'unpacked' is `pack_weights=False`.")
    return note + "\n\n" + md, {"beam_vs_hf": ratio, "beam_unpacked_vs_hf": unpacked}


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
