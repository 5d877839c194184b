"""Continuous batching: concurrent decoding loops that share each forward pass.

Every caller keeps its own decoding loop — :func:`~attnkit.generation.stream`, ``generate`` or a
:class:`~attnkit.generation.text.TextStream`, with its own sampling settings, processors, stop
strings, seed and length — and passes ``batched.model`` where it would pass the model. The
decoding steps of those loops meet in one worker thread, which runs every sequence waiting for
its next token through one forward pass (iteration-level scheduling, Yu et al. 2022, "Orca"):
eight requests at once cost about one batch of eight per token instead of eight batches of one,
and a request that arrives while others decode joins them at their next step.

How. A new sequence's prompt runs into a cache of its own (its prefill; prompts that arrive
together run as one left-padded batch, and each keeps its rows of that cache). The sequences
then decode as one left-padded batch, as ``generate`` decodes a padded batch: their keys and
values right-aligned in a shared cache, the columns before each one's first token masked, its
positions counted from that token. When sequences join or leave, the shared cache is rebuilt
for the rows of the next step (columns that no row uses any more are dropped). A loop that is
not back for its next step within ``wait`` seconds (its client reads slowly) leaves the batch
with its keys and values and joins again when it returns, so it never holds the others up for
longer. At most ``max_batch_size`` sequences hold a cache at once; a new one waits for a place
before its prefill.

Prefix caching. The keys and values of finished sequences are kept (up to
``prefix_cache_bytes``, the least recently used dropped first), with the tokens they were fed:
a new prompt that starts with one of them (a chat's next turn, which repeats the conversation; a
shared system prompt or document) copies the longest shared prefix and feeds only the rest (vLLM's
automatic prefix caching, at the granularity of whole sequences).

A sequence's tokens are those its loop makes alone, up to float rounding (a row of a batch goes
through kernels sized for the batch; greedy decoding can differ where two tokens tie to the
last bits). Decoder-only models (every GPT-class model), one sequence per loop: beams, a padded
prompt, prompt lookup and assistant models are refused by :attr:`BatchedDecoding.model`, and so
are models that refeed their cache (LongRoPE past its original context).

The thread that runs the forward passes is a :class:`ModelThread`, which runs other work on the
model too (:meth:`ModelThread.call`, between two steps): the server's embeddings, and with a model
that is not batched, every request's decoding.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter

import torch

from attnkit.errors import InputError
from attnkit.generation.prompt_cache import reusable_prefix
from attnkit.nn.cache import DecoderCache

IDLE_SECONDS = 5.0  # the worker thread ends after this long with no sequence
WORKER_NAME = "attnkit-batching"


class _Sequence:
    """One decoding loop as the worker sees it."""

    def __init__(self, cache: DecoderCache, max_len: int):
        self.cache: DecoderCache | None = cache  # its own cache, until its prefill has run
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (1, H, length, D), out of the batch
        self.length = 0  # positions it holds
        self.tokens: list[torch.Tensor] = []  # the ids fed so far, (n,) each: the prompt, then one per step
        self.reused = 0  # the prompt positions copied from a kept sequence
        self.max_len = max_len  # positions it may hold
        self.input: torch.Tensor | None = None  # the tokens waiting for a step
        self.logits: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.released = False
        self.broken = False  # its keys and values were lost with a failed step


class _Slot:
    """What a loop holds as its ``cache``; when the loop ends (or its generator is closed) and
    this is freed, its sequence gives up its place."""

    def __init__(self, engine: BatchedDecoding, seq: _Sequence):
        self.seq = seq
        weakref.finalize(self, engine._release, seq)

    @property
    def reused(self) -> int:
        """The prompt positions its prefill copied from a kept sequence (0 before the prefill)."""
        return self.seq.reused


class BatchedModel:
    """The model as the loops of one :class:`BatchedDecoding` see it: its decoding steps are
    batched with the other loops'; everything else is the model's (attributes pass through)."""

    def __init__(self, engine: BatchedDecoding):
        self._engine, self._model = engine, engine.base

    def __getattr__(self, name):
        return getattr(self._model, name)

    def prepare_generation(self, input_ids, attention_mask, expand: int, max_new_tokens: int):
        if expand != 1 or input_ids.shape[0] != 1 or (attention_mask is not None and not bool(attention_mask.all())):
            raise InputError("batched decoding runs one unpadded sequence per loop, without beams; give each prompt "
                             "its own loop (thread)")
        ids, mask, cache = self._model.prepare_generation(input_ids, attention_mask, 1, max_new_tokens)
        # every position: the shared cache is put together from the rows' columns
        return ids, mask, _Slot(self._engine, _Sequence(cache.keep_all(), ids.shape[1] + max_new_tokens - 1))

    def generation_step(self, input_ids, attention_mask, cache: _Slot) -> torch.Tensor:
        return self._engine._run(cache.seq, input_ids)

    def generation_logits(self, input_ids, attention_mask, cache):
        raise InputError(_GUESSES)

    def stream(self, input_ids: torch.Tensor, **kwargs):
        """:func:`attnkit.generation.stream` on the batch (the engine's owner packs weights, not each loop)."""
        from attnkit.generation import stream

        return stream(self, input_ids, **_batchable(kwargs))

    def generate(self, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        """:func:`attnkit.generation.generate` on the batch: greedy or sampled, one sequence."""
        from attnkit.generation import generate

        return generate(self, input_ids, **_batchable(kwargs))


_GUESSES = "batched decoding takes one token per step: no prompt lookup or assistant model"


def _batchable(kwargs: dict) -> dict:
    """A loop's decoding arguments, checked; weights are packed by the engine's owner, not per loop."""
    if kwargs.get("prompt_lookup_num_tokens") is not None or kwargs.get("assistant_model") is not None:
        raise InputError(_GUESSES)
    return {"pack_weights": False, **kwargs}


class _Job:
    """A call handed to a :class:`ModelThread`."""

    def __init__(self, fn):
        self.fn, self.result, self.error = fn, None, None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # the caller's error, raised in its thread
            self.error = e
            if not isinstance(e, Exception):  # Ctrl-C or an exit stops the thread as well
                raise
        finally:
            self.ready.set()

    def wait(self):
        """The call's result (its error raised here), once it has run."""
        self.ready.wait()
        if self.error is not None:
            raise self.error
        return self.result


class ModelThread:
    """One thread that runs a model's work for callers in other threads, one call at a time.

    Which thread computes matters on CPU: PyTorch's OpenMP keeps a pool of worker threads per
    thread that has run parallel work, and once a second pool exists each small parallel region
    waits for sleeping workers (a bf16 GPT-2-small decoding step takes 1.5× as long, an fp32
    translation Transformer's 1.4-1.6×: ``benchmarks/bench_serve.py``). The thread that loaded
    the model (the main one) already has a pool: :meth:`own` + :meth:`run_forever` there make it
    this thread (``attnkit serve`` does, and runs HTTP elsewhere). Without an owner a worker thread starts on the first call and ends after
    ``IDLE_SECONDS`` without work.

    :meth:`call` runs a function there and returns its result; :meth:`submit` hands it over
    without waiting. :meth:`close` stops the thread; calls still waiting get an error.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._jobs: list[_Job] = []
        self._closed = False
        self._worker: threading.Thread | None = None  # an owner, or a worker started by the first call

    def own(self) -> None:
        """Make the calling thread the one that runs the work: calls wait for its
        :meth:`run_forever` instead of starting a worker thread. Call before any call arrives."""
        with self._cond:
            if self._worker is not None and self._worker is not threading.current_thread():
                raise InputError(f"this {type(self).__name__} already has a worker thread")
            self._worker = threading.current_thread()

    def run_forever(self) -> None:
        """Run the work in the calling thread until :meth:`close` (from another thread)."""
        self.own()
        self._work(forever=True)

    def close(self) -> None:
        """Stop the thread; work still waiting gets an error, later calls too."""
        with self._cond:
            self._closed = True
            worker = self._worker
            self._fail_pending(InputError(f"this {type(self).__name__} was closed"))
            self._cond.notify_all()
        if worker is not None and worker.name == WORKER_NAME and worker is not threading.current_thread():
            worker.join()  # a thread of ours; an owner's run_forever returns by itself

    def submit(self, fn) -> _Job:
        """Hand ``fn()`` to the thread (after the work before it); ``.wait()`` on the returned job
        gives its result or raises its error."""
        job = _Job(fn)
        with self._cond:
            if self._closed:
                raise InputError(f"this {type(self).__name__} was closed")
            self._jobs.append(job)
            self._start()
        return job

    def call(self, fn):
        """``fn()`` run in the thread: its result, or its error raised here. From the thread
        itself (a call inside a call), it runs at once."""
        if threading.current_thread() is self._worker:
            return fn()
        return self.submit(fn).wait()

    def _start(self) -> None:
        """Wake the thread for new work, starting a worker if there is none (under the lock)."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name=WORKER_NAME, daemon=True)
            self._worker.start()
        self._cond.notify_all()

    def _fail_pending(self, error: BaseException) -> None:
        for job in self._jobs:
            job.error = error
            job.ready.set()
        self._jobs.clear()

    # what the work loop asks; BatchedDecoding adds its decoding steps
    def _has_work(self) -> bool:
        return bool(self._jobs)

    def _busy(self) -> bool:
        """Whether the thread holds state that keeps it alive while idle."""
        return bool(self._jobs)

    def _take(self):
        jobs, self._jobs = self._jobs, []
        return jobs

    def _do(self, jobs) -> None:
        for job in jobs:
            job.run()

    def _work(self, forever: bool = False) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._closed or self._has_work(), timeout=IDLE_SECONDS) \
                        and not self._busy() and not forever:
                    self._worker = None  # idle: an unused one keeps no thread (the next call starts one)
                    return
                if self._closed:
                    return self._fail_pending(InputError(f"this {type(self).__name__} was closed"))
                work = self._take()
            self._do(work)


class _Prefixes:
    """The keys and values of finished sequences with the token ids they were fed, up to
    ``budget`` bytes, the least recently used dropped first (worker thread only)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.entries: list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]] = []  # oldest first

    @staticmethod
    def _bytes(kv) -> int:
        return sum(k.nbytes + v.nbytes for k, v in kv)

    def add(self, ids: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep a sequence; the kept ones it starts with go (it holds what they did, and more)."""
        if self._bytes(kv) > self.budget:
            return
        n = len(ids)
        self.entries = [(i, e) for i, e in self.entries if not (len(i) <= n and torch.equal(ids[:len(i)], i))]
        self.entries.append((ids, kv))
        while sum(self._bytes(e) for _, e in self.entries) > self.budget:
            self.entries.pop(0)

    def find(self, prompt: torch.Tensor) -> tuple[int, list] | None:
        """``(positions, keys and values)`` of the kept sequence sharing the longest prefix with
        ``prompt`` (at most all but its last token, which is fed for its logits), or None."""
        best, at = 0, None
        for j, (ids, _) in enumerate(self.entries):
            shared = reusable_prefix(ids, prompt)
            if shared > best:
                best, at = shared, j
        if at is None:
            return None
        self.entries.append(self.entries.pop(at))  # used: the most recent
        return best, self.entries[-1][1]


class BatchedDecoding(ModelThread):
    """Decode the sequences of concurrent loops together (see the module doc).

    ``model``: a decoder-only model in eval mode. ``max_batch_size``: sequences holding a cache
    at once. ``wait``: how long (seconds) a step waits for a loop of the batch that is not back
    yet before it runs without it. ``prefix_cache_bytes``: the most memory the keys and values
    of finished sequences keep for later prompts that start as they did (0: none). Pass
    :attr:`model` to the loops; :meth:`close` stops the worker.
    ``stats`` counts ``steps`` (batched forward passes), ``tokens`` (rows over those steps),
    ``prefills`` (and ``prefill_batches``: passes that fed several prompts; ``prefix_hits`` and
    ``prefix_tokens``: prefills that started from a kept prefix or took a prompt another sequence of
    the burst read, and the prompt tokens that spared),
    ``rebuilds`` of the shared cache, ``left`` (loops that left the batch while
    still decoding) and ``largest`` (the most rows in one step).
    """

    def __init__(self, model, max_batch_size: int = 8, wait: float = 0.05, prefix_cache_bytes: int = 2**30):
        if hasattr(model, "decoder_start_ids") or not hasattr(model, "generation_logits"):
            raise InputError(f"batched decoding serves decoder-only models; {type(model).__name__} is not one")
        refeed = getattr(model, "generation_refeed_at", None)
        if refeed is not None and refeed() is not None:
            raise InputError(f"{type(model).__name__} refeeds its cache past {refeed()} positions (LongRoPE), "
                             "which batched decoding does not")
        if not (isinstance(max_batch_size, int) and max_batch_size >= 1):
            raise InputError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if isinstance(prefix_cache_bytes, bool) or not isinstance(prefix_cache_bytes, int) or prefix_cache_bytes < 0:
            raise InputError(f"prefix_cache_bytes must be an integer >= 0, got {prefix_cache_bytes!r}")
        super().__init__()
        self.base, self.max_batch_size, self.wait = model, max_batch_size, wait
        self.prefixes = _Prefixes(prefix_cache_bytes)
        self._finished: list[_Sequence] = []  # released sequences whose keys and values the worker keeps
        self.model = BatchedModel(self)
        self.stats: Counter = Counter()
        self._pending: list[_Sequence] = []  # loops waiting for their step
        self._holding: set[_Sequence] = set()  # sequences with keys and values (prefilled, not released)
        self._members: list[_Sequence] = []  # the shared cache's rows
        self._cache: DecoderCache | None = None
        self._pad: torch.Tensor | None = None  # (B,) masked columns before each row's first token

    # -- the loops' side ---------------------------------------------------------------------------
    def _run(self, seq: _Sequence, input_ids: torch.Tensor) -> torch.Tensor:
        """Hand one step to the worker and wait for its ``(1, V)`` logits (any loop's thread)."""
        if seq.cache is None and input_ids.shape != (1, 1):
            raise InputError(f"batched decoding feeds one token per step after the prompt, got "
                             f"{tuple(input_ids.shape)}")
        with self._cond:
            if self._closed or seq.broken:
                raise InputError("this batched decoding was closed" if self._closed else
                                 "this sequence's cache was lost when a batched step failed")
            seq.input, seq.error = input_ids, None
            seq.ready.clear()
            self._pending.append(seq)
            self._start()
        seq.ready.wait()
        if seq.error is not None:
            raise seq.error
        logits, seq.logits = seq.logits, None
        return logits

    def _release(self, seq: _Sequence) -> None:
        """A loop ended: its place goes (any thread, on garbage collection); the worker keeps its
        keys and values for later prompts (:meth:`_keep_finished`)."""
        with self._cond:
            seq.released, seq.cache = True, None
            if seq.length and not seq.broken and self.prefixes.budget:
                self._finished.append(seq)
            else:
                seq.kv = None
            self._holding.discard(seq)
            self._cond.notify_all()

    # -- the worker ------------------------------------------------------------------------------
    def _ready(self) -> tuple[list[_Sequence], list[_Sequence]]:
        """The prefills that have a place and the steps that can run now (under the lock)."""
        room = self.max_batch_size - len(self._holding)
        prefills = [s for s in self._pending if s.cache is not None][:max(room, 0)]
        return prefills, [s for s in self._pending if s.cache is None]

    def _has_work(self) -> bool:
        return super()._has_work() or any(self._ready())

    def _busy(self) -> bool:
        return super()._busy() or bool(self._pending or self._holding)

    def _take(self):
        # the rows of the batch that are still decoding get `wait` seconds to come back
        late = lambda: [s for s in self._members if not s.released and s not in self._pending]  # noqa: E731
        self._cond.wait_for(lambda: self._closed or not late(), timeout=self.wait)
        prefills, steps = self._ready()
        for s in prefills + steps:
            self._pending.remove(s)
        self._holding.update(prefills)
        finished, self._finished = self._finished, []
        return super()._take(), prefills, steps, finished

    def _do(self, work) -> None:
        jobs, prefills, steps, finished = work
        super()._do(jobs)
        with torch.inference_mode():
            self._keep_finished(finished)
            if prefills:
                self._prefill(prefills)
            if steps:
                self._step(steps)
        for s in prefills + steps:
            s.ready.set()

    def _fail_pending(self, error: BaseException) -> None:
        super()._fail_pending(error)
        for s in self._pending:
            s.error = error
            s.ready.set()
        self._pending.clear()

    def _keep_finished(self, seqs: list[_Sequence]) -> None:
        """Keep the keys and values of finished sequences (rows of the shared cache, or their own
        copies) with the tokens they were fed, for later prompts."""
        for s in seqs:
            if not s.broken and (s.kv is not None or s in self._members):
                layers = len(s.kv) if s.kv is not None else len(self._cache.self_attn)
                self.prefixes.add(torch.cat(s.tokens), [tuple(t.clone() for t in self._held(s, layer))
                                                        for layer in range(layers)])
            s.kv = None

    def _held(self, s: _Sequence, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``s``'s keys and values in ``layer``: its own copy, or its row of the shared cache."""
        if s.kv is not None:
            return s.kv[layer]
        i, c, width = self._members.index(s), self._cache.self_attn[layer], self._cache.length
        return c.k[i:i + 1, :, width - s.length:width], c.v[i:i + 1, :, width - s.length:width]

    def _prefill(self, seqs: list[_Sequence]) -> None:
        """Feed new sequences' prompts, into caches of their own: several at once as one
        left-padded batch (one pass instead of one each: a burst of requests gets its first tokens
        sooner); alone when there is one, when its prompt starts as a kept sequence did (it copies
        that prefix and feeds the rest), or when the batch fails (so that a prompt the model
        refuses fails its own loop only). A prompt the burst holds twice (a request's ``n``
        choices) is fed once: the later ones take the first one's keys, values and logits."""
        firsts, copies = [], []  # the first sequence of each prompt; (sequence, its first) for the others
        for s in seqs:
            same = next((f for f in firsts if f.input.shape == s.input.shape and torch.equal(f.input, s.input)), None)
            if same is None:
                firsts.append(s)
            else:
                copies.append((s, same))
        starts = {s: self.prefixes.find(s.input[0]) for s in firsts}
        fresh = [s for s in firsts if starts[s] is None]
        if len(fresh) > 1:
            try:
                self._prefill_together(fresh)
                firsts = [s for s in firsts if s not in fresh]
            except Exception:  # each alone, each with its own error
                pass
        for s in firsts:
            try:
                kept = 0
                if starts[s] is not None:
                    kept, kv = starts[s]
                    for c, (k, v) in zip(s.cache.self_attn, kv):
                        c.update(k[:, :, :kept], v[:, :, :kept])
                    s.reused = kept
                    self.stats.update(prefix_hits=1, prefix_tokens=kept)
                s.logits = self.base.generation_step(s.input[:, kept:], None, s.cache)
                s.length, s.tokens = s.input.shape[1], [s.input[0]]
                s.kv = [c.keys_values() for c in s.cache.self_attn]
                self.stats["prefills"] += 1
            except Exception as e:  # a prompt the model refuses: that loop's error
                s.error = e
            finally:
                s.cache = None
        for s, first in copies:  # its keys and values are only read (copied into the batch), so shared
            s.cache, s.error = None, first.error
            if first.error is None:
                s.logits, s.kv = first.logits.clone(), first.kv  # its own logits: processors write in place
                s.length, s.tokens, s.reused = first.length, list(first.tokens), first.length
                self.stats.update(prefix_hits=1, prefix_tokens=first.length)

    def _prefill_together(self, seqs: list[_Sequence]) -> None:
        lengths = [s.input.shape[1] for s in seqs]
        T, device = max(lengths), seqs[0].input.device
        ids = torch.zeros(len(seqs), T, dtype=seqs[0].input.dtype, device=device)
        pad = torch.tensor([T - n for n in lengths], device=device)
        for i, s in enumerate(seqs):
            ids[i, T - lengths[i]:] = s.input[0]
        mask = torch.arange(T, device=device) >= pad[:, None]  # (B, T): True from each prompt's first token
        cache = DecoderCache(len(seqs[0].cache.self_attn), T)
        logits = self.base.generation_step(ids, mask, cache)  # (B, V)
        for i, (s, n) in enumerate(zip(seqs, lengths)):
            s.logits, s.length, s.cache, s.tokens = logits[i:i + 1].clone(), n, None, [s.input[0]]
            s.kv = [(c.k[i:i + 1, :, T - n:], c.v[i:i + 1, :, T - n:]) for c in cache.self_attn]
        self.stats.update(prefills=len(seqs), prefill_batches=1)

    def _step(self, rows: list[_Sequence]) -> None:
        """One token for each of ``rows`` in one forward pass."""
        rows = [s for s in self._members if s in rows] + [s for s in rows if s not in self._members]
        try:
            if rows != self._members:
                self._rebuild(rows)
            width = self._cache.length
            ids = torch.cat([s.input for s in rows])  # (B, 1)
            mask = None
            if self._pad is not None:  # (B, width + 1): True from each row's first token
                mask = torch.arange(width + 1, device=ids.device) >= self._pad[:, None]
            logits = self.base.generation_step(ids, mask, self._cache)  # (B, V)
        except Exception as e:  # the keys and values in the batch are lost with it
            for s in rows:
                s.error = e
            for s in set(rows) | set(self._members):
                s.broken = s.broken or s.kv is None
            self._members, self._cache, self._pad = [], None, None
            return
        for i, s in enumerate(rows):
            s.length += 1
            s.tokens.append(s.input[0])
            s.logits = logits[i:i + 1].clone()  # its own: the loop's processors write in place
        self.stats.update(steps=1, tokens=len(rows))
        self.stats["largest"] = max(self.stats["largest"], len(rows))

    def _rebuild(self, rows: list[_Sequence]) -> None:
        """Make the shared cache hold ``rows`` (in order), right-aligned; members not among
        them leave with their own copy of their keys and values."""
        old, cache = self._members, self._cache  # self._held reads them until the end
        for s in old:
            if s not in rows and not s.released:
                s.kv = [tuple(t.clone() for t in self._held(s, layer)) for layer in range(len(cache.self_attn))]
                self.stats["left"] += 1
        width = max(s.length for s in rows)
        end = width + max(s.max_len - s.length for s in rows)  # the last column any row may write
        new = DecoderCache(len(cache.self_attn) if cache is not None else len(rows[0].kv), end)
        for layer, c in enumerate(new.self_attn):
            parts = [self._held(s, layer) for s in rows]
            (k0, v0), B = parts[0], len(rows)
            # zeros, not empty memory: masked columns get zero weight, and 0 × NaN would not be 0
            c.k = k0.new_zeros(B, k0.shape[1], end, k0.shape[3])
            c.v = v0.new_zeros(B, v0.shape[1], end, v0.shape[3])
            for i, (s, (k, v)) in enumerate(zip(rows, parts)):
                c.k[i, :, width - s.length:width] = k[0]
                c.v[i, :, width - s.length:width] = v[0]
            c.length = width
        for s in rows:
            s.kv = None
        pad = [width - s.length for s in rows]
        self._members, self._cache = rows, new
        self._pad = torch.tensor(pad, device=new.self_attn[0].k.device) if any(pad) else None
        self.stats["rebuilds"] += 1
