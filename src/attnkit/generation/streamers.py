"""Streamers receive tokens as they are generated, as in Hugging Face's ``generate``:
``put(prompt)`` once with the ``(B, T)`` ids the output starts with (the prompt, or the decoder's
start tokens), then ``put(tokens)`` with the ``(B,)`` new tokens each step, and ``end()`` once.
So Hugging Face's streamers (``TextStreamer``, ``TextIteratorStreamer``) work here too.

:class:`TokenIteratorStreamer` turns that into an iterator over the new tokens another thread
can consume (a server sending tokens to a client while decoding runs). For a plain loop,
``model.stream(...)`` is simpler: it is a generator over the same decoding loop. On CPU, let
the thread that loaded the model run ``generate`` and the other one consume: a thread that
computes while the main thread's OpenMP pool exists decodes 1.4-1.6× slower
(:class:`~attnkit.generation.batching.ModelThread`).
"""

from __future__ import annotations

import queue

import torch


class TokenIteratorStreamer:
    """Thread-safe iterator over generated ``(B,)`` token tensors (the prompt is skipped).

    ``timeout`` (seconds) bounds each wait so a consumer never hangs on a dead producer. Once
    ended, the iterator stays exhausted.
    """

    _END = object()

    def __init__(self, timeout: float | None = None):
        self.queue: queue.Queue = queue.Queue()
        self.timeout = timeout
        self._prompt_seen = self._ended = False

    def put(self, tokens: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first put is the prompt (Hugging Face's streamer protocol)
            self._prompt_seen = True
            return
        self.queue.put(tokens)

    def end(self) -> None:
        self.queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self._ended:
            raise StopIteration
        item = self.queue.get(timeout=self.timeout)
        if item is self._END:
            self._ended = True
            raise StopIteration
        return item
