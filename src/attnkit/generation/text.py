"""Text in, text out: :class:`TextStream` decodes a prompt's continuation piece by piece as the
tokens arrive, stops at stop strings, and says why it ended (the CLI's ``generate`` and the HTTP
server's completions both read it); :func:`token_logprobs` scores a text's tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

from attnkit.errors import InputError
from attnkit.generation.decoding import _special_ids


def encode_input(model, tokenizer, text: str) -> list[int]:
    """``text``'s token ids as ``model`` reads them: an encoder-decoder model's source ends with
    EOS (added when the tokenizer does not add it, as :func:`attnkit.generation.translation.translate`
    and Hugging Face's T5 tokenizer do); a decoder-only model's prompt is encoded as it is."""
    ids = tokenizer.encode(text)
    eos = tokenizer.eos_token_id
    if hasattr(model, "decoder_start_ids") and eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def end_of_turn_ids(model, tokenizer) -> list[int] | None:
    """The ids that end a chat model's turn: the tokenizer's EOS and every EOS id of the model's
    generation config and config (an instruct model's ``<|im_end|>`` or ``<|eot_id|>`` is often
    only there). None when there is none."""
    def ids(value) -> list:
        return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]

    ends = [tokenizer.eos_token_id, *ids(getattr(model.generation_config, "eos_token_id", None)),
            *ids(getattr(model.config, "eos_token_id", None))]
    return sorted({i for i in ends if i is not None}) or None


class TokenLogprobs(NamedTuple):
    """Per token of a scored sequence (from its second on): its id, its text (the decoded text it
    adds: empty for a piece of a UTF-8 character), its log-probability, and the ``top`` most
    likely ``(id, log-probability)`` at its position."""

    ids: list[int]
    texts: list[str]
    logprobs: list[float]
    top: list[list[tuple[int, float]]]


@torch.inference_mode()
def token_logprobs(model, tokenizer, ids: Sequence[int], top: int = 0) -> TokenLogprobs:
    """The log-probability of each token of ``ids`` after the tokens before it, under a
    decoder-only ``model``'s own distribution (its logits' log-softmax in fp32, before any
    temperature or sampling processors), in one forward pass."""
    if hasattr(model, "decoder_start_ids"):
        raise InputError("token log-probabilities need a decoder-only model")
    x = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
    logp = model(x).logits[0, :-1].float().log_softmax(dim=-1)
    chosen = logp.gather(1, x[0, 1:, None])[:, 0].tolist()
    best = logp.topk(top, dim=-1) if top else None
    tops = [[] for _ in chosen] if best is None else [list(zip(i, v)) for i, v in zip(best.indices.tolist(),
                                                                                     best.values.tolist())]
    ids = list(ids)
    texts = [token_text(tokenizer, ids[:k], ids[k]) for k in range(1, len(ids))]
    return TokenLogprobs(ids[1:], texts, chosen, tops)


def scored_token(tokenizer, before: Sequence[int], logits: torch.Tensor, token: int, top: int = 0):
    """``(token, its text, its log-probability, the top (id, log-probability) pairs)`` from the
    raw ``(V,)`` or ``(1, V)`` logits of its step (a log-softmax in fp32, as :func:`token_logprobs`)."""
    logp = logits.reshape(-1).float().log_softmax(dim=-1)
    best = logp.topk(top) if top else None
    pairs = [] if best is None else list(zip(best.indices.tolist(), best.values.tolist()))
    return token, token_text(tokenizer, before, token), float(logp[token]), pairs


_TEXT_CONTEXT = 8  # tokens decoded before each one to find its text (token_text)


def token_text(tokenizer, before: Sequence[int], token: int) -> str:
    """The text ``token`` adds after the tokens ``before`` it (empty for a piece of a UTF-8
    character): decoded after the last few of them (enough for a character split over byte-level
    tokens), as decoding every prefix would cost O(len²)."""
    window = list(before[len(before) - _TEXT_CONTEXT:] if len(before) > _TEXT_CONTEXT else before)
    was, now = (tokenizer.decode(w, skip_special_tokens=False) for w in (window, window + [token]))
    return now[len(was):] if now.startswith(was) else tokenizer.decode([token])


class TextStream:
    """Iterate for the text of ``prompt``'s continuation, piece by piece.

    Decoder-only models continue the prompt (a text, or its token ids); encoder-decoder models
    read it as their source (:func:`encode_input`) and the text is the decoder's output. Pieces
    are cut where the decoded text is stable: never inside a UTF-8 character that byte-level BPE
    has split over tokens, and never inside what may be the start of a ``stop`` string. The text ends before the first stop string, at an
    EOS token, or after ``max_new_tokens``; then ``finish_reason`` is ``"stop"`` (stop string
    or EOS) or ``"length"``, and ``completion_tokens`` counts the tokens decoded (the EOS
    included); ``cached_tokens``, the prompt tokens a cache held (a ``prompt_cache`` given in
    ``generate_kwargs``, or continuous batching's kept prefixes), is set with the first token.
    ``generate_kwargs`` go to :func:`attnkit.generation.stream`, whose ``eos_token_id`` defaults
    to the tokenizer's (else the model's, as ``generate`` resolves it).

    ``logprobs`` (an int: how many most likely tokens to list): each decoded token's
    :func:`scored_token` entry is appended to ``scored`` as it comes, from the logits of its own
    decoding step (the model's own distribution, before temperature or other processors).
    """

    def __init__(self, model, tokenizer, prompt: str | list[int], stop: Sequence[str] = (),
                 logprobs: int | None = None, **generate_kwargs):
        if isinstance(stop, str):
            stop = [stop]
        if any(not isinstance(s, str) or not s for s in stop):
            raise InputError(f"stop strings must be non-empty strings, got {list(stop)!r}")
        self.model, self.tokenizer, self.stop = model, tokenizer, list(stop)
        # A text is encoded here; a list of ids (a chat template's rendering) is read as it is.
        self.prompt_ids = encode_input(model, tokenizer, prompt) if isinstance(prompt, str) else list(prompt)
        if tokenizer.eos_token_id is not None:  # else the model's generation config / config decide
            generate_kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
        self.generate_kwargs = generate_kwargs
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.cached_tokens = 0  # prompt tokens whose keys and values came from a cache (read once the prompt is)
        self.token_ids: list[int] = []  # the tokens decoded, without the EOS
        self.logprobs = logprobs
        self.scored: list[tuple[int, str, float, list[tuple[int, float]]]] = []  # with logprobs: per token_ids

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def _stop_at(self, text: str, start: int) -> int:
        """Index of the first stop string in ``text`` that ends after ``start``, or -1."""
        longest = max(map(len, self.stop), default=0)
        hits = [i for i in (text.find(s, max(0, start - longest + 1)) for s in self.stop) if i >= 0]
        return min(hits, default=-1)

    def _held_back(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a stop string (not yet safe to show)."""
        return max((n for s in self.stop for n in range(1, len(s)) if text.endswith(s[:n])), default=0)

    def __iter__(self) -> Iterator[str]:
        eos = set(_special_ids(self.model, self.generate_kwargs.get("eos_token_id", "config"), "config", None)[0])
        ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=self.model.device)
        new: list[int] = []
        shown = ""
        self.finish_reason = "length"
        logits = None if self.logprobs is None else []
        context = [] if hasattr(self.model, "decoder_start_ids") else self.prompt_ids  # what the new tokens follow
        usage = {}
        for tokens in self.model.stream(ids, **self.generate_kwargs, logits_out=logits, usage_out=usage):
            token = int(tokens[0])
            self.completion_tokens += 1
            self.cached_tokens = usage.get("cached_tokens", 0)
            if token in eos:
                self.finish_reason = "stop"
                break
            if logits is not None:
                before = new[-_TEXT_CONTEXT:] if len(new) >= _TEXT_CONTEXT else (context + new)[-_TEXT_CONTEXT:]
                self.scored.append(scored_token(self.tokenizer, before, logits.pop(), token, self.logprobs))
            new.append(token)
            self.token_ids = new
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            cut = self._stop_at(text, len(shown))
            if cut >= 0:
                self.finish_reason = "stop"
                if cut > len(shown):
                    yield text[len(shown):cut]
                return
            if text.endswith("\ufffd"):
                continue
            safe = len(text) - self._held_back(text)
            if safe > len(shown):
                yield text[len(shown):safe]
                shown = text[:safe]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        if len(text) > len(shown):
            yield text[len(shown):]
