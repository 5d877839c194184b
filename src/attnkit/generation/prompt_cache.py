"""A KV cache kept from one decoding call to the next, so that a prompt that starts with the
tokens of an earlier call feeds only the tokens after them (a chat's next turn, a document asked
several questions): llama.cpp's ``cache_prompt``, or Hugging Face's reuse of ``past_key_values``
across ``generate`` calls, with the shared prefix found by comparing token ids.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import torch

from attnkit.errors import InputError
from attnkit.nn.cache import DecoderCache


def _weights_key(model) -> tuple:
    """What changes when the model's weights do: each parameter's and buffer's storage, dtype and
    in-place version (an optimizer step, ``load_state_dict``, ``.to(dtype)``)."""
    return tuple((t.data_ptr(), t.dtype, -1 if t.is_inference() else t._version)
                 for t in (*model.parameters(), *model.buffers()))


def reusable_prefix(held: torch.Tensor, prompt: torch.Tensor) -> int:
    """How many of ``prompt``'s first tokens ``held`` starts with, at most all but its last (which
    is fed for its logits). Both ``(n,)`` token ids."""
    n = min(len(held), len(prompt) - 1)
    differ = (held[:n] != prompt[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


class PromptCache:
    """The keys and values of one sequence, kept between :func:`~attnkit.generation.generate` /
    :func:`~attnkit.generation.stream` calls given it as ``prompt_cache=``.

    A call feeds only the part of its prompt after the longest prefix it shares with the tokens
    the cache holds (the last call's prompt and the tokens it decoded, but the last one); the
    cache then holds that call's sequence. At least the prompt's last token is fed, for its
    logits. The tokens are those of a call without the cache, up to float rounding (the prompt
    runs through the model in two pieces instead of one).

    One sequence: a batch of one prompt, no padding, greedy or sampled decoding, prompt lookup or
    an assistant model (whose own cache is not kept), on a decoder-only model's own cache (not
    a :class:`~attnkit.generation.BatchedDecoding`'s). The cache starts over when the model's
    weights change (another model, ``.to(dtype)``, a training step); models that rebuild their
    cache past a length (LongRoPE) never reuse it. Its memory (every position of the sequence,
    in every layer) stays held until :meth:`reset` or the object goes. One call at a time: a call
    that starts while another one's stream is still open is refused (it would write over the
    keys that one decodes from).
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget the sequence and free its keys and values."""
        self.cache: DecoderCache | None = None
        self._model = None  # a weak reference to the model the cache was filled by
        self._weights: tuple = ()
        self._prompt: torch.Tensor | None = None  # (T,) the last call's prompt
        self._kept = 0  # the prompt positions that call found in the cache
        self._new: list[torch.Tensor] = []  # the (1,) tokens it decoded
        self._busy = False  # a call's stream is open

    def __len__(self) -> int:
        """The positions held: the cache's keys and values are those of :attr:`ids`."""
        if self._prompt is None:
            return 0
        return len(self._prompt) + len(self._new) - 1 if self._new else self._kept

    @property
    def ids(self) -> torch.Tensor:
        """``(len(self),)`` the token ids whose keys and values the cache holds."""
        if self._prompt is None:
            return torch.empty(0, dtype=torch.long)
        return torch.cat([self._prompt, *self._new])[:len(self)]

    def take(self, model, input_ids: torch.Tensor, fresh) -> tuple[DecoderCache, int]:
        """The cache for a call with prompt ``input_ids`` ``(1, T)`` and how many of its positions
        it already holds; ``fresh`` is the empty cache the model made for the call (used when
        nothing is shared; else it gives the positions the call needs)."""
        if not isinstance(fresh, DecoderCache):
            raise InputError(f"prompt_cache needs a model that decodes into its own DecoderCache; "
                             f"{type(model).__name__} gives a {type(fresh).__name__} (a BatchedDecoding's model?)")
        weights = _weights_key(model)
        same_model = self._model is not None and self._model() is model and self._weights == weights
        refeeds = getattr(model, "generation_refeed_at", lambda: None)() is not None
        kept = 0
        if same_model and not refeeds and len(self):
            kept = reusable_prefix(self.ids.to(input_ids.device), input_ids[0])
        if kept:
            cache = self.cache
            cache.truncate(kept)
            if cache.max_len < fresh.max_len:  # grown by at least half, so that a long chat seldom copies
                cache.grow(max(fresh.max_len, cache.max_len * 3 // 2))
        else:
            cache = fresh.keep_all()  # rolling caches could not go back to a shorter prefix
        self.cache, self._model, self._weights = cache, weakref.ref(model), weights
        self._prompt, self._kept, self._new = input_ids[0].clone(), kept, []
        return cache, kept

    def record(self, tokens: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Pass a call's ``(1,)`` tokens through, noting each as held by the cache once the next
        step has fed it (a step that fails or is never run leaves the cache as it was)."""
        if self._busy:
            raise InputError("this PromptCache is in use: another decoding call's stream is still open (close it, "
                             "or give each sequence a PromptCache of its own)")
        self._busy = True
        try:
            for t in tokens:
                self._new.append(t)
                yield t
        finally:
            self._busy = False
