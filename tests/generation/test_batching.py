"""Continuous batching against the loops run alone: concurrent ``generate`` and ``stream`` calls on
``BatchedDecoding.model`` give each call the tokens it gets by itself (greedy and seeded sampling,
other prompt lengths and lengths, learned, rotary and ALiBi positions, windows), while their steps
share forward passes; a late loop leaves the batch without holding the others up, a closed one
gives up its place, and what batching cannot do is refused. The thread it decodes in (a
``ModelThread``) runs other calls one at a time, in that thread."""

import threading

import pytest
import torch

from attnkit import GPT, GPTConfig, InputError
from attnkit.generation import BatchedDecoding, ModelThread
from attnkit.generation import batching

V = 97
CONFIGS = {
    "learned": dict(),
    "rotary-gqa-window": dict(positional="rotary", n_kv_heads=2, sliding_window=6, norm="rmsnorm"),
    "alibi": dict(positional="alibi"),
}


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, n_layers=2, d_model=64, n_heads=4, n_positions=96, bos_token_id=None,
                    eos_token_id=None, **kw)
    model = GPT(cfg).eval()
    with torch.no_grad():  # large weights: sharp attention, so that a key or a mask out of place shows
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.4)
    return model


def in_threads(*calls, timeout: float = 120) -> list:
    """Run each call in its own thread, all started together; their results (an exception re-raised)."""
    results, start = [None] * len(calls), threading.Barrier(len(calls))

    def run(i):
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as e:  # re-raised by the test, in the main thread
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a decoding loop never finished"
    return results


def in_step(barrier: threading.Barrier, at: int):
    """A logits processor that makes its loop wait for the others at its ``at``-th step, so that
    the loops are all between steps at once (their next steps are then batched)."""
    calls = []

    def processor(ids, scores):
        calls.append(1)
        if len(calls) == at:
            barrier.wait(60)
        return scores

    return processor


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_concurrent_loops_get_the_tokens_each_gets_alone(kind):
    model = tiny(**CONFIGS[kind])
    batched = BatchedDecoding(model, max_batch_size=8, wait=1.0)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, V, (1, n), generator=g) for n in (3, 11, 6, 17, 1)]
    lengths = [25, 9, 40, 18, 30]  # other lengths: rows leave while others decode
    sync = threading.Barrier(len(prompts))

    def settings(i):  # odd rows sampled from their own seed, even rows greedy
        return dict(max_new_tokens=lengths[i], do_sample=bool(i % 2), temperature=1.3, eos_token_id=None,
                    generator=torch.Generator().manual_seed(10 + i) if i % 2 else None)

    got = in_threads(*[lambda i=i: batched.model.generate(prompts[i], **settings(i),
                                                          logits_processor=[in_step(sync, 2)])
                       for i in range(len(prompts))])
    for i, out in enumerate(got):
        assert torch.equal(out, model.generate(prompts[i], **settings(i))), f"row {i}"
    stats = batched.stats
    assert stats["largest"] == len(prompts)  # every loop was in one forward pass at some step
    assert stats["tokens"] == sum(lengths) - len(prompts)  # one row per token after each prefill
    assert stats["steps"] < stats["tokens"] / 2
    batched.close()


