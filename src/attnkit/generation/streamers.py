"""Streamers receive tokens as they are generated: ``put(tokens)`` each step, ``end()`` once.

:class:`TokenIteratorStreamer` turns that into an iterator another thread can consume (a
server sending tokens to a client while decoding runs). For a plain loop, ``model.stream(...)``
is simpler: it is a generator over the same decoding loop.
"""

from __future__ import annotations

import queue

import torch


class TokenIteratorStreamer:
    """Thread-safe iterator over generated ``(B,)`` token tensors.

    ``timeout`` (seconds) bounds each wait so a consumer never hangs on a dead producer.
    """

    _END = object()

    def __init__(self, timeout: float | None = None):
        self.queue: queue.Queue = queue.Queue()
        self.timeout = timeout

    def put(self, tokens: torch.Tensor) -> None:
        self.queue.put(tokens)

    def end(self) -> None:
        self.queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        item = self.queue.get(timeout=self.timeout)
        if item is self._END:
            raise StopIteration
        return item
