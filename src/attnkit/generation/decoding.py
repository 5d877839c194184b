"""The decoding loop shared by every generative model.

A model takes part by implementing two methods (the decoding protocol):

``prepare_generation(input_ids, attention_mask, expand, max_new_tokens) -> (ids, mask, cache)``
    Repeat the batch ``expand`` times (beams), run whatever runs once (an encoder), and return
    the first decoder input, its padding mask (or None) and an empty cache. Encoder-decoder
    models also take ``decoder_input_ids=`` (a decoder prompt), passed only when the call gives one.
``generation_step(input_ids, attention_mask, cache) -> logits (B, V)``
    Feed new tokens through the cache; return next-token logits (a fresh tensor: beam search
    overwrites it in place).
``generation_modules() -> nn.Module`` (optional)
    The modules every step runs, whose weights decoding may pack (default: the whole model;
    an encoder-decoder model leaves out its encoder, which runs once).
``generation_refeed_at() -> int | None`` (optional)
    A length past which every cached position changes (LongRoPE's original context, where its
    long factors take over): when a sequence first grows past it, the loop empties the cache
    and feeds the whole sequence again, as ``transformers``' Phi-3 does. None: never.

Decoder-only models return prompt + new tokens; encoder-decoder models return the decoder's
start token (or the call's ``decoder_input_ids``) + new tokens (Hugging Face's conventions). An
encoder-decoder model whose encoder reads something other than token ids says so in
``main_input_name`` (Whisper: ``"input_features"``) and checks that input itself. Arguments a
call leaves unset come from ``model.generation_config`` (:mod:`attnkit.generation.config`,
:mod:`attnkit.models.generation_config`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from functools import partial
from typing import NamedTuple

import torch

from attnkit.allocator import available_memory
from attnkit.errors import InputError
from attnkit.generation.config import generation_config, resolve
from attnkit.generation.processors import Warpers, ban_repeated_ngrams, ban_sequences, penalize_repetition
from attnkit.generation.prompt_cache import PromptCache
from attnkit.nn.linear import packed_weights
from attnkit.models.base import check_token_ids
from attnkit.models.generation_config import RANGES
from attnkit.models.outputs import GenerateOutput
from attnkit.nn.masks import as_padding_mask


def _token_ids(name: str, value, vocab: int | None) -> list[int]:
    """``value`` (an id, a list of ids or a tensor) as a list of ids in ``[0, vocab)``."""
    values = value.tolist() if isinstance(value, torch.Tensor) else value
    values = values if isinstance(values, (list, tuple)) else [values]
    try:
        ids = [operator.index(v) for v in values]
    except TypeError:
        ids = None
    if ids is None or any(isinstance(v, bool) for v in values) or any(i < 0 or (vocab is not None and i >= vocab)
                                                                      for i in ids):
        raise InputError(f"{name} must be token ids in [0, {vocab}), got {value!r}")
    return ids


def _special_ids(model, eos_token_id, pad_token_id, forced_eos_token_id) -> tuple[list[int], int, list[int]]:
    """The EOS ids, the padding id and the tokens forced last in a decoding run. ``"config"``
    (the default) reads each from ``model.generation_config``, then ``model.config`` (where
    ``transformers`` reads a checkpoint's generation_config.json alone, attnkit still falls back
    to config.json's token for one the file leaves out); ``eos_token_id=None`` decodes without
    stopping. Padding defaults to the first EOS id, then 0."""
    config, gen = getattr(model, "config", None), generation_config(model)
    vocab = getattr(config, "vocab_size", None)

    def token_ids(name, value) -> list[int]:
        if value is None:
            return []
        if isinstance(value, str):
            if value != "config":
                raise InputError(f'{name} must be a token id, a list of ids (EOS only), None or "config", got {value!r}')
            value = getattr(gen, name)
            value = getattr(config, name, None) if value is None else value
            if value is None:
                return []
        return _token_ids(name, value, vocab)

    eos, pad = token_ids("eos_token_id", eos_token_id), token_ids("pad_token_id", pad_token_id)
    if len(pad) > 1:
        raise InputError(f"pad_token_id must be one token id, got {pad}")
    return eos, pad[0] if pad else (eos[0] if eos else 0), token_ids("forced_eos_token_id", forced_eos_token_id)


class _Bans(NamedTuple):
    """What ``bad_words_ids`` and ``suppress_tokens`` ban: ``tokens`` ``(N,)``, never generated,
    and for each prefix length of the longer banned sequences, ``(prefixes (G, n), last (G,))``:
    ``last[g]`` is banned after ``prefixes[g]``; ``first``: what ``begin_suppress_tokens`` bans
    as the first new token."""

    tokens: torch.Tensor | None
    sequences: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    first: torch.Tensor | None = None
    custom: tuple = ()  # the call's own logits processors, run after these bans


def _bans(model, bad_words_ids, suppress_tokens, eos: list[int], device, begin_suppress_tokens=None,
          logits_processor=None) -> _Bans:
    """``bad_words_ids`` (lists of ids; a single EOS id there stays allowed), ``suppress_tokens``
    and ``begin_suppress_tokens``, each the call's unless None, else the generation config's
    (Hugging Face's processors); and the call's ``logits_processor`` list."""
    if not isinstance(logits_processor, (list, tuple, type(None))) or not all(map(callable, logits_processor or ())):
        raise InputError("logits_processor must be a list of callables (input_ids, scores) -> scores, got "
                         f"{logits_processor!r}")
    custom = tuple(logits_processor or ())
    gen, vocab = generation_config(model), getattr(getattr(model, "config", None), "vocab_size", None)
    bad_words_ids = gen.bad_words_ids if bad_words_ids is None else bad_words_ids
    suppress_tokens = gen.suppress_tokens if suppress_tokens is None else suppress_tokens
    begin = gen.begin_suppress_tokens if begin_suppress_tokens is None else begin_suppress_tokens
    if not isinstance(bad_words_ids, (list, tuple, type(None))) or any(
            not isinstance(w, (list, tuple, torch.Tensor)) or len(w) == 0 for w in bad_words_ids or ()):
        raise InputError("bad_words_ids must be a list of non-empty lists of token ids [[id, ...], ...], "
                         f"got {bad_words_ids!r}")
    for name, value in (("suppress_tokens", suppress_tokens), ("begin_suppress_tokens", begin)):
        if not isinstance(value, (list, tuple, type(None))):
            raise InputError(f"{name} must be a list of token ids, got {value!r}")
    first = sorted(set(_token_ids("begin_suppress_tokens", list(begin or ()), vocab)))
    words = [_token_ids("bad_words_ids", w, vocab) for w in bad_words_ids or ()]
    tokens = {w[0] for w in words if len(w) == 1 and w[0] not in eos}
    tokens.update(_token_ids("suppress_tokens", list(suppress_tokens or ()), vocab))
    by_length: dict[int, list[list[int]]] = {}
    for w in words:
        if len(w) > 1:
            by_length.setdefault(len(w) - 1, []).append(w)
    sequences = tuple((torch.tensor([w[:-1] for w in g], device=device), torch.tensor([w[-1] for w in g], device=device))
                      for g in by_length.values())
    return _Bans(torch.tensor(sorted(tokens), device=device) if tokens else None, sequences,
                 torch.tensor(first, device=device) if first else None, custom)


def _reads_sequence(repetition_penalty: float, no_repeat_ngram_size: int, bans: _Bans) -> bool:
    return repetition_penalty != 1.0 or no_repeat_ngram_size > 0 or bool(bans.sequences) or bool(bans.custom)


def _process(scores, seq, start, bans: _Bans, eos_t, repetition_penalty: float, no_repeat_ngram_size: int,
             first: bool = False) -> None:
    """Hugging Face's logits processors that attnkit offers, in its order, in place on ``scores``
    ``(B, V)``: the repetition penalty (not counting positions before ``start``, the left
    padding), no repeated n-grams and the banned sequences over ``seq`` ``(B, L)`` (the sequence
    so far), the banned tokens, those banned as the ``first`` new token, EOS (``eos_t``, the
    ids) before ``min_new_tokens``, then the call's own processors (``bans.custom``, given
    ``seq`` and ``scores`` as Hugging Face's ``LogitsProcessor``\ s are)."""
    if repetition_penalty != 1.0:
        penalize_repetition(scores, seq, repetition_penalty, start)
    if no_repeat_ngram_size > 0:
        ban_repeated_ngrams(scores, seq, no_repeat_ngram_size)
    for prefixes, last in bans.sequences:
        ban_sequences(scores, seq, prefixes, last)
    if bans.tokens is not None:
        scores.index_fill_(1, bans.tokens, float("-inf"))
    if first and bans.first is not None:
        scores.index_fill_(1, bans.first, float("-inf"))
    if eos_t is not None and eos_t.numel():
        scores.index_fill_(1, eos_t, float("-inf"))
    for processor in bans.custom:
        out = processor(seq, scores)
        if out is not scores:
            scores.copy_(out)


def _force_token(scores: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Make ``tokens`` the only possible next tokens (Hugging Face's ForcedEOSTokenLogitsProcessor), in place."""
    scores.fill_(float("-inf"))[:, tokens] = 0.0
    return scores


def _check_devices(model, input_ids, attention_mask, generator, decoder_input_ids=None, source="input_ids") -> None:
    """The prompt, its mask and the sampling generator must be where the model is (its
    ``device``, where the model says)."""
    device = getattr(model, "device", None)
    if device is None:
        return
    for name, t in ((source, input_ids), ("attention_mask", attention_mask), ("decoder_input_ids", decoder_input_ids)):
        if isinstance(t, torch.Tensor) and t.device != device:
            raise InputError(f"{name} is on {t.device} but the model is on {device}; move it with .to(model.device)")
    if generator is not None and generator.device.type != device.type:
        raise InputError(f"generator is on {generator.device} but the model is on {device}; make it with "
                         f"torch.Generator(device={str(device)!r})")


def _check_args(model, input_ids, attention_mask, generator, decoder_input_ids=None,
                **args) -> tuple[torch.Tensor | None, dict]:
    """Check the call; returns the padding mask as bool (or None) and the decoding settings
    ``args``, each resolved from the call, the generation config or the default."""
    if not hasattr(model, "generation_step"):
        raise InputError(f"{type(model).__name__} cannot generate: it has no decoder (an encoder such as BERT); "
                         "use a GPT or an encoder-decoder Transformer")
    source = getattr(model, "main_input_name", "input_ids")  # what the encoder reads checks itself
    reads_ids = source == "input_ids"
    if not isinstance(input_ids, torch.Tensor) or (reads_ids and input_ids.dim() != 2):
        raise InputError(f"{source} must be a {'2-D (batch, seq_len) ' if reads_ids else ''}tensor, "
                         f"got {getattr(input_ids, 'shape', input_ids)}")
    _check_devices(model, input_ids, attention_mask, generator, decoder_input_ids, source)
    if reads_ids and input_ids.dtype not in (torch.int64, torch.int32):
        raise InputError(f"input_ids must be int64 or int32 token ids, got {input_ids.dtype}")
    if reads_ids and input_ids.shape[1] == 0:
        raise InputError("input_ids is empty: give at least one prompt token (e.g. the BOS token)")
    vocab = getattr(model.config, "vocab_size", None)
    encoder_decoder = hasattr(model, "decoder_start_ids")
    if decoder_input_ids is not None:
        if not encoder_decoder:
            raise InputError("decoder_input_ids is a decoder prompt for encoder-decoder models; "
                             f"{type(model).__name__} continues input_ids")
        check_token_ids(decoder_input_ids, "decoder_input_ids", vocab)
        if decoder_input_ids.shape[0] != input_ids.shape[0]:
            raise InputError(f"decoder_input_ids has {decoder_input_ids.shape[0]} rows but {source} has "
                             f"{input_ids.shape[0]}")
    # the tokens max_length / min_length count before the new ones: the prompt, or the decoder's start token
    prompt_length = (decoder_input_ids.shape[1] if decoder_input_ids is not None else 1 if encoder_decoder
                     else input_ids.shape[1])
    s = resolve(model, prompt_length, **args)
    for name, value in s.items():  # None only where the default is (top_p: off)
        if name in RANGES and value is not None and not RANGES[name][0](value):
            raise InputError(f"{name} must be {RANGES[name][1]}, got {value!r}")
    if s["do_sample"] and not s["temperature"] > 0:
        raise InputError(f"temperature must be > 0 when sampling, got {s['temperature']} (use do_sample=False for greedy)")
    num_beams, early_stopping = s.get("num_beams", 1), s.get("early_stopping", False)
    n_return = s.get("num_return_sequences", 1)
    if n_return > 1 and num_beams == 1 and not s["do_sample"]:
        raise InputError("greedy decoding makes one sequence per input: num_return_sequences > 1 needs "
                         "do_sample=True or num_beams >= num_return_sequences")
    if n_return > num_beams > 1:
        raise InputError(f"num_return_sequences ({n_return}) must be at most num_beams ({num_beams})")
    if not (isinstance(early_stopping, bool) or early_stopping == "never"):
        raise InputError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if attention_mask is not None and reads_ids:
        attention_mask = as_padding_mask(attention_mask, *input_ids.shape)
    if vocab is not None and reads_ids:
        check_token_ids(input_ids, "input_ids", vocab)
    s["warpers"] = Warpers(*(s.pop(name) for name in Warpers._fields))
    return attention_mask, s


def _first_real(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``(B,)`` index of each row's first real token (after left padding), or None unpadded."""
    return None if mask is None else mask.int().argmax(dim=1)


def _mask_buffer(mask: torch.Tensor | None, total: int) -> torch.Tensor | None:
    """Preallocate the padding mask for every position we may decode (hoisted out of the loop).
    None when nothing is padded: the model then builds no mask and no position ids from it."""
    if mask is None or bool(mask.all()):
        return None
    buf = torch.ones(mask.shape[0], total, dtype=torch.bool, device=mask.device)
    buf[:, : mask.shape[1]] = mask
    return buf


@torch.inference_mode()
def stream(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    typical_p: float | None = None,
    epsilon_cutoff: float | None = None,
    eta_cutoff: float | None = None,
    eos_token_id: int | Sequence[int] | str | None = "config",
    pad_token_id: int | str | None = "config",
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    pack_weights: bool | str = "auto",
    forced_eos_token_id: int | str | None = "config",
    bad_words_ids: Sequence[Sequence[int]] | None = None,
    suppress_tokens: Sequence[int] | None = None,
    begin_suppress_tokens: Sequence[int] | None = None,
    min_new_tokens: int | None = None,
    repetition_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    max_length: int | None = None,
    min_length: int | None = None,
    decoder_input_ids: torch.Tensor | None = None,
    logits_processor: Sequence | None = None,
    prompt_lookup_num_tokens: int | None = None,
    assistant_model=None,
    num_assistant_tokens: int | None = None,
    stop_strings: str | Sequence[str] | None = None,
    tokenizer=None,
    logits_out: list | None = None,
    prompt_cache: PromptCache | None = None,
    usage_out: dict | None = None,
) -> Iterator[torch.Tensor]:
    """Greedy or sampled decoding, yielding the ``(B,)`` next tokens one step at a time (one
    token at a time with ``prompt_lookup_num_tokens`` or ``assistant_model`` too, though a step
    may confirm several).

    Rows that produced ``eos_token_id`` keep yielding ``pad_token_id`` until every row is done
    or ``max_new_tokens`` were made. The arguments are :func:`generate`'s; one sequence per
    prompt, without beams (a generation config's ``num_beams`` and ``num_return_sequences`` do
    not apply here). ``logits_out``: a list that each step's raw fp32 ``(B, V)`` logits (before
    any processor) are appended to before its tokens are yielded, to read as they come (the
    server's streamed log-probabilities); the caller may empty it as it goes. ``usage_out``: a
    dict that gets ``cached_tokens`` once the prompt is read: the prompt tokens whose keys and
    values came from a cache (``prompt_cache``'s, or continuous batching's kept prefixes).
    """
    attention_mask, s = _check_args(model, input_ids, attention_mask, generator, decoder_input_ids,
                                    max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                                    top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                                    epsilon_cutoff=epsilon_cutoff, eta_cutoff=eta_cutoff,
                                    min_new_tokens=min_new_tokens, repetition_penalty=repetition_penalty,
                                    no_repeat_ngram_size=no_repeat_ngram_size, max_length=max_length,
                                    min_length=min_length)
    special = _special_ids(model, eos_token_id, pad_token_id, forced_eos_token_id)
    bans = _bans(model, bad_words_ids, suppress_tokens, special[0], input_ids.device, begin_suppress_tokens,
                 logits_processor)
    _check_guessing(model, input_ids, prompt_lookup_num_tokens, assistant_model, num_assistant_tokens, 1)
    _check_prompt_cache(model, prompt_cache, input_ids, attention_mask)
    stop = _stop_strings(stop_strings, tokenizer, 1)
    decode, rows = _decoder(prompt_lookup_num_tokens, input_ids.shape[0], assistant_model, num_assistant_tokens,
                            prompt_cache)
    with _packing(model, pack_weights, rows, s["max_new_tokens"]):
        record = {k: v for k, v in (("logits", logits_out), ("usage", usage_out)) if v is not None}
        yield from decode(model, input_ids, attention_mask, generator, bans, *special, **s, record=record or None,
                          decoder_input_ids=decoder_input_ids, stop=stop)


ASSISTANT_TOKENS = 5  # the first round's guesses from an assistant model (then adapted, as Hugging Face's "heuristic")


def _decoder(prompt_lookup_num_tokens: int | None, batch: int, assistant_model=None,
             num_assistant_tokens: int | None = None, prompt_cache: PromptCache | None = None):
    """``(the one-sequence decoding loop, rows per step)``: :func:`_stream`, or with guesses
    :func:`_prompt_lookup` (from the text itself, or from ``assistant_model``); with
    ``prompt_cache``, the loop decodes into its cache and notes the tokens it holds."""
    if assistant_model is not None:
        k = num_assistant_tokens or ASSISTANT_TOKENS
        loop, rows = partial(_prompt_lookup, lookup=4 * k, assistant=(assistant_model, k)), 4 * k + 1
    elif prompt_lookup_num_tokens is None:
        loop, rows = _stream, batch
    else:
        loop, rows = partial(_prompt_lookup, lookup=prompt_lookup_num_tokens), prompt_lookup_num_tokens + 1
    if prompt_cache is None:
        return loop, rows
    return (lambda *args, **kw: prompt_cache.record(loop(*args, **kw, prompt_cache=prompt_cache))), rows


def _refeed_limit(model) -> int | None:
    """The model's ``generation_refeed_at()`` (optional in the protocol), or None."""
    refeed_at = getattr(model, "generation_refeed_at", None)
    return None if refeed_at is None else refeed_at()


def _must_refeed(limit: int | None, cache, length: int) -> bool:
    """Whether a feed that brings the sequence to ``length`` positions crosses ``limit`` for the
    first time; if so, the cache is emptied for the whole sequence to be fed again."""
    if limit is None or not cache.length <= limit < length:
        return False
    cache.truncate(0)
    return True


def _stream(model, input_ids, attention_mask, generator, bans, eos, pad, forced_eos, max_new_tokens, do_sample,
            warpers, min_new_tokens, repetition_penalty, no_repeat_ngram_size,
            renormalize_logits=False, record=None, decoder_input_ids=None, stop=None, prompt_cache=None):
    """The decoding loop of :func:`stream`; ``record`` (``{"scores": [], "logits": []}``, either
    key) collects each step's processed scores / raw logits, and its ``"usage"`` dict (when
    there) the cached prompt tokens (:func:`_note_reused`); ``stop`` (:class:`_StopStrings`) ends
    the rows whose text reaches a stop string; ``prompt_cache``: see :func:`generate`."""
    scores_out, logits_out = (None, None) if record is None else (record.get("scores"), record.get("logits"))
    ids, mask, cache, kept = _prepare(model, input_ids, attention_mask, max_new_tokens, decoder_input_ids,
                                      prompt_cache)
    mask_buf = _mask_buffer(mask, ids.shape[1] + max_new_tokens)
    start = _first_real(mask)
    eos_t = torch.tensor(eos, device=ids.device)
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    cur = ids.shape[1]
    step_input = ids[:, kept:]
    seq = None  # the sequence so far, for the processors that read it and for a refeed
    limit = _refeed_limit(model)
    ends = bool(eos) or stop is not None  # rows can finish early
    if _reads_sequence(repetition_penalty, no_repeat_ngram_size, bans) or limit is not None or stop is not None:
        seq = ids.new_empty(ids.shape[0], cur + max_new_tokens)
        seq[:, :cur] = ids
    for step in range(max_new_tokens):
        if step and _must_refeed(limit, cache, cur):
            step_input = seq[:, :cur]
        logits = model.generation_step(step_input, None if mask_buf is None else mask_buf[:, :cur], cache).float()
        if step == 0:
            _note_reused(record, kept, cache)
        if logits_out is not None:
            logits_out.append(logits.clone())
        _process(logits, None if seq is None else seq[:, :cur], start, bans,
                 eos_t if step < min_new_tokens else None, repetition_penalty, no_repeat_ngram_size, first=step == 0)
        if forced_eos and step == max_new_tokens - 1:
            _force_token(logits, forced_eos)
        if do_sample:
            logits = warpers(logits)
        if renormalize_logits:  # the scores a step reports (Hugging Face's last processor)
            logits = torch.log_softmax(logits, dim=-1)
        next_tokens = (torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1) if do_sample
                       else logits.argmax(dim=-1))
        if scores_out is not None:
            scores_out.append(logits)
        if ends:
            next_tokens = torch.where(unfinished, next_tokens, pad)
        if eos:
            unfinished &= ~torch.isin(next_tokens, eos_t)
        if seq is not None:
            seq[:, cur] = next_tokens
        cur += 1
        if stop is not None:
            unfinished &= ~stop(seq[:, :cur], unfinished)
        yield next_tokens
        if ends and not bool(unfinished.any()):
            return
        step_input = next_tokens[:, None]


def _prepare(model, input_ids, attention_mask, max_new_tokens: int, decoder_input_ids=None, prompt_cache=None):
    """``model.prepare_generation`` for one sequence per prompt, and how many of the prompt's
    positions the cache already holds (``prompt_cache``'s, else none)."""
    ids, mask, cache = model.prepare_generation(input_ids, attention_mask, 1, max_new_tokens,
                                                **_prompt(decoder_input_ids))
    if prompt_cache is None:
        return ids, mask, cache, 0
    return ids, mask, *prompt_cache.take(model, ids, cache)


def _note_reused(record: dict | None, kept: int, cache) -> None:
    """``record["usage"]["cached_tokens"]`` (when the call asked): the prompt tokens whose keys and
    values a cache held before the prompt was read (a prompt cache's, or continuous batching's
    kept prefix: its slot's ``reused``)."""
    if record is not None and "usage" in record:
        record["usage"]["cached_tokens"] = kept + getattr(cache, "reused", 0)


def _check_prompt_cache(model, prompt_cache, input_ids, attention_mask, num_beams: int = 1, n_return: int = 1):
    """The checks of ``prompt_cache`` (none when it is None)."""
    if prompt_cache is None:
        return
    if not isinstance(prompt_cache, PromptCache):
        raise InputError(f"prompt_cache must be an attnkit.PromptCache, got {type(prompt_cache).__name__}")
    if hasattr(model, "decoder_start_ids"):
        raise InputError(f"prompt_cache is for decoder-only models; {type(model).__name__} is an encoder-decoder model")
    if input_ids.shape[0] != 1 or num_beams > 1 or n_return > 1:
        raise InputError(f"prompt_cache holds one sequence: give one prompt (got {input_ids.shape[0]}), one beam "
                         f"(got {num_beams}) and one sequence to return (got {n_return})")
    if attention_mask is not None and not bool(attention_mask.all()):
        raise InputError("prompt_cache holds one sequence without padding; the attention_mask masks some tokens")


def _check_guessing(model, input_ids, lookup, assistant, num_assistant_tokens, num_beams: int) -> None:
    """The checks of ``prompt_lookup_num_tokens`` and ``assistant_model`` (none when neither is given)."""
    if lookup is None and assistant is None:
        if num_assistant_tokens is not None:
            raise InputError("num_assistant_tokens needs an assistant_model")
        return
    name = "prompt_lookup_num_tokens" if assistant is None else "assistant_model"
    if lookup is not None and assistant is not None:
        raise InputError("prompt_lookup_num_tokens and assistant_model are two sources of guesses: give one")
    for arg, value in (("prompt_lookup_num_tokens", lookup), ("num_assistant_tokens", num_assistant_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{arg} must be a positive integer, got {value!r}")
    if num_beams > 1:
        raise InputError(f"{name} checks guesses one sequence at a time: it needs num_beams=1")
    if not hasattr(model, "generation_logits"):  # the decoding protocol's optional third method
        raise InputError(f"{name} is for decoder-only models; {type(model).__name__} does not give the logits of "
                         "several fed tokens (generation_logits)")
    if input_ids.shape[0] != 1:
        raise InputError(f"{name} decodes one prompt at a time (as in Hugging Face); got a batch of "
                         f"{input_ids.shape[0]}")
    if assistant is not None:
        if not hasattr(assistant, "generation_logits"):
            raise InputError(f"assistant_model must be a decoder-only attnkit model, got {type(assistant).__name__}")
        ours, theirs = model.config.vocab_size, assistant.config.vocab_size
        if ours != theirs:
            raise InputError(f"assistant_model must share the model's vocabulary: it has {theirs} tokens, the model "
                             f"{ours}")


class _StopStrings:
    """Which rows' text has just come to contain a stop string (Hugging Face's
    ``StopStringCriteria``): one that ends after the text of the tokens before the newest one,
    i.e. overlaps it. Each check decodes the last few tokens of a row (enough for the longest stop
    string, whatever the tokens' lengths), not the whole text."""

    def __init__(self, stops: list[str], tokenizer):
        self.stops, self.tokenizer = stops, tokenizer
        self.window = max(map(len, stops)) + 8  # tokens: at least one character each, but for UTF-8 pieces

    def __call__(self, seq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the ``rows`` of ``seq`` ``(B, L)`` whose newest token completes a stop string."""
        hits = torch.zeros_like(rows)
        for r in rows.nonzero().flatten().tolist():
            ids = seq[r, -self.window:].tolist()
            before, text = (self.tokenizer.decode(t, skip_special_tokens=False) for t in (ids[:-1], ids))
            start = len(before) if text.startswith(before) else 0
            hits[r] = any(text.find(s, max(0, start - len(s) + 1)) >= 0 for s in self.stops)
        return hits


def _stop_strings(stop_strings, tokenizer, num_beams: int) -> _StopStrings | None:
    """The checked ``stop_strings`` of a call as a :class:`_StopStrings`, or None."""
    if stop_strings is None:
        return None
    stops = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
    if not stops or any(not isinstance(s, str) or not s for s in stops):
        raise InputError(f"stop_strings must be a non-empty string or a list of them, got {stop_strings!r}")
    if tokenizer is None or not hasattr(tokenizer, "decode"):
        raise InputError("stop_strings needs the tokenizer (tokenizer=...) to read the generated text")
    if num_beams > 1:
        raise InputError("stop_strings is not supported with beam search (num_beams > 1)")
    return _StopStrings(stops, tokenizer)


def _lookup_candidates(seq: torch.Tensor, n: int, max_ngram: int = 2) -> torch.Tensor:
    """Prompt-lookup candidates (Saxena 2023; Hugging Face's ``PromptLookupCandidateGenerator``):
    the up to ``n`` tokens that followed the first earlier occurrence of the sequence's last
    ``max_ngram`` tokens (else of fewer); none when there is no such occurrence. ``seq``: ``(L,)``."""
    L = seq.shape[0]
    for size in range(min(max_ngram, L - 1), 0, -1):
        hits = (seq.unfold(0, size, 1)[:-1] == seq[L - size:]).all(-1).nonzero().flatten()
        for i in hits.tolist():
            if i + size < L:
                return seq[i + size:min(i + size + n, L)]
    return seq[:0]


class _AssistantGuesses:
    """Guesses from a smaller model with the same vocabulary (Leviathan et al. 2023, speculative
    decoding; Hugging Face's assisted generation): it decodes from its own KV cache, up to ``k``
    tokens a round; ``k`` grows by 2 after a round whose guesses were all confirmed and shrinks by
    1 otherwise (Hugging Face's "heuristic" schedule). Its cache keeps the positions the sequence
    confirmed and drops the rest. Greedy, or with ``sampling`` (``(warpers, generator)``) it samples
    each guess from its own warped distribution and keeps those distributions in ``q`` ``(n, V)``
    for the acceptance test (:func:`_speculative_token`)."""

    def __init__(self, assistant, input_ids, attention_mask, max_new_tokens: int, k: int, mask_buf,
                 sampling: tuple | None = None):
        self.model, self.k, self.mask_buf, self.sampling = assistant, k, mask_buf, sampling
        # A round's guesses stop short of the last new token: the model's own positions suffice.
        _, _, self.cache = assistant.prepare_generation(input_ids, attention_mask, 1, max_new_tokens)
        if hasattr(self.cache, "keep_all"):  # rolling caches (DecoderCache) keep every position: its rounds
            self.cache.keep_all()  # are truncated by up to k positions fed one at a time
        self.last: tuple[int, torch.Tensor] | None = None  # (where the last guesses started, the guesses)
        self.q: torch.Tensor | None = None

    def __call__(self, seq: torch.Tensor, cur: int, n: int) -> torch.Tensor:
        valid = self.cache.length
        if self.last is not None and len(self.last[1]):  # keep the cached guesses the sequence confirmed
            start, guesses = self.last
            known = min(len(guesses), cur - start)
            confirmed = int((seq[start:start + known] == guesses[:known]).long().cumprod(0).sum())
            valid = min(valid, start + confirmed)
            self.k = self.k + 2 if confirmed == len(guesses) else max(1, self.k - 1)
        self.cache.truncate(valid)
        n = min(n, self.k)
        out, q, feed = [], [], seq[valid:cur][None]
        for _ in range(n):
            length = self.cache.length + feed.shape[1]
            logits = self.model.generation_step(feed, None if self.mask_buf is None else self.mask_buf[:, :length],
                                                self.cache)
            if self.sampling is None:
                feed = logits.argmax(dim=-1, keepdim=True)
            else:
                warpers, generator = self.sampling
                probs = warpers(logits.float()).softmax(dim=-1)
                feed = torch.multinomial(probs, 1, generator=generator)
                q.append(probs[0])
            out.append(feed[0])
        guesses = torch.cat(out) if out else seq[:0]
        self.q = torch.stack(q) if q else None
        self.last = (cur, guesses)
        return guesses


def _speculative_token(p: torch.Tensor, q: torch.Tensor | None, guess: int | None, generator) -> torch.Tensor:
    """The ``(1,)`` token sampled at a position where the model's distribution is ``p`` ``(V,)``
    and ``guess`` was drawn from ``q`` ``(V,)`` (None: there is no guess, or it was not drawn from
    a known distribution). Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): the
    guess is kept with probability ``min(1, p(guess) / q(guess))``, else a token is drawn from
    ``max(0, p - q)`` renormalised; either way the token is distributed as ``p``. Without ``q``
    the token is drawn from ``p`` and a guess survives when it is that token."""
    if q is not None and guess is not None:
        u = torch.rand((), generator=generator, device=p.device)
        if bool(u * q[guess] <= p[guess]):
            return p.new_tensor([guess], dtype=torch.long)
        residual = (p - q).clamp_(min=0)  # positive somewhere, as p(guess) < q(guess), up to rounding:
        if bool(residual.sum() > 0):  # where p and q agree but for rounding, p itself
            p = residual
    return torch.multinomial(p, 1, generator=generator)


def _prompt_lookup(model, input_ids, attention_mask, generator, bans, eos, pad, forced_eos, max_new_tokens, do_sample,
                   warpers, min_new_tokens, repetition_penalty, no_repeat_ngram_size,
                   renormalize_logits=False, record=None, decoder_input_ids=None, lookup: int = 10,
                   assistant: tuple | None = None, stop=None, prompt_cache=None):
    """Decoding of one sequence that also checks guesses: each step feeds the last token and up to
    ``lookup`` guessed tokens, keeps the guesses the model confirms, its own token after them, and
    forgets the cache positions of the rest. The guesses are the tokens that once followed the
    sequence's last n-gram (Saxena 2023, prompt lookup), or with ``assistant`` (``(model, first
    round's guesses)``) a smaller model's continuation (:class:`_AssistantGuesses`). Greedy, a
    guess is confirmed when it is the model's argmax, so the tokens are greedy decoding's; sampled,
    by :func:`_speculative_token`, so each token is distributed as plain sampling's. A step emits 1
    to ``lookup + 1`` tokens. Yields each ``(1,)`` token. Called as :func:`_stream`."""
    scores_out, logits_out = (None, None) if record is None else (record.get("scores"), record.get("logits"))
    ids, mask, cache, kept = _prepare(model, input_ids, attention_mask, max_new_tokens, prompt_cache=prompt_cache)
    T = ids.shape[1]
    mask_buf = _mask_buffer(mask, T + max_new_tokens)
    if assistant is None:
        guess = lambda seq, cur, n: _lookup_candidates(seq[:cur], n)  # noqa: E731
    else:
        sampling = (warpers, generator) if do_sample else None
        guess = _AssistantGuesses(assistant[0], input_ids, attention_mask, max_new_tokens, assistant[1], mask_buf,
                                  sampling)
    start = _first_real(mask)
    eos_t = torch.tensor(eos, device=ids.device)
    seq = ids.new_empty(T + max_new_tokens)
    seq[:T] = ids[0]
    cur = T  # tokens in seq; the cache holds all but the last once decoding runs
    limit = _refeed_limit(model)
    step_mask = None if mask_buf is None else mask_buf[:, :cur]
    logits = model.generation_step(ids[:, kept:], step_mask, cache).float()[:, None]
    _note_reused(record, kept, cache)
    guesses, q = seq[:0], None
    while True:  # logits: (1, 1 + len(guesses), V), the rows for the last token and each guess
        for j in range(logits.shape[1]):
            produced = cur - T
            row = logits[:, j]
            if logits_out is not None:
                logits_out.append(row.clone())
            _process(row, seq[None, :cur], start, bans, eos_t if produced < min_new_tokens else None,
                     repetition_penalty, no_repeat_ngram_size, first=produced == 0)
            if forced_eos and produced == max_new_tokens - 1:
                _force_token(row, forced_eos)
            if do_sample:
                row = warpers(row)
            if renormalize_logits:
                row = torch.log_softmax(row, dim=-1)
            if scores_out is not None:
                scores_out.append(row)
            guessed = int(guesses[j]) if j < len(guesses) else None
            token = (_speculative_token(row[0].softmax(dim=-1), None if guessed is None or q is None else q[j],
                                        guessed, generator) if do_sample else row.argmax(dim=-1))
            yield token
            seq[cur] = token[0]
            cur += 1
            if (eos and bool(torch.isin(token, eos_t))) or cur - T == max_new_tokens:
                return
            if stop is not None and bool(stop(seq[None, :cur], token.new_ones(1, dtype=torch.bool))):
                return
            if guessed is None or int(token) != guessed:
                break  # the rows after a wrong guess were computed for another text
        cache.truncate(cur - 1)  # the positions of the guesses not kept
        # Guesses stop short of a refeed limit, so that the refeed comes where plain decoding's does.
        room = limit - cur if limit is not None and cur <= limit else lookup
        guesses = guess(seq, cur, min(lookup, room, max_new_tokens - (cur - T) - 1))
        q = getattr(guess, "q", None)
        n = len(guesses)
        feed = torch.cat([seq[:cur] if _must_refeed(limit, cache, cur + n) else seq[cur - 1:cur], guesses])[None]
        step_mask = None if mask_buf is None else mask_buf[:, :cur + n]
        logits = model.generation_logits(feed, step_mask, cache)[:, -1 - n:].float()


@torch.inference_mode()
def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    typical_p: float | None = None,
    epsilon_cutoff: float | None = None,
    eta_cutoff: float | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    length_penalty_style: str = "hf",
    early_stopping: bool | str | None = None,
    eos_token_id: int | Sequence[int] | str | None = "config",
    pad_token_id: int | str | None = "config",
    attention_mask: torch.Tensor | None = None,
    streamer=None,
    generator: torch.Generator | None = None,
    pack_weights: bool | str = "auto",
    forced_eos_token_id: int | str | None = "config",
    bad_words_ids: Sequence[Sequence[int]] | None = None,
    suppress_tokens: Sequence[int] | None = None,
    begin_suppress_tokens: Sequence[int] | None = None,
    min_new_tokens: int | None = None,
    repetition_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    num_return_sequences: int | None = None,
    renormalize_logits: bool | None = None,
    return_dict_in_generate: bool = False,
    output_scores: bool = False,
    output_logits: bool = False,
    max_length: int | None = None,
    min_length: int | None = None,
    decoder_input_ids: torch.Tensor | None = None,
    logits_processor: Sequence | None = None,
    prompt_lookup_num_tokens: int | None = None,
    assistant_model=None,
    num_assistant_tokens: int | None = None,
    stop_strings: str | Sequence[str] | None = None,
    tokenizer=None,
    prompt_cache: PromptCache | None = None,
) -> torch.Tensor | GenerateOutput:
    """Generate tokens with Hugging Face's argument names and semantics (for the arguments below;
    Hugging Face's other logits processors can be passed in ``logits_processor``).

    An argument left at None (``"config"`` for the special tokens) takes the value of
    ``model.generation_config`` (:class:`~attnkit.GenerationConfig`, read from a
    checkpoint's ``generation_config.json``), else the default given below.

    Args:
        input_ids: ``(B, T)`` prompts, left-padded when their lengths differ (decoder-only), or
            source sentences (encoder-decoder; Whisper: ``(B, n_mels, frames)`` log-mel features).
        decoder_input_ids: ``(B, P)`` decoder prompt of an encoder-decoder model, which the new
            tokens continue and the output starts with (default: the decoder's start token);
            Whisper's ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>``, for example.
        attention_mask: ``(B, T)`` padding mask of ``input_ids`` (True/1 = real token).
        max_new_tokens: default 20. ``max_length`` gives it as a total, as in Hugging Face: the
            prompt counts (decoder-only) or the decoder's start token (encoder-decoder);
            a ``max_new_tokens`` from the call or the generation config wins over the call's
            ``max_length``, which wins over the config's.
        do_sample, temperature, top_k, top_p, min_p: sampling (default greedy; temperature 1; top-k
            50, no top-p and no min-p, Hugging Face's defaults); ``top_k=0`` / ``top_p=1.0`` /
            ``min_p=0`` turn them off. ``min_p`` removes the tokens less likely than ``min_p``
            times the most likely one (Nguyen et al. 2024), after temperature, top-k and top-p.
        typical_p, epsilon_cutoff, eta_cutoff: Hugging Face's other warpers, after min-p in this
            order (off by default): typical sampling keeps the tokens whose surprisal is closest to
            the entropy, up to ``typical_p`` of the mass (Meister et al. 2023); epsilon sampling
            drops tokens below probability ``epsilon_cutoff``, eta sampling those below
            ``min(eta, √eta · exp(-entropy))`` (Hewitt et al. 2022).
        num_beams, length_penalty, early_stopping: beam search (default 1 beam, 1.0, False);
            finished hypotheses are scored ``sum log p / len ** length_penalty``;
            ``length_penalty_style="gnmt"`` divides by ``((5 + len) / 6) ** length_penalty``
            instead (Wu et al. 2016, eq. 14; Vaswani et al. 2017 decode with beam 4 and α = 0.6).
        eos_token_id: one id or a list; finished rows are padded with ``pad_token_id``. The
            default ``"config"`` takes the generation config's, then ``model.config``'s (Hugging
            Face does not fall back to ``config.json`` for a token a checkpoint's
            ``generation_config.json`` leaves out); ``eos_token_id=None`` never stops early.
            Padding falls back to the first EOS id, then 0.
        forced_eos_token_id: the token a hypothesis still running at ``max_new_tokens`` ends
            with; ``"config"`` (the default) as for ``eos_token_id`` (Marian checkpoints set it to
            EOS), None forces nothing.
        bad_words_ids: token sequences never generated, ``[[id, ...], ...]``: a sequence's last
            token is banned where the text so far ends with the rest of it (a one-token sequence:
            always, except an EOS id); ``[]`` turns off a config's.
        suppress_tokens: tokens never generated, ``[id, ...]``; ``[]`` turns off a config's.
        begin_suppress_tokens: tokens never generated as the first new token (Whisper's blank
            and end of text), ``[id, ...]``; ``[]`` turns off a config's.
        min_new_tokens: EOS is not generated before this many new tokens (default 0);
            ``min_length`` is a total, counted and ranked as ``max_length`` is.
        repetition_penalty: divides the positive scores of tokens already in the sequence (the
            prompt included, or the decoder's tokens) by it and multiplies the negative ones
            (default 1.0: off; Keskar et al. 2019 use 1.2).
        no_repeat_ngram_size: no n-gram of this size appears twice in the sequence (default 0: off).
        logits_processor: callables ``(input_ids (B, L), scores (B, V)) -> scores`` run after
            the processors above on every step's scores, as Hugging Face's ``logits_processor``
            list (``input_ids``: the sequence so far, the prompt or decoder prompt included;
            beam search passes log-probabilities, one row per beam); a
            ``transformers.LogitsProcessor`` works as is.
        renormalize_logits: log-softmax the scores again after the processors (default False):
            beam search ranks with them, and ``output_scores`` reports them.
        num_return_sequences: sequences per input (default 1), in the output's rows
            ``i * n ... i * n + n - 1`` for input ``i``: the ``n`` best hypotheses of beam search
            (best first; ``n <= num_beams``), or ``n`` independent samples.
        streamer: Hugging Face's streamer protocol: ``put(ids)`` with the ``(B, T)`` ids the
            output starts with, ``put(tokens)`` with each step's ``(B,)`` tokens, then ``end()``
            (:class:`~attnkit.generation.TokenIteratorStreamer`, or ``transformers.TextStreamer``).
        generator: a ``torch.Generator`` for reproducible sampling.
        pack_weights: decode from weights packed for oneDNN's CPU kernels
            (:func:`attnkit.nn.packed_weights`): up to 2x the tokens/s on CPU (bf16 weights, or
            several rows per step) for a second copy of the weights while decoding; packing
            GPT-2 small takes 0.1 s. ``"auto"`` (the default) packs for calls of at least
            ``AUTO_PACK_MIN_TOKENS`` new tokens when the copy takes at most half the available
            memory; True packs, False never does. Hold ``with attnkit.nn.packed_weights(model):``
            around many calls instead to pack once.

        prompt_lookup_num_tokens: decoding that also checks up to this many guessed tokens per
            step (Saxena 2023, Hugging Face's prompt lookup decoding): the tokens that followed an
            earlier occurrence of the text's last two tokens (else its last one), in the prompt or
            the output. One forward pass verifies them all; the tokens the model confirms cost no
            step of their own. Greedy, the output is greedy decoding's (up to the rounding of a
            several-token pass); sampled, a guess is kept when the sampled token is the guess, so
            the tokens are plain sampling's for the same ``generator``. It pays when the output
            repeats its input (summaries, edits, extraction, code). One prompt, no beams,
            decoder-only models.
        assistant_model: a smaller decoder-only model with the same vocabulary whose continuation
            supplies the guesses instead (speculative decoding, Leviathan et al. 2023; Hugging
            Face's assisted generation), faster when the assistant often agrees with this model.
            Greedy, the output is this model's greedy decoding. With ``do_sample`` the assistant
            samples its guesses from its own distribution ``q`` (the same temperature, top-k and
            top-p), each is kept with probability ``min(1, p / q)`` and the first one rejected is
            replaced by a draw from ``max(0, p - q)`` (speculative sampling): every token is
            distributed as plain sampling from this model's ``p``. ``num_assistant_tokens``: its
            guesses in the first round (default 5), then 2 more after a round it got all right
            and 1 fewer after one it did not.

        stop_strings, tokenizer: a string or a list of strings that end a row when its text (read
            with ``tokenizer.decode``) comes to contain one, overlapping the newest token, as
            Hugging Face's ``StopStringCriteria``; the token that completes it is kept, then the row
            is padded as after EOS. Not with beam search.
        prompt_cache: an :class:`~attnkit.PromptCache` kept between calls: the prompt's tokens that
            start as the cached sequence does (the last call's prompt and output) are not fed
            again, only the rest (a chat's new turn); then it holds this call's sequence. One
            prompt, no beams, decoder-only models.

        return_dict_in_generate, output_scores, output_logits: return a
            :class:`~attnkit.models.outputs.GenerateOutput` with the ``sequences`` and, when asked,
            each step's processed ``scores`` and raw ``logits``, and beam search's
            ``sequences_scores`` and ``beam_indices`` (Hugging Face's fields).

    Returns ``(B · num_return_sequences, T_out)`` token ids, or a ``GenerateOutput``.
    """
    try:
        if length_penalty_style not in LENGTH_PENALTY_STYLES:
            raise InputError(f"length_penalty_style must be one of {LENGTH_PENALTY_STYLES}, got {length_penalty_style!r}")
        attention_mask, s = _check_args(
            model, input_ids, attention_mask, generator, decoder_input_ids, max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
            epsilon_cutoff=epsilon_cutoff, eta_cutoff=eta_cutoff, num_beams=num_beams,
            length_penalty=length_penalty,
            early_stopping=early_stopping, renormalize_logits=renormalize_logits, min_new_tokens=min_new_tokens,
            repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
            num_return_sequences=num_return_sequences, max_length=max_length, min_length=min_length)
        num_beams, n_return = s.pop("num_beams"), s.pop("num_return_sequences")
        if num_beams > 1 and streamer is not None:
            raise InputError("streamer is not supported with beam search (num_beams > 1)")
        _check_guessing(model, input_ids, prompt_lookup_num_tokens, assistant_model, num_assistant_tokens, num_beams)
        _check_prompt_cache(model, prompt_cache, input_ids, attention_mask, num_beams, n_return)
        stop = _stop_strings(stop_strings, tokenizer, num_beams)
        special = _special_ids(model, eos_token_id, pad_token_id, forced_eos_token_id)
        bans = _bans(model, bad_words_ids, suppress_tokens, special[0], input_ids.device, begin_suppress_tokens,
                     logits_processor)
    except BaseException:
        if streamer is not None:  # a consumer in another thread must not wait forever
            streamer.end()
        raise
    record = {k: [] for k, wanted in (("scores", output_scores), ("logits", output_logits)) if wanted} \
        if return_dict_in_generate else None

    def result(sequences, sequences_scores=None, beam_indices=None):
        if record is None:
            return sequences
        return GenerateOutput(sequences, sequences_scores if output_scores else None,
                              *(tuple(record[k]) if k in record else None for k in ("scores", "logits")), beam_indices)

    if num_beams > 1:
        with _packing(model, pack_weights, input_ids.shape[0] * num_beams, s["max_new_tokens"]):
            return result(*_beam_search(model, input_ids, attention_mask, num_beams, length_penalty_style, generator,
                                        bans, *special, n_return, **s, record=record,
                                        decoder_input_ids=decoder_input_ids))
    if n_return > 1:  # independent samples: each input n times (Hugging Face's order)
        input_ids = input_ids.repeat_interleave(n_return, dim=0)
        attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(n_return, dim=0)
        if decoder_input_ids is not None:
            decoder_input_ids = decoder_input_ids.repeat_interleave(n_return, dim=0)
    beam_only = ("length_penalty", "early_stopping")
    steps = []
    decode, rows = _decoder(prompt_lookup_num_tokens, input_ids.shape[0], assistant_model, num_assistant_tokens,
                            prompt_cache)
    try:
        with _packing(model, pack_weights, rows, s["max_new_tokens"]):
            for tokens in decode(model, input_ids, attention_mask, generator, bans, *special,
                                 **{k: v for k, v in s.items() if k not in beam_only}, record=record,
                                 decoder_input_ids=decoder_input_ids, stop=stop):
                if streamer is not None:
                    if not steps:  # as in Hugging Face: first what the output starts with
                        streamer.put(_decoder_prefix(model, input_ids, decoder_input_ids))
                    streamer.put(tokens)
                steps.append(tokens)
    finally:  # a consumer in another thread must not wait forever when decoding fails
        if streamer is not None:
            streamer.end()
    return result(torch.cat([_decoder_prefix(model, input_ids, decoder_input_ids), torch.stack(steps, dim=1)], dim=1))


def compute_transition_scores(sequences: torch.Tensor, scores: Sequence[torch.Tensor],
                              beam_indices: torch.Tensor | None = None, normalize_logits: bool = False) -> torch.Tensor:
    """The score of each generated token, ``(rows, new tokens)``, from a ``generate(...,
    return_dict_in_generate=True, output_scores=True)`` output: ``scores[t][row, token]``, read
    through ``beam_indices`` after beam search (0 where a hypothesis had ended), as Hugging Face's
    ``compute_transition_scores``. ``normalize_logits`` log-softmaxes each step's scores first."""
    if not scores:
        raise InputError("scores is empty: pass the output's scores (generate with output_scores=True)")
    steps = torch.stack(tuple(scores), dim=1)  # (rows, steps, V)
    if normalize_logits:
        steps = torch.log_softmax(steps.float(), dim=-1)
    if beam_indices is None:  # greedy search or sampling: row i is sequence i at every step
        beam_indices = torch.arange(steps.shape[0], device=steps.device)[:, None].expand(-1, steps.shape[1])
    ended = beam_indices < 0
    n = int((~ended).sum(-1).max())
    rows, ended = beam_indices[:, :n].clamp(min=0), ended[:, :n]
    tokens = sequences[:, sequences.shape[1] - n:]
    out = steps[rows, torch.arange(n, device=steps.device), tokens]
    return out.masked_fill(ended, 0.0)


AUTO_PACK_MIN_TOKENS = 32  # packing GPT-2 small costs about 6 decoding steps and gains 25-40% of each


def _packing(model, pack_weights: bool | str, rows: int, max_new_tokens: int):
    """The :func:`packed_weights` block of one decoding call (``pack_weights``: see :func:`generate`)."""
    if pack_weights == "auto":
        if max_new_tokens < AUTO_PACK_MIN_TOKENS:
            return nullcontext()
        return packed_for_decoding(model, rows)
    if isinstance(pack_weights, bool):
        return packed_for_decoding(model, rows, fit=False) if pack_weights else nullcontext()
    raise InputError(f"pack_weights must be True, False or 'auto', got {pack_weights!r}")


def packed_for_decoding(model, rows: int = 1, fit: bool = True):
    """A :func:`~attnkit.nn.packed_weights` block over what a decoding step of ``model`` runs
    (the decoding protocol's optional ``generation_modules()``, else the whole model), for
    ``rows`` sequences per step. With ``fit``, nothing is packed unless the copy fits in half
    of the memory still available. Hold it around many ``generate`` calls (a server does) to
    pack once instead of once per call: the calls inside reuse the copies."""
    free = available_memory() if fit else None
    step_modules = model.generation_modules() if hasattr(model, "generation_modules") else model
    return packed_weights(step_modules, rows, max_bytes=None if free is None else free // 2)


def _decoder_prefix(model, input_ids, decoder_input_ids=None):
    """What the output starts with: the prompt, the decoder prompt, or the decoder start token."""
    if decoder_input_ids is not None:
        return decoder_input_ids
    start = getattr(model, "decoder_start_ids", None)
    return input_ids if start is None else start(input_ids.shape[0], input_ids.device)


def _prompt(decoder_input_ids) -> dict:
    """``prepare_generation``'s keyword for a decoder prompt (none when the call gives none:
    decoder-only models do not take it)."""
    return {} if decoder_input_ids is None else {"decoder_input_ids": decoder_input_ids}


LENGTH_PENALTY_STYLES = ("hf", "gnmt")


def _length_norm(length: int, alpha: float, style: str) -> float:
    """Divisor of a hypothesis' summed log-probability: ``len ** α`` (Hugging Face) or GNMT's
    ``((5 + len) / 6) ** α`` (Wu et al. 2016, eq. 14)."""
    return ((5 + length) / 6) ** alpha if style == "gnmt" else length**alpha


def _beam_search(model, input_ids, attention_mask, num_beams, length_penalty_style, generator, bans, eos, fill,
                 forced_eos, n_return, max_new_tokens, do_sample, warpers, length_penalty,
                 early_stopping,
                 renormalize_logits, min_new_tokens, repetition_penalty, no_repeat_ngram_size, record=None,
                 decoder_input_ids=None):
    """Beam search with Hugging Face's rules (``GenerationMixin._beam_search``), vectorised over
    the batch: keep the top ``2·num_beams`` candidates, finish those ending in EOS that rank in
    the top ``num_beams``, continue the best ``num_beams`` unfinished ones, and stop when no
    running beam can beat the worst finished hypothesis. Token scores are log-softmaxed, then
    processed (:func:`_process`), forced and (when sampling) warped, then re-normalised with
    ``renormalize_logits``: Hugging Face's order of logits processors."""
    scores_out, logits_out = (None, None) if record is None else (record.get("scores"), record.get("logits"))
    reads_sequence = _reads_sequence(repetition_penalty, no_repeat_ngram_size, bans)
    B, nb = input_ids.shape[0], num_beams
    eos_t = torch.tensor(eos, device=input_ids.device, dtype=torch.long)
    K = max(2, 1 + len(eos)) * nb
    top_nb = torch.arange(K, device=input_ids.device) < nb

    ids, mask, cache = model.prepare_generation(input_ids, attention_mask, nb, max_new_tokens,
                                                **_prompt(decoder_input_ids))
    T0 = ids.shape[1]
    max_len = T0 + max_new_tokens
    mask_buf = _mask_buffer(mask, max_len)
    start = _first_real(mask)
    dev = ids.device
    # A hypothesis is its max_len tokens, then (with ``record``) the row of the step's scores each
    # new token came from: one gather moves both.
    width = max_len + (max_new_tokens if record is not None else 0)
    running = torch.full((B, nb, width), fill, dtype=torch.long, device=dev)
    running[:, :, :T0] = ids.view(B, nb, T0)
    running[:, :, max_len:] = -1
    finished = running.clone()
    run_scores = torch.zeros(B, nb, device=dev)
    run_scores[:, 1:] = -1e9  # only the first beam's tokens count at the start
    fin_scores = torch.full((B, nb), -1e9, device=dev)
    fin_flag = torch.zeros(B, nb, dtype=torch.bool, device=dev)
    fin_len = torch.zeros(B, nb, dtype=torch.long, device=dev)
    open_heuristic = torch.ones(B, 1, dtype=torch.bool, device=dev)
    batch_offset = (torch.arange(B, device=dev) * nb)[:, None]

    cur = T0
    limit = _refeed_limit(model)
    logits = model.generation_step(ids, None if mask_buf is None else mask_buf[:, :cur], cache).float()
    while True:
        # In place where possible: fresh (B·nb, V) tensors every step cost page faults.
        logits = logits.contiguous()  # the model's fresh logits, ours to overwrite
        if logits_out is not None:
            logits_out.append(logits.clone())
        logp = torch.log_softmax(logits, dim=-1, out=logits)
        seq = running[:, :, :cur].reshape(B * nb, cur) if reads_sequence else None
        _process(logp, seq, start, bans, eos_t if cur - T0 < min_new_tokens else None, repetition_penalty,
                 no_repeat_ngram_size, first=cur == T0)
        if forced_eos and cur == max_len - 1:
            _force_token(logp, forced_eos)
        if do_sample:
            logp = warpers(logp, min_tokens_to_keep=1 + max(1, len(eos)))
        if renormalize_logits:
            logp = torch.log_softmax(logp, dim=-1)
        if scores_out is not None:
            scores_out.append(logp.clone())
        V = logp.shape[-1]
        logp = logp.view(B, nb, V).add_(run_scores[:, :, None]).view(B, nb * V)
        if do_sample:
            top_idx = torch.multinomial(logp.softmax(-1), K, generator=generator)
            top_lp = logp.gather(1, top_idx)
            top_lp, order = top_lp.sort(dim=-1, descending=True)
            top_idx = top_idx.gather(1, order)
        else:
            top_lp, top_idx = torch.topk(logp, K)
        src_beam, tokens = top_idx // V, top_idx % V
        cand = running.gather(1, src_beam[:, :, None].expand(B, K, width)).clone()
        cand[:, :, cur] = tokens
        if width > max_len:
            cand[:, :, max_len + cur - T0] = src_beam + batch_offset
        hits = torch.isin(tokens, eos_t) | (cur + 1 >= max_len)

        # Continue the best num_beams candidates that did not just finish.
        run_lp = top_lp + hits.float() * -1e9
        keep = torch.topk(run_lp, nb).indices
        running = cand.gather(1, keep[:, :, None].expand(B, nb, width))
        run_scores = run_lp.gather(1, keep)
        beam_idx = (src_beam.gather(1, keep) + batch_offset).view(-1)

        # Add the top-num_beams candidates that just finished to the finished hypotheses.
        just = hits & top_nb[None, :]
        f_lp = top_lp / _length_norm(cur + 1 - T0, length_penalty, length_penalty_style)
        f_lp = f_lp + (fin_flag.all(-1, keepdim=True) & (early_stopping is True)).float() * -1e9
        f_lp = f_lp + (~open_heuristic).float() * -1e9
        f_lp = f_lp + (~just).float() * -1e9
        merged_scores = torch.cat([fin_scores, f_lp], dim=1)
        best = torch.topk(merged_scores, nb).indices
        merged_seqs = torch.cat([finished, cand], dim=1)
        finished = merged_seqs.gather(1, best[:, :, None].expand(B, nb, width))
        fin_scores = merged_scores.gather(1, best)
        fin_flag = torch.cat([fin_flag, just], dim=1).gather(1, best)
        fin_len = torch.cat([fin_len, torch.full_like(top_lp, cur + 1 - T0, dtype=torch.long)], dim=1).gather(1, best)

        cur += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_len - T0
        else:
            best_len = cur - T0
        best_possible = run_scores[:, :1] / _length_norm(best_len, length_penalty, length_penalty_style)
        worst_finished = torch.where(fin_flag, fin_scores.min(dim=1, keepdim=True).values, -1.0e9)
        open_heuristic = open_heuristic & (best_possible > worst_finished).any(-1, keepdim=True)
        go_on = open_heuristic.any() & ~hits.all()  # an improvement is possible and a beam still runs
        if early_stopping is True:
            go_on &= ~fin_flag.all()  # ... and not every finished slot is filled
        if not bool(go_on):  # one read from the device per step
            break
        cache.reorder(beam_idx)
        step_mask = None if mask_buf is None else mask_buf[:, :cur]
        feed = running[:, :, :cur] if _must_refeed(limit, cache, cur) else running[:, :, cur - 1:cur]
        logits = model.generation_step(feed.reshape(B * nb, -1), step_mask, cache).float()

    new = int(fin_len[:, :n_return].max())
    best = finished[:, :n_return].reshape(B * n_return, width)  # best first, each input's in turn
    beam_indices = best[:, max_len:max_len + new] if width > max_len else None
    return best[:, :T0 + new], fin_scores[:, :n_return].reshape(-1), beam_indices