def burst(batched: BatchedDecoding, prompts: list) -> tuple[list, list]:
    """Prefill ``prompts`` as the worker does prompts that arrive together: ``(slots, sequences)``
    (hold the slots: a freed one gives up its place)."""
    slots = [batched.model.prepare_generation(p, None, 1, 5)[2] for p in prompts]
    seqs = [slot.seq for slot in slots]
    for s, p in zip(seqs, prompts):
        s.input = p
    with torch.inference_mode():
        batched._prefill(seqs)
    return slots, seqs


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_prompts_that_arrive_together_are_fed_as_one_padded_batch(kind):
    """A burst's prompts (other lengths) in one left-padded pass: each gets the next-token logits
    and the keys and values it gets alone (the rows of the batch's cache after its padding)."""
    model = tiny(**CONFIGS[kind])
    batched = BatchedDecoding(model)
    prompts = [torch.randint(0, V, (1, n), generator=torch.Generator().manual_seed(n)) for n in (7, 2, 12)]
    slots, seqs = burst(batched, prompts)
    with torch.inference_mode():
        for s, p in zip(seqs, prompts):
            cache = model.new_cache(1, p.shape[1] + 4).keep_all()  # every position, as the batch holds
            alone = model.generation_step(p, None, cache)
            torch.testing.assert_close(s.logits, alone, atol=1e-5, rtol=1e-5)
            for (k, v), c in zip(s.kv, cache.self_attn):
                torch.testing.assert_close(k, c.keys_values()[0], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(v, c.keys_values()[1], atol=1e-5, rtol=1e-5)
    assert batched.stats["prefill_batches"] == 1 and batched.stats["prefills"] == 3


def test_a_loop_that_is_late_leaves_the_batch_and_rejoins_with_its_own_tokens():
    """Loop A stops taking tokens until loop B has finished: B must finish without A (else A's
    wait runs out), and A then continues from its own keys and values."""
    model = tiny()
    batched = BatchedDecoding(model, wait=0.02)
    a, b = torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9, 10, 11, 12]])
    b_done = threading.Event()

    def loop_a():
        tokens = []
        for step, t in enumerate(batched.model.stream(a, max_new_tokens=30, eos_token_id=None)):
            tokens.append(int(t))
            if step == 3:
                assert b_done.wait(60), "B was held up by A"
        return tokens

    def loop_b():
        out = batched.model.generate(b, max_new_tokens=20, eos_token_id=None)
        b_done.set()
        return out

    tokens_a, out_b = in_threads(loop_a, loop_b)
    assert not isinstance(tokens_a, Exception), tokens_a
    assert tokens_a == model.generate(a, max_new_tokens=30, eos_token_id=None)[0, 3:].tolist()
    assert torch.equal(out_b, model.generate(b, max_new_tokens=20, eos_token_id=None))
    assert batched.stats["left"] >= 1
    batched.close()


def test_a_closed_loop_gives_up_its_place():
    """With room for one sequence, a second loop can only start once the first one's generator
    is closed (a client that went away)."""
    model = tiny()
    batched = BatchedDecoding(model, max_batch_size=1)
    first = batched.model.stream(torch.tensor([[1, 2]]), max_new_tokens=50, eos_token_id=None)
    next(first), next(first)
    first.close()
    (out,) = in_threads(lambda: batched.model.generate(torch.tensor([[3, 4]]), max_new_tokens=5, eos_token_id=None),
                        timeout=60)
    assert torch.equal(out, model.generate(torch.tensor([[3, 4]]), max_new_tokens=5, eos_token_id=None))
    batched.close()


def test_max_batch_size_caps_the_rows_of_a_step():
    model = tiny()
    batched = BatchedDecoding(model, max_batch_size=2, wait=1.0)
    prompts = [torch.tensor([[i + 1, i + 2]]) for i in range(4)]
    got = in_threads(*[lambda p=p: batched.model.generate(p, max_new_tokens=12, eos_token_id=None) for p in prompts])
    for p, out in zip(prompts, got):
        assert torch.equal(out, model.generate(p, max_new_tokens=12, eos_token_id=None))
    assert batched.stats["largest"] == 2 and batched.stats["prefills"] == 4
    batched.close()


def test_a_prompt_the_model_refuses_fails_its_own_loop_only():
    model = tiny()  # learned positions: 96 at most
    batched = BatchedDecoding(model)
    long, short = torch.zeros(1, 90, dtype=torch.long), torch.tensor([[4, 5, 6]])
    bad, good = in_threads(lambda: batched.model.generate(long, max_new_tokens=20, eos_token_id=None),
                           lambda: batched.model.generate(short, max_new_tokens=10, eos_token_id=None))
    assert isinstance(bad, InputError) and "context" in str(bad)
    assert torch.equal(good, model.generate(short, max_new_tokens=10, eos_token_id=None))
    batched.close()
    with pytest.raises(InputError, match="closed"):
        batched.model.generate(short, max_new_tokens=3, eos_token_id=None)


def test_an_owning_thread_runs_every_forward_pass_until_closed():
    """own() + run_forever(): the steps of loops in other threads run in the owner (the thread
    where PyTorch's CPU thread pool is), none starts a worker; close() from a loop ends it."""
    model = tiny()
    batched = BatchedDecoding(model)
    ran_in, step = set(), model.generation_step

    def recording_step(*args):
        ran_in.add(threading.current_thread().name)
        return step(*args)

    model.generation_step = recording_step
    batched.own()
    prompts = [torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5]])]
    results = []

    def loops():
        try:
            results.extend(in_threads(*[lambda p=p: batched.model.generate(p, max_new_tokens=6, eos_token_id=None)
                                        for p in prompts]))
        finally:
            batched.close()

    client = threading.Thread(target=loops)
    client.start()
    batched.run_forever()  # returns once the loops' thread closes it
    client.join(60)
    del model.generation_step
    assert ran_in == {threading.current_thread().name}
    for p, out in zip(prompts, results):
        assert torch.equal(out, model.generate(p, max_new_tokens=6, eos_token_id=None))
    other = BatchedDecoding(model)
    other.own()
    refused = []
    t = threading.Thread(target=lambda: refused.append(pytest.raises(InputError, other.own)))
    t.start()
    t.join()
    assert refused and "already has a worker" in str(refused[0].value)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_a_prompt_that_starts_as_a_finished_sequence_did_feeds_only_the_rest(kind):
    """A chat's turns one after the other: each prompt continues the last output (or rewrites its
    end); the prefill copies the kept prefix (all but the last output token, or up to the edit) and
    the tokens are those the model makes alone. The kept sequence a longer one continues goes."""
    model = tiny(**CONFIGS[kind])
    batched = BatchedDecoding(model)
    g = torch.Generator().manual_seed(3)
    prompt, spared, outs = torch.randint(0, V, (1, 10), generator=g), 0, []
    for turn in range(4):
        out = batched.model.generate(prompt, max_new_tokens=8, eos_token_id=None)
        outs.append(out)
        assert torch.equal(out, model.generate(prompt, max_new_tokens=8, eos_token_id=None)), turn
        assert batched.stats["prefix_hits"] == turn and batched.stats["prefix_tokens"] == spared, turn
        kept = out[:, :-3] if turn == 1 else out  # the end of the reply re-encoded otherwise
        prompt = torch.cat([kept, torch.randint(0, V, (1, 4), generator=g)], 1)
        spared += kept.shape[1] - (turn != 1)  # the last output token was never fed
    batched.model.generate(torch.tensor([[1]]), max_new_tokens=1, eos_token_id=None)  # the last turn is kept
    # sequences a later one continues went; the one whose end turn 2 rewrote stays
    assert [torch.equal(ids, o[0, :-1]) for (ids, _), o in zip(batched.prefixes.entries, (outs[1], outs[3]))] == \
        [True, True]
    spared, again = batched.stats["prefix_tokens"], outs[3][:, :12]  # the start of a kept sequence
    assert torch.equal(batched.model.generate(again, max_new_tokens=3, eos_token_id=None),
                       model.generate(again, max_new_tokens=3, eos_token_id=None))
    assert batched.stats["prefix_tokens"] - spared == 11  # its last token is fed, for its logits
    batched.close()


def test_a_burst_feeds_new_prompts_together_and_a_continued_one_from_its_prefix():
    model = tiny()
    batched = BatchedDecoding(model)
    first = batched.model.generate(torch.tensor([[3, 1, 4, 1, 5]]), max_new_tokens=4, eos_token_id=None)
    batched.model.generate(torch.tensor([[9]]), max_new_tokens=1, eos_token_id=None)  # the worker keeps `first`
    prompts = [torch.tensor([[7, 7, 8]]), torch.cat([first, torch.tensor([[2, 6]])], 1), torch.tensor([[6, 5]])]
    slots, seqs = burst(batched, prompts)
    with torch.inference_mode():
        for s, p in zip(seqs, prompts):
            alone = model.generation_step(p, None, model.new_cache(1, p.shape[1] + 4))
            torch.testing.assert_close(s.logits, alone, atol=1e-5, rtol=1e-5)
            assert s.error is None and s.length == p.shape[1] and torch.equal(torch.cat(s.tokens), p[0])
    assert batched.stats["prefill_batches"] == 1 and batched.stats["prefills"] == 2 + 3
    assert batched.stats["prefix_hits"] == 1 and batched.stats["prefix_tokens"] == first.shape[1] - 1
    batched.close()


def test_a_prompt_a_burst_holds_twice_is_fed_once():
    """A request's ``n`` choices arrive with the same prompt: the first is fed (with the burst's
    other prompts), the others take its keys, values and logits (their own copy of the logits)."""
    model = tiny()
    batched = BatchedDecoding(model)
    p, q = torch.tensor([[3, 1, 4, 1, 5, 9]]), torch.tensor([[2, 7]])
    slots, seqs = burst(batched, [p, q, p, p])
    with torch.inference_mode():
        alone = model.generation_step(p, None, model.new_cache(1, 10))
    for s in seqs[2:]:
        assert s.error is None and s.length == 6 and s.reused == 6 and torch.equal(torch.cat(s.tokens), p[0])
        torch.testing.assert_close(s.logits, alone, atol=1e-5, rtol=1e-5)
        assert s.logits is not seqs[0].logits and all(k is k0 for (k, _), (k0, _) in zip(s.kv, seqs[0].kv))
    assert batched.stats["prefills"] == 2 and batched.stats["prefill_batches"] == 1
    assert batched.stats["prefix_hits"] == 2 and batched.stats["prefix_tokens"] == 12
    batched.close()


def test_a_sequence_that_ends_while_others_decode_is_kept_from_the_shared_cache():
    """B finishes while A still decodes (B's keys and values are a row of the batch's cache): a
    prompt continuing B reuses them, one continuing A too; others share nothing; with a budget
    for one sequence, the older goes."""
    model = tiny(positional="rotary")
    batched = BatchedDecoding(model, wait=1.0)
    a, b = torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9, 10, 11, 12]])
    sync = threading.Barrier(2)
    out_a, out_b = in_threads(
        lambda: batched.model.generate(a, max_new_tokens=30, eos_token_id=None, logits_processor=[in_step(sync, 2)]),
        lambda: batched.model.generate(b, max_new_tokens=8, eos_token_id=None, logits_processor=[in_step(sync, 2)]))
    assert batched.stats["largest"] == 2  # they decoded together: B ended as a row of the batch
    for out in (out_b, out_a):
        spared = batched.stats["prefix_tokens"]
        prompt = torch.cat([out, torch.tensor([[1, 2, 3]])], 1)
        got = batched.model.generate(prompt, max_new_tokens=5, eos_token_id=None)
        assert torch.equal(got, model.generate(prompt, max_new_tokens=5, eos_token_id=None))
        assert batched.stats["prefix_tokens"] - spared == out.shape[1] - 1
    size = batched.prefixes._bytes(batched.prefixes.entries[-1][1])
    batched.prefixes.budget = size + size // 4  # one of the two continuations kept: the newest
    batched.model.generate(torch.tensor([[40, 41]]), max_new_tokens=1, eos_token_id=None)  # A's continuation kept
    assert [len(ids) for ids, _ in batched.prefixes.entries] == [out_a.shape[1] + 3 + 5 - 1]
    batched.close()

    off = BatchedDecoding(model, prefix_cache_bytes=0)
    first = off.model.generate(b, max_new_tokens=4, eos_token_id=None)
    off.model.generate(torch.cat([first, b], 1), max_new_tokens=4, eos_token_id=None)
    assert off.stats["prefix_hits"] == 0 and not off.prefixes.entries
    off.close()


def test_what_batching_cannot_run_is_refused():
    model = tiny()
    batched = BatchedDecoding(model)
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(InputError, match="without beams"):
        batched.model.generate(ids, num_beams=2, max_new_tokens=3)
    with pytest.raises(InputError, match="one unpadded sequence"):
        batched.model.generate(torch.tensor([[1, 2], [3, 4]]), max_new_tokens=3)
    with pytest.raises(InputError, match="one unpadded sequence"):
        batched.model.generate(ids, attention_mask=torch.tensor([[0, 1, 1]]), max_new_tokens=3)
    with pytest.raises(InputError, match="one token per step"):
        batched.model.generate(ids, prompt_lookup_num_tokens=2, max_new_tokens=3)
    with pytest.raises(InputError, match="max_batch_size"):
        BatchedDecoding(model, max_batch_size=0)
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="prefix_cache_bytes"):
            BatchedDecoding(model, prefix_cache_bytes=bad)
    from attnkit import Transformer, TransformerConfig

    with pytest.raises(InputError, match="decoder-only"):
        BatchedDecoding(Transformer(TransformerConfig(vocab_size=20, d_model=16, n_heads=2, d_ff=32,
                                                      n_encoder_layers=1, n_decoder_layers=1)))
    batched.close()


def test_a_model_thread_runs_calls_one_at_a_time_in_its_thread(monkeypatch):
    """Calls from several threads run in the model thread, never two at once, each caller getting
    its own result or error; a call made inside a call runs at once; an idle worker ends and the
    next call starts another; an owner's run_forever runs them in the owning thread until close,
    after which calls are refused."""
    monkeypatch.setattr(batching, "IDLE_SECONDS", 0.2)
    runner, running, most, ran_in = ModelThread(), [0], [0], []
    lock = threading.Lock()

    def work(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        ran_in.append(threading.current_thread().name)
        torch.randn(64, 64) @ torch.randn(64, 64)  # time for the others to arrive
        with lock:
            running[0] -= 1
        if i == 3:
            raise ValueError("call 3 fails")
        return runner.call(lambda: i * i)  # nested: runs at once in the model thread

    results = in_threads(*[lambda i=i: runner.call(lambda: work(i)) for i in range(6)])
    assert results[:3] + results[4:] == [0, 1, 4, 16, 25]
    assert isinstance(results[3], ValueError) and str(results[3]) == "call 3 fails"
    assert most[0] == 1 and set(ran_in) == {batching.WORKER_NAME}
    first = runner._worker
    first.join(5)  # idle: the worker ends
    assert not first.is_alive() and runner._worker is None
    assert runner.call(lambda: threading.current_thread().name) == batching.WORKER_NAME
    assert runner._worker is not first
    runner.close()
    with pytest.raises(InputError, match="ModelThread was closed"):
        runner.call(lambda: 1)

    owned = ModelThread()
    owned.own()
    names = []

    def client():
        try:
            names.extend(in_threads(*[lambda: owned.call(lambda: threading.current_thread().name)] * 3))
        finally:
            owned.close()

    t = threading.Thread(target=client)
    t.start()
    owned.run_forever()  # returns once the client closes it
    t.join(30)
    assert names == [threading.current_thread().name] * 3


def test_calls_run_in_the_batching_thread_between_steps():
    """A call handed to a BatchedDecoding runs in the thread that runs its forward passes, while
    loops decode, and they still get their own tokens."""
    model = tiny()
    batched = BatchedDecoding(model)
    prompts = [torch.tensor([[3, 1, 4, 1, 5]]), torch.tensor([[2, 7]])]
    step_threads, call_threads = set(), []
    step = model.generation_step

    def recording_step(*args):
        step_threads.add(threading.current_thread().name)
        return step(*args)

    model.generation_step = recording_step
    try:
        results = in_threads(*[lambda p=p: batched.model.generate(p, max_new_tokens=12, eos_token_id=None)
                               for p in prompts],
                             *[lambda: batched.call(lambda: call_threads.append(threading.current_thread().name)
                                                    or model(prompts[0]).logits)] * 3)
    finally:
        del model.generation_step
        batched.close()
    assert step_threads == set(call_threads) == {batching.WORKER_NAME} and len(call_threads) == 3
    for p, out in zip(prompts, results):
        assert torch.equal(out, model.generate(p, max_new_tokens=12, eos_token_id=None))
    assert torch.allclose(results[2], model(prompts[0]).logits)
