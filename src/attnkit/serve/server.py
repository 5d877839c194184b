"""An HTTP server for one model, with OpenAI's request and response shapes, so existing clients
work against it:

- ``POST /v1/completions`` — text generation (GPT continues the prompt; an encoder-decoder
  model such as T5 or the translation Transformer reads it as its source): ``prompt`` (text or
  token ids), ``max_tokens`` (0 with ``echo``: the prompt scored alone), ``temperature`` (0 =
  greedy), ``top_p``, ``stop``, ``seed``, ``stream`` (server-sent events), ``echo``,
  ``logprobs`` (0-5: each token's log-probability under the model and the most likely tokens,
  the prompt's too with ``echo``, as evaluation harnesses read them; decoder-only models; streamed
  with the piece each token begins in), ``n`` (choices per prompt, the k-th sampled from
  ``seed + k``), ``frequency_penalty``, ``presence_penalty`` and ``logit_bias`` (OpenAI's
  formula over the generated tokens), ``response_format`` (``{"type": "json_object"}``: JSON
  mode, the reply constrained to a JSON object; ``{"type": "json_schema", "json_schema":
  {"schema": ...}}``: to a document the schema accepts; :mod:`attnkit.generation.constraints`);
  ``top_k``, ``min_p``, ``repetition_penalty``, ``guided_regex`` (the reply matches the regex
  whole, :mod:`attnkit.generation.regex`) and ``guided_choice`` (the reply is one of the listed
  strings) too (vLLM's extra fields).
- ``POST /v1/chat/completions`` — a conversation (``messages``) rendered with the tokenizer's chat
  template (``Tokenizer.apply_chat_template``, the assistant's turn opened) and continued by a
  decoder-only model until its end-of-turn token (the tokenizer's EOS or the generation
  config's): the completion fields plus ``max_completion_tokens`` (default: up to the server's
  limit), ``chat_template_kwargs``, ``logprobs`` and ``top_logprobs`` (streamed too), ``tools``
  with ``tool_choice`` (``auto``, ``none``, ``required`` or a named function: the reply is then
  constrained to one call in the model's format) and ``parallel_tool_calls`` (calls read back out of
  the reply, :mod:`attnkit.serve.tools`); ``stream`` sends ``chat.completion.chunk`` deltas.
- ``POST /v1/embeddings`` — sentence embeddings of a BERT-style encoder (mean pooling,
  L2-normalised; a CLIP's or SigLIP's text features, for searching images embedded by
  :func:`attnkit.embed_images`): ``input`` (a string or a list of strings), ``encoding_format`` (``"float"``,
  or ``"base64"``: little-endian float32 bytes). Requests that wait for the model at the same
  time are embedded in one call.
- ``POST /v1/audio/transcriptions`` — speech to text with a Whisper model, as a
  ``multipart/form-data`` upload: ``file`` (a PCM WAV file, any sampling rate), ``language``,
  ``response_format`` (``json``, ``text``, or ``verbose_json``: timed ``segments`` from
  Whisper's sequential long-form algorithm, with ``openai/whisper``'s segment fields, and
  ``words`` with ``timestamp_granularities[]=word``),
  ``temperature`` (0, the default: as OpenAI's API, Whisper's own decoding, greedy with its
  fallback to higher temperatures for a window that loops or is unlikely, silence detection and
  conditioning on the previous text, sampled from a fixed seed so that the same upload gives the
  same text, :func:`attnkit.generation.speech.whisper_defaults`; up to 1: sampled at that
  temperature), ``prompt`` (text the decoder reads before each window).
- ``POST /v1/audio/translations`` — the same upload, translated into English (Whisper's
  ``translate`` task; multilingual checkpoints).
- ``GET /v1/models`` and ``GET /health``.

Requests are checked before any work: a body that is not a JSON object, a missing or mistyped
field, an unknown field, a value out of range, a prompt too long for the model are ``400``
answers whose ``error.message`` names the field and what was expected (``error.param`` names it
too); unknown paths ``404``, wrong methods ``405``, a missing length ``411``, a body over
``max_body_bytes`` (``max_audio_bytes`` for uploads) ``413``, a content type the endpoint does
not take ``415``. Nothing in a request can crash the
server; an unexpected failure is a ``500`` whose details go to the server's log, not the client.

The standard library's threading HTTP server reads requests concurrently. Text generation with a
decoder-only model is batched across them (continuous batching,
:class:`~attnkit.generation.batching.BatchedDecoding`): each request keeps its own sampling
settings, seed, constraints and stop strings, while one forward pass per step serves every
request decoding at that moment (up to ``max_batch_size``; the ``n`` choices of one request decode
side by side too, streamed or not), and a request that arrives joins the others at their next
step. Each reply is the one the request gets alone, up to float rounding (greedy decoding can
differ where two tokens tie to the last bits). Everything else (embeddings, transcription,
encoder-decoder models, a server with an assistant model, ``max_batch_size=1``) runs one request
at a time, which keeps results identical to direct calls and leaves PyTorch's own threads to use
the cores. The model computes in one thread (:class:`~attnkit.generation.batching.ModelThread`),
and ``serve_forever`` makes that its calling thread (the main one, for ``attnkit serve``: where
PyTorch's CPU thread pool is) and runs HTTP in another: on CPU a thread that computes while the
main thread's pool exists waits on every small parallel region (decoding 1.4-1.6× slower). On
CPU the server decodes from weights packed once for oneDNN
(:func:`~attnkit.generation.packed_for_decoding`, for as long as it runs: bf16 layers, where
packing pays at one sequence per step, and only when the copy fits in half the free memory)
instead of packing per request or not at all for short ones; ``pack_weights=False`` turns it off.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import logging
import queue
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from attnkit.errors import AttnkitError, InputError
from attnkit.generation.batching import BatchedDecoding, ModelThread
from attnkit.generation.decoding import packed_for_decoding
from attnkit.generation.constraints import JSONLogitsProcessor, JSONSchemaGrammar
from attnkit.generation.regex import RegexGrammar
from attnkit.generation.processors import OpenAIPenalties
from attnkit.generation.prompt_cache import PromptCache
from attnkit.generation.text import TextStream, end_of_turn_ids, token_logprobs
from attnkit.serve.tools import (TOOL_FORMATS, ToolCallDeltas, ToolCallFilter, detect_tool_format,
                                 openai_tool_calls, parse_tool_calls, template_messages, tool_call_grammar)

log = logging.getLogger("attnkit.serve")

MAX_BODY_BYTES = 1 << 20
COMPLETION_FIELDS = ("model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                     "stop", "seed", "stream", "echo", "n", "logprobs", "user", "frequency_penalty", "presence_penalty",
                     "logit_bias", "response_format", "guided_regex", "guided_choice")
CHAT_FIELDS = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
               "repetition_penalty", "stop", "seed", "stream", "stream_options", "n", "logprobs", "top_logprobs",
               "user", "frequency_penalty", "presence_penalty", "logit_bias", "chat_template_kwargs", "tools",
               "tool_choice", "parallel_tool_calls", "response_format", "guided_regex", "guided_choice")
EMBEDDING_FIELDS = ("model", "input", "encoding_format", "user")
TRANSCRIPTION_FIELDS = ("file", "model", "language", "response_format", "temperature", "prompt",
                        "timestamp_granularities[]")
TRANSLATION_FIELDS = ("file", "model", "response_format", "temperature", "prompt")
MAX_AUDIO_BYTES = 25 << 20  # OpenAI's limit for an upload


class RequestError(AttnkitError):
    """A request the server refuses: ``status`` and the ``param`` it names (OpenAI's error shape)."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


def _field(body: dict, name: str, kinds: tuple[type, ...], default=None, check=None, expected: str = ""):
    """``body[name]`` if present (``default`` otherwise), of one of ``kinds`` (bool is not a number)
    and passing ``check``; else a :class:`RequestError` naming the field and ``expected``."""
    if name not in body or body[name] is None:
        return default
    value = body[name]
    numeric = {int, float} & set(kinds)
    if not isinstance(value, kinds) or (numeric and isinstance(value, bool) and bool not in kinds) \
            or (check is not None and not check(value)):
        raise RequestError(f"'{name}' must be {expected}, got {json.dumps(value)[:80]}", param=name)
    return value


def _texts(body: dict, name: str, max_items: int = 256, vocab: int | None = None) -> list[str | list[int]]:
    """A required string, or a non-empty list of strings, as a list. With ``vocab``, token ids
    too: a list of ids in ``[0, vocab)`` (one prompt) or a list of such lists."""
    if name not in body:
        raise RequestError(f"'{name}' is required", param=name)
    value = body[name]
    is_ids = lambda v: (isinstance(v, list) and v and all(  # noqa: E731
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in v))
    if vocab is not None and (is_ids(value) or isinstance(value, list) and value and all(map(is_ids, value))):
        items = [value] if is_ids(value) else value
        if len(items) <= max_items:
            return items
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or len(items) > max_items \
            or any(not isinstance(t, str) or not t for t in items):
        ids = f", or token ids in [0, {vocab}) (a list, or a list of lists)" if vocab is not None else \
            " (token arrays are not accepted)"
        raise RequestError(f"'{name}' must be a non-empty string or a list of 1 to {max_items} non-empty strings{ids}",
                           param=name)
    return items


class ModelServer:
    """The model, its tokenizer and the request handling, apart from HTTP (testable alone).

    ``max_new_tokens_limit`` caps ``max_tokens``; ``name`` is what ``/v1/models`` lists and
    responses carry as ``model``. ``pack_weights``: decode from weights packed once, until
    :meth:`close` (see the module doc). ``assistant``: a smaller decoder-only model with the same
    vocabulary whose guesses every request checks (``generate(assistant_model=...)``: greedy, the
    same text; sampled, speculative sampling, the same distribution; faster when it guesses well).
    ``tool_format``: how the model writes tool calls (:data:`attnkit.serve.tools.TOOL_FORMATS`);
    ``"auto"`` reads it from the chat template, None serves no ``tools``. ``embeddings``: serve
    ``/v1/embeddings`` with a decoder-only model too (an embedding model such as Qwen3-Embedding:
    its last token's state, normalised; :func:`attnkit.embed`); encoders always serve it.
    ``max_batch_size``: the most sequences a decoder-only model decodes at once across requests
    (continuous batching, see the module doc); 1 decodes one request at a time.
    ``prefix_cache_bytes``: the memory the batching keeps finished sequences' keys and values in,
    for requests whose prompt starts as one of them did (a chat's next turn: only its new tokens
    are read; :class:`~attnkit.generation.BatchedDecoding`); 0 keeps none. A decoder-only model
    that decodes one request at a time keeps the last sequence instead (a
    :class:`~attnkit.generation.PromptCache`; unless 0). The model's work
    runs in :attr:`model_thread` (the batching's, or a :class:`~attnkit.generation.batching.ModelThread`
    that runs one request's work at a time); ``serve_forever`` makes its calling thread that one.
    :meth:`close` stops it and drops the packed weights."""

    def __init__(self, model, tokenizer, name: str = "attnkit", max_new_tokens_limit: int = 1024,
                 pack_weights: bool = True, assistant=None, tool_format: str | None = "auto",
                 embeddings: bool = False, max_batch_size: int = 8, prefix_cache_bytes: int = 2**30):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        if tool_format not in (None, "auto", *TOOL_FORMATS):
            raise InputError(f"tool_format must be 'auto', None or one of {TOOL_FORMATS}, got {tool_format!r}")
        self.tool_format = detect_tool_format(getattr(tokenizer, "chat_template", None)) if tool_format == "auto" \
            else tool_format
        self.assistant = None if assistant is None else assistant.eval()
        if assistant is not None and (hasattr(model, "decoder_start_ids") or not hasattr(model, "generation_logits")):
            raise InputError(f"an assistant model guesses for a decoder-only model; this server's "
                             f"{type(model).__name__} is not one")
        self.max_new_tokens_limit = max_new_tokens_limit
        self._json = None  # the JSON mode's processor, built on the first request that asks for it
        self.generates = hasattr(model, "generation_step") and getattr(model, "main_input_name", "input_ids") == "input_ids"
        self.embeds = hasattr(model, "sentence_embedding") or hasattr(model, "get_text_features") or \
            (embeddings and hasattr(model, "generation_logits"))
        self.transcribes = getattr(model, "main_input_name", None) == "input_features"
        self.chats = getattr(tokenizer, "chat_template", None) is not None and not hasattr(model, "decoder_start_ids")
        self._packed = contextlib.ExitStack()
        if pack_weights and (self.generates or self.transcribes):
            self._packed.enter_context(packed_for_decoding(model))
        self.batching = None  # the continuous batching of decoder-only generation, when it applies
        if not (isinstance(max_batch_size, int) and max_batch_size >= 1):
            raise InputError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        refeeds = getattr(model, "generation_refeed_at", lambda: None)() is not None
        if max_batch_size > 1 and self.generates and assistant is None and not refeeds \
                and hasattr(model, "generation_logits") and not hasattr(model, "decoder_start_ids"):
            self.batching = BatchedDecoding(model, max_batch_size, prefix_cache_bytes=prefix_cache_bytes)
        self.decoder = model if self.batching is None else self.batching.model  # what text generation runs on
        # one request at a time (in the model thread): the last sequence's keys and values, for the next prompt
        self._prompt_cache = PromptCache() if self.batching is None and prefix_cache_bytes and self.generates \
            and not hasattr(model, "decoder_start_ids") else None
        # where the model computes: one thread, so that PyTorch's CPU thread pool is the one it
        # already has (ModelThread's doc); it runs one request's work at a time, as a lock would
        self.model_thread = self.batching if self.batching is not None else ModelThread()
        self._embedding_queue: list[list] = []  # [texts, result] of the embedding requests not embedded yet
        self._embedding_lock = threading.Lock()

    def close(self) -> None:
        """Stop the model thread and drop the packed copy of the weights (the server closes its
        app when it closes)."""
        self.model_thread.close()
        self._packed.close()
        if self._prompt_cache is not None:
            self._prompt_cache.reset()

    def _texts(self, streams: list[TextStream]) -> list[str]:
        """Each stream's whole text: side by side when requests are batched (``n`` choices,
        several prompts; their steps go to the batching), else in turn in the model thread."""
        if self.batching is None:
            return self.model_thread.call(lambda: ["".join(s) for s in streams])
        if len(streams) == 1:
            return ["".join(streams[0])]
        with ThreadPoolExecutor(len(streams), thread_name_prefix="attnkit-choice") as pool:
            return list(pool.map("".join, streams))

    def events(self, make_events, r: dict):
        """The events of a streamed request (``make_events(r)``: :meth:`complete_stream`,
        :meth:`chat_events`): made here when requests are batched (their steps go to the
        batching), else made in the model thread and handed over as they come."""
        if self.batching is not None:
            return make_events(r)
        return _relayed([lambda: make_events(r)], self.model_thread.submit)

    # -- requests --------------------------------------------------------------------------------
    def _check_fields(self, body: dict, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise RequestError(f"unknown field '{unknown[0]}'; this endpoint accepts {', '.join(allowed)}",
                               param=unknown[0])

    def completion_request(self, body: dict) -> dict:
        """The checked settings of a ``/v1/completions`` body."""
        self._check_generates()
        self._check_fields(body, COMPLETION_FIELDS)
        limit = self.max_new_tokens_limit
        echo = _field(body, "echo", (bool,), False, expected="true or false")
        least = 0 if echo else 1  # with echo, 0 new tokens scores the prompt alone
        r = dict(
            prompts=_texts(body, "prompt", vocab=self.model.config.vocab_size),
            max_tokens=_field(body, "max_tokens", (int,), 16, lambda v: least <= v <= limit,
                              f"an integer from {least} to {limit}" + ("" if echo else " (0 needs echo)")),
            echo=echo,
            logprobs=_field(body, "logprobs", (int,), None, lambda v: 0 <= v <= 5, "null or an integer from 0 to 5"),
            **self._sampling_fields(body),
        )
        self._check_logprobs(r, "logprobs")
        return r

    def _check_logprobs(self, r: dict, param: str) -> None:
        if r["logprobs"] is not None and hasattr(self.model, "decoder_start_ids"):
            raise RequestError(f"'{param}' needs a decoder-only model; this server's {type(self.model).__name__} reads "
                               "its prompt as a source", param=param)

    def _check_generates(self) -> None:
        if not self.generates:
            raise RequestError(f"this server's model ({type(self.model).__name__}) does not generate text"
                               + ("; use POST /v1/embeddings" if self.embeds else ""), status=404)

    def _sampling_fields(self, body: dict) -> dict:
        """The fields completions and chat completions share, checked."""
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        if stop is not None and (not isinstance(stop, list) or len(stop) > 4
                                 or any(not isinstance(s, str) or not s for s in stop)):
            raise RequestError("'stop' must be a non-empty string or a list of up to 4 non-empty strings", param="stop")
        penalties = {name: _field(body, name, (int, float), 0.0, lambda v: -2 <= v <= 2, "a number from -2 to 2")
                     for name in ("frequency_penalty", "presence_penalty")}
        bias = _field(body, "logit_bias", (dict,), {}, expected="an object of token ids and numbers")
        vocab = getattr(self.model.config, "vocab_size", None)
        try:
            bias = {int(k): float(v) for k, v in bias.items()}
        except (TypeError, ValueError):
            bias = None
        if bias is None or any(not (0 <= k < (vocab or 2**31) and -100 <= v <= 100) for k, v in bias.items()):
            raise RequestError(f"'logit_bias' must map token ids in [0, {vocab}) to numbers from -100 to 100, got "
                               f"{json.dumps(body.get('logit_bias'))[:80]}", param="logit_bias")
        _field(body, "model", (str,), expected="a string")
        _field(body, "user", (str,), expected="a string")
        fmt = _field(body, "response_format", (dict,), {"type": "text"}, expected="an object with a 'type'")
        kind = fmt.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise RequestError(f"'response_format' type must be 'text', 'json_object' (JSON mode) or 'json_schema', "
                               f"got {json.dumps(kind)[:60]}", param="response_format")
        schema, grammar = None, self._guided(body)
        if grammar is not None and kind != "text":
            raise RequestError("give response_format or guided_regex / guided_choice, not both",
                               param="guided_regex" if "guided_regex" in body else "guided_choice")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise RequestError("'response_format' json_schema must be {'name': ..., 'schema': {...}}",
                                   param="response_format")
            try:
                JSONSchemaGrammar(schema)
            except InputError as e:
                raise RequestError(f"'response_format' schema: {e}", param="response_format") from None
        return dict(json=schema if schema is not None else kind == "json_object", grammar=grammar,
            temperature=_field(body, "temperature", (int, float), 1.0, lambda v: 0 <= v <= 2,
                               "a number from 0 (greedy) to 2"),
            top_p=_field(body, "top_p", (int, float), 1.0, lambda v: 0 < v <= 1, "a number in (0, 1]"),
            top_k=_field(body, "top_k", (int,), 0, lambda v: v >= 0, "an integer >= 0 (0 = all tokens)"),
            min_p=_field(body, "min_p", (int, float), 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1] (0 = off)"),
            repetition_penalty=_field(body, "repetition_penalty", (int, float), 1.0, lambda v: v > 0,
                                      "a number > 0 (1 = none)"),
            seed=_field(body, "seed", (int,), None, lambda v: 0 <= v < 2**63, "an integer from 0 to 2^63 - 1"),
            stream=_field(body, "stream", (bool,), False, expected="true or false"),
            stop=stop or [],
            n=_field(body, "n", (int,), 1, lambda v: 1 <= v <= 16, "an integer from 1 to 16 (choices per prompt)"),
            logit_bias=bias, **penalties,
        )

    @staticmethod
    def _guided(body: dict) -> RegexGrammar | None:
        """vLLM's ``guided_regex`` (the reply matches it whole) or ``guided_choice`` (the reply is
        one of the strings), as a grammar; None when neither is given."""
        regex = _field(body, "guided_regex", (str,), None, expected="a regular expression")
        choice = _field(body, "guided_choice", (list,), None, expected="a list of strings")
        if regex is not None and choice is not None:
            raise RequestError("give guided_regex or guided_choice, not both", param="guided_choice")
        if choice is not None:
            if not 1 <= len(choice) <= 256 or any(not isinstance(c, str) or not c for c in choice):
                raise RequestError("'guided_choice' must list 1 to 256 non-empty strings", param="guided_choice")
            regex = "|".join(map(re.escape, choice))
        try:
            return None if regex is None else RegexGrammar(regex)
        except InputError as e:
            raise RequestError(f"'guided_regex': {e}", param="guided_regex") from None

    def chat_request(self, body: dict) -> dict:
        """The checked settings of a ``/v1/chat/completions`` body; the conversation rendered by
        the tokenizer's chat template (with the assistant's turn opened) into ``prompts``."""
        self._check_generates()
        if hasattr(self.model, "decoder_start_ids"):
            raise RequestError(f"chat completions need a decoder-only model; this server's {type(self.model).__name__} "
                               "reads its prompt as a source: use POST /v1/completions", status=404)
        if self.tokenizer.chat_template is None:
            raise RequestError("this model's tokenizer has no chat template (tokenizer_config.json's chat_template); "
                               "use POST /v1/completions", status=404)
        self._check_fields(body, CHAT_FIELDS)
        limit = self.max_new_tokens_limit
        expected = f"an integer from 1 to {limit}"
        max_tokens = _field(body, "max_completion_tokens", (int,), None, lambda v: 1 <= v <= limit, expected)
        if max_tokens is None:
            max_tokens = _field(body, "max_tokens", (int,), None, lambda v: 1 <= v <= limit, expected)
        extra = _field(body, "chat_template_kwargs", (dict,), {}, expected="an object (the template's variables)")
        tools, forced = self._tools(body)
        messages = body.get("messages")
        try:
            ids = self.tokenizer.apply_chat_template(template_messages(messages) if isinstance(messages, list) else
                                                     messages, add_generation_prompt=True, tokenize=True,
                                                     tools=tools, **extra)
        except InputError as e:
            raise RequestError(str(e), param="messages") from None
        if max_tokens is None:  # OpenAI's default: as long as the answer needs, here up to the limit
            room = getattr(self.model.config, "n_positions", None)
            learned = getattr(self.model, "wpe", None) is not None  # a hard context limit (rotary models have none)
            max_tokens = max(1, min(limit, room - len(ids))) if room is not None and learned else limit
        wants = _field(body, "logprobs", (bool,), False, expected="true or false")
        top = _field(body, "top_logprobs", (int,), None, lambda v: 0 <= v <= 20, "null or an integer from 0 to 20")
        if top is not None and not wants:
            raise RequestError("'top_logprobs' needs logprobs=true", param="top_logprobs")
        _field(body, "stream_options", (dict,), None, expected="an object")
        r = dict(prompts=[ids], max_tokens=max_tokens, logprobs=(top or 0) if wants else None,
                 tools={t["function"]["name"] for t in tools} if tools else None,
                 parallel_tool_calls=_field(body, "parallel_tool_calls", (bool,), True, expected="true or false"),
                 **self._sampling_fields(body))
        if forced is not None:  # tool_choice: the reply is the call
            if r["json"] or r["grammar"] is not None:
                raise RequestError("a tool_choice that forces a call leaves no room for response_format or guided_*",
                                   param="tool_choice")
            r["grammar"] = tool_call_grammar(self.tool_format, tools, forced or None)
        self._check_logprobs(r, "logprobs")
        return r

    def _tools(self, body: dict) -> tuple[list | None, str | None]:
        """The checked ``tools`` of a chat request, for the template (None when there are none or
        ``tool_choice`` is ``"none"``), and the call ``tool_choice`` forces: None (the model
        decides), ``""`` (``"required"``: some function) or a function's name."""
        tools = _field(body, "tools", (list,), None, expected="a list of {'type': 'function', 'function': {...}}")
        choice = _field(body, "tool_choice", (str, dict), "auto", expected="'none', 'auto', 'required' or an object")
        for i, t in enumerate(tools or ()):
            f = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(f, dict) \
                    or not isinstance(f.get("name"), str) or not f["name"]:
                raise RequestError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': str, "
                                   f"'description': ..., 'parameters': {{...}}}}}}, got {json.dumps(t)[:80]}",
                                   param="tools")
        if choice == "none" or not tools:
            return None, None
        names = [t["function"]["name"] for t in tools]
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        if choice not in ("auto", "required") and not (isinstance(choice, dict) and choice.get("type") == "function"
                                                       and named in names):
            raise RequestError(f"tool_choice must be 'none', 'auto', 'required' or {{'type': 'function', 'function': "
                               f"{{'name': one of {names}}}}}, got {json.dumps(choice)[:80]}", param="tool_choice")
        if self.tool_format is None:
            raise RequestError("this model's chat template does not render tools in a known tool-call format "
                               f"({', '.join(TOOL_FORMATS)}); start the server with a tool format, or leave out "
                               "'tools'", param="tools")
        return tools, None if choice == "auto" else named or ""

    def _tool_calls(self, text: str, r: dict) -> tuple[str | None, list[dict]]:
        """``(content, OpenAI tool calls)`` of a reply to a request with tools (one call at most
        without ``parallel_tool_calls``)."""
        content, calls = parse_tool_calls(text, self.tool_format, r["tools"])
        return content, openai_tool_calls(calls if r["parallel_tool_calls"] else calls[:1])

    def _prompt_scored(self, prompt_ids: list[int], top: int) -> list:
        """The :func:`token_logprobs` entries ``(id, text, log-probability, top)`` of a prompt's
        tokens after its first (``echo``), in one forward pass."""
        scored = self.model_thread.call(lambda: token_logprobs(self.model, self.tokenizer, prompt_ids, top))
        return list(zip(scored.ids, scored.texts, scored.logprobs, scored.top))

    def _chat_logprobs(self, entries: list) -> dict:
        """Chat's ``logprobs`` object for some scored tokens: ``content``, one item per token."""
        piece = lambda t, lp: dict(token=t, logprob=lp, bytes=list(t.encode()))  # noqa: E731
        return dict(content=[dict(piece(t, lp), top_logprobs=[piece(self.tokenizer.decode([j]), v) for j, v in top])
                             for _, t, lp, top in entries])

    def _legacy_logprobs(self, entries: list, offset: int, first: int | None = None) -> dict:
        """The legacy completions ``logprobs`` object for some scored tokens: ``tokens``,
        ``token_logprobs``, ``top_logprobs`` (``{token: log-probability}``) and ``text_offset``
        (into the choice's text, from ``offset``), after the prompt's ``first`` token when given
        (``echo``: it has no log-probability)."""
        tokens = [t for _, t, _, _ in entries]
        logprobs = [lp for _, _, lp, _ in entries]
        top = [{self.tokenizer.decode([j]): v for j, v in best} for _, _, _, best in entries]
        if first is not None:
            tokens, logprobs, top = [self.tokenizer.decode([first], skip_special_tokens=False)] + tokens, \
                [None] + logprobs, [None] + top
        offsets = list(itertools.accumulate(map(len, tokens[:-1]), initial=offset)) if tokens else []
        return dict(tokens=tokens, token_logprobs=logprobs, top_logprobs=top, text_offset=offsets)

    def text_streams(self, r: dict, eos_token_id=None) -> list[TextStream]:
        """``n`` :class:`TextStream` s per prompt (a text, or token ids), prompt by prompt, the
        ``k``-th seeded ``seed + k`` (the request's seed, or a random one)."""
        seed = r["seed"] if r["seed"] is not None else int(torch.randint(0, 2**62, ()))
        sample = r["temperature"] > 0
        streams = []
        if r["json"] or r["grammar"] is not None:  # the ends the constraint allows, where the stream stops
            eos_token_id = eos_token_id or end_of_turn_ids(self.model, self.tokenizer)
        extra = {} if eos_token_id is None else {"eos_token_id": eos_token_id}
        if self.assistant is not None:  # greedy: the same tokens; sampled: the same distribution
            extra["assistant_model"] = self.assistant
        if self._prompt_cache is not None:
            extra["prompt_cache"] = self._prompt_cache
        for i, prompt in enumerate(p for p in r["prompts"] for _ in range(r["n"])):
            generator = torch.Generator(self.model.device).manual_seed(seed + i) if sample else None
            stream = TextStream(
                self.decoder, self.tokenizer, prompt, r["stop"], max_new_tokens=r["max_tokens"], do_sample=sample,
                temperature=r["temperature"] if sample else 1.0, top_k=r["top_k"], top_p=r["top_p"], min_p=r["min_p"],
                repetition_penalty=r["repetition_penalty"], generator=generator, logprobs=r["logprobs"], **extra)
            # the tokens before the generated ones: the prompt, or an encoder-decoder's start tokens
            start = getattr(self.model, "decoder_start_ids", None)
            length = start(1).shape[1] if start is not None else stream.prompt_tokens
            processors = []
            if r["frequency_penalty"] or r["presence_penalty"] or r["logit_bias"]:
                processors.append(OpenAIPenalties(length, r["frequency_penalty"], r["presence_penalty"],
                                                  r["logit_bias"]))
            if r["json"]:
                schema = r["json"] if isinstance(r["json"], dict) else None
                processors.append(self._json_mode(eos_token_id).for_prompt(length, schema=schema))
            elif r["grammar"] is not None:  # a forced tool call, guided_regex, guided_choice
                processors.append(self._json_mode(eos_token_id).for_prompt(length, grammar=r["grammar"]))
            if processors:
                stream.generate_kwargs["logits_processor"] = processors
            streams.append(stream)
        return streams

    def _json_mode(self, eos_token_id) -> JSONLogitsProcessor:
        """The JSON mode's processor (``response_format: {"type": "json_object"}``): built once,
        its token bytes and masks shared by the requests; rebuilt if the ends differ."""
        eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
        if self._json is None or self._json.eos != eos:
            self._json = JSONLogitsProcessor(self.tokenizer, 0, eos, vocab_size=self.model.config.vocab_size)
        return self._json

    def chat_streams(self, r: dict) -> list[TextStream]:
        """The ``n`` :class:`TextStream` s of a chat request: each ends at the tokenizer's EOS or any
        of the model's generation config's (a chat model's end of turn, ``<|im_end|>``, ``<|eot_id|>``)."""
        return self.text_streams(r, eos_token_id=end_of_turn_ids(self.model, self.tokenizer))

    def chat(self, body: dict) -> dict:
        """A non-streaming ``/v1/chat/completions`` response."""
        r = self.chat_request(body)
        choices = []
        streams = self.chat_streams(r)
        for i, (stream, text) in enumerate(zip(streams, self._texts(streams))):
            logprobs = None if r["logprobs"] is None else self._chat_logprobs(_Shown(stream).upto(len(text)))
            message, reason = dict(role="assistant", content=text), stream.finish_reason
            if r["tools"]:
                content, calls = self._tool_calls(text, r)
                if calls:
                    message, reason = dict(role="assistant", content=content, tool_calls=calls), "tool_calls"
            choices.append(dict(index=i, message=message, logprobs=logprobs, finish_reason=reason))
        completion = sum(s.completion_tokens for s in streams)
        return dict(id=f"chatcmpl-{uuid.uuid4().hex}", object="chat.completion", created=int(time.time()),
                    model=self.name, choices=choices,
                    usage=dict(prompt_tokens=streams[0].prompt_tokens, completion_tokens=completion,
                               total_tokens=streams[0].prompt_tokens + completion,
                               prompt_tokens_details=dict(cached_tokens=_cached(streams))))

    def chat_events(self, r: dict):
        """Server-sent events of a streaming chat completion (OpenAI's ``chat.completion.chunk``s):
        per choice, the assistant's role, one ``delta`` per text piece (with ``logprobs``: the
        tokens that begin in it), then the ``finish_reason``; the choices in turn, or side by side
        when requests are batched (:meth:`_side_by_side`). With ``tools``, the text from where a
        tool call may begin is held back from the content
        (:class:`~attnkit.serve.tools.ToolCallFilter`); each call in it streams as ``tool_calls``
        deltas, its name and then its arguments piece by piece
        (:class:`~attnkit.serve.tools.ToolCallDeltas`), and the calls that could not stream go
        whole at the end (the held text goes as content if it holds no calls). Served through
        :meth:`events`."""
        base = dict(id=f"chatcmpl-{uuid.uuid4().hex}", object="chat.completion.chunk", created=int(time.time()),
                    model=self.name)
        return self._side_by_side([self._chat_choice_events(base, r, i, stream)
                                   for i, stream in enumerate(self.chat_streams(r))])

    def _chat_choice_events(self, base: dict, r: dict, i: int, stream: TextStream):
        """The events of one choice of :meth:`chat_events`."""
        chunk = lambda delta, reason=None, logprobs=None: dict(base, choices=[  # noqa: E731
            dict(index=i, delta=delta, logprobs=logprobs, finish_reason=reason)])
        pieces = iter(stream)
        first = next(pieces, None)  # decoding starts (and the model checks the prompt) before anything is sent
        yield chunk(dict(role="assistant", content=""))
        shown, length = _Shown(stream), 0
        held = ToolCallFilter(self.tool_format) if r["tools"] else None
        calls_out = ToolCallDeltas(self.tool_format, r["tools"], None if r["parallel_tool_calls"] else 1) \
            if r["tools"] else None
        for piece in itertools.chain([] if first is None else [first], pieces):
            piece = piece if held is None else held.feed(piece)
            if piece:
                length += len(piece)
                logprobs = None if r["logprobs"] is None else self._chat_logprobs(shown.upto(length))
                yield chunk(dict(content=piece), logprobs=logprobs)
            if held is not None and held.calling:
                for delta in calls_out.feed(held.held):
                    yield chunk(dict(tool_calls=[delta]))
        reason = stream.finish_reason
        if held is not None and held.held:
            content, calls = self._tool_calls(held.held, r)
            logprobs = None if r["logprobs"] is None else self._chat_logprobs(shown.upto(length + len(held.held)))
            if calls or calls_out.sent:  # the calls not streamed yet go whole
                delta = {}
                if calls and content:
                    delta["content"] = content
                if calls[calls_out.sent:]:
                    delta["tool_calls"] = [dict(c, index=k) for k, c in enumerate(calls) if k >= calls_out.sent]
                if delta or logprobs is not None:
                    yield chunk(delta, logprobs=logprobs)
                reason = "tool_calls"
            else:
                yield chunk(dict(content=held.held), logprobs=logprobs)
        yield chunk({}, reason)

    def _side_by_side(self, choices: list):
        """The events of every choice's generator: in turn, or, when requests are batched, as
        they come from one thread per choice (so that the choices decode together; each event
        names its choice's ``index``)."""
        if self.batching is None or len(choices) < 2:
            for choice in choices:
                yield from choice
        else:
            yield from _relayed([lambda c=c: c for c in choices],
                                lambda run: threading.Thread(target=run, name="attnkit-choice", daemon=True).start())

    def complete(self, body: dict) -> dict:
        """A non-streaming ``/v1/completions`` response."""
        r = self.completion_request(body)
        choices, prompt_tokens, completion_tokens = [], 0, 0
        streams = self.text_streams(r)
        texts = self._texts(streams) if r["max_tokens"] else [""] * len(streams)
        for i, (prompt, stream, text) in enumerate(zip(self._each_choice(r), streams, texts)):
            shown = self._prompt_text(prompt) if r["echo"] else ""
            logprobs = None if r["logprobs"] is None else self._completion_logprobs(stream, text, r["echo"])
            choices.append(dict(index=i, text=shown + text, logprobs=logprobs,
                                finish_reason=stream.finish_reason or "length"))
            prompt_tokens += stream.prompt_tokens if i % r["n"] == 0 else 0  # once per prompt
            completion_tokens += stream.completion_tokens
        n = r["n"]
        cached = sum(_cached(streams[i:i + n]) for i in range(0, len(streams), n))
        return dict(id=f"cmpl-{uuid.uuid4().hex}", object="text_completion", created=int(time.time()), model=self.name,
                    choices=choices, usage=dict(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                                total_tokens=prompt_tokens + completion_tokens,
                                                prompt_tokens_details=dict(cached_tokens=cached)))

    def _prompt_text(self, prompt: str | list[int]) -> str:
        """A prompt as ``echo`` shows it: its text, or its token ids decoded."""
        return prompt if isinstance(prompt, str) else self.tokenizer.decode(prompt)

    @staticmethod
    def _each_choice(r: dict) -> list:
        """The prompt of each choice: every prompt ``n`` times, in turn."""
        return [p for p in r["prompts"] for _ in range(r["n"])]

    def _completion_logprobs(self, stream: TextStream, text: str, echo: bool) -> dict:
        """A choice's legacy ``logprobs`` object: the new tokens that begin within ``text`` (not a
        stop string's), after the prompt's tokens when ``echo``."""
        prompt = self._prompt_scored(stream.prompt_ids, stream.logprobs) if echo else []
        return self._legacy_logprobs(prompt + _Shown(stream).upto(len(text)), 0, stream.prompt_ids[0] if echo else None)

    def complete_stream(self, r: dict):
        """Server-sent events of a streaming completion: ``(event dict)`` per text piece (with
        ``logprobs``: the tokens that begin in it), each choice ending with an empty piece that
        carries its ``finish_reason``; the choices in turn, or side by side when requests are
        batched (:meth:`_side_by_side`). Served through :meth:`events`."""
        base = dict(id=f"cmpl-{uuid.uuid4().hex}", object="text_completion", created=int(time.time()), model=self.name)
        return self._side_by_side([self._completion_choice_events(base, r, i, prompt, stream) for i, (prompt, stream)
                                   in enumerate(zip(self._each_choice(r), self.text_streams(r)))])

    def _completion_choice_events(self, base: dict, r: dict, i: int, prompt, stream: TextStream):
        """The events of one choice of :meth:`complete_stream`."""
        scored = r["logprobs"] is not None
        event = lambda text, logprobs=None, reason=None: dict(base, choices=[  # noqa: E731
            dict(index=i, text=text, logprobs=logprobs, finish_reason=reason)])
        offset = 0  # where the next token's text begins (text_offset)
        if r["echo"]:
            logprobs = self._legacy_logprobs(self._prompt_scored(stream.prompt_ids, stream.logprobs), 0,
                                             stream.prompt_ids[0]) if scored else None
            yield event(self._prompt_text(prompt), logprobs)
            offset = sum(map(len, logprobs["tokens"])) if scored else 0
        shown, length = _Shown(stream), 0
        for piece in stream if r["max_tokens"] else ():
            length += len(piece)
            logprobs = self._legacy_logprobs(shown.upto(length), offset) if scored else None
            offset += sum(map(len, logprobs["tokens"])) if scored else 0
            yield event(piece, logprobs)
        yield event("", reason=stream.finish_reason or "length")

    def embed(self, body: dict) -> dict:
        """A ``/v1/embeddings`` response: L2-normalised embeddings, one per input (mean-pooled by an
        encoder, a decoder's last token); the requests waiting at once are embedded together
        (:meth:`_embed_together`)."""
        if not self.embeds:
            raise RequestError(f"this server's model ({type(self.model).__name__}) does not embed sentences"
                               + ("; use POST /v1/completions" if self.generates else ""), status=404)
        self._check_fields(body, EMBEDDING_FIELDS)
        texts = _texts(body, "input", max_items=2048)
        encoding = _field(body, "encoding_format", (str,), "float", lambda v: v in ("float", "base64"),
                          "'float' or 'base64'")
        _field(body, "model", (str,), expected="a string")
        _field(body, "user", (str,), expected="a string")
        vectors = self._embed_together(texts)
        tokens = sum(len(self.tokenizer.encode(t)) for t in texts)
        if encoding == "base64":  # little-endian float32 bytes, as OpenAI's API (its client asks for this)
            rows = [base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() for v in vectors]
        else:
            rows = vectors.tolist()
        return dict(object="list", model=self.name, usage=dict(prompt_tokens=tokens, total_tokens=tokens),
                    data=[dict(object="embedding", index=i, embedding=v) for i, v in enumerate(rows)])

    def _embed_together(self, texts: list) -> torch.Tensor:
        """The embeddings of ``texts``, made in the model thread together with those of every
        embedding request waiting at that moment: one :func:`attnkit.embed` call over all their
        texts (batched longest first), so that concurrent small requests share forward passes
        instead of running one batch each. An error in that call is every one of those requests'."""
        from attnkit.embeddings import embed

        mine = [texts, None]
        with self._embedding_lock:
            self._embedding_queue.append(mine)

        def embed_waiting() -> None:
            with self._embedding_lock:
                waiting, self._embedding_queue = self._embedding_queue, []
            if not waiting:  # an earlier request's call embedded these texts with its own
                return
            try:
                vectors = embed(self.model, [t for w in waiting for t in w[0]], tokenizer=self.tokenizer)
            except Exception as e:  # raised by each request it served
                for w in waiting:
                    w[1] = e
                return
            start = 0
            for w in waiting:
                w[1], start = vectors[start:start + len(w[0])], start + len(w[0])

        self.model_thread.call(embed_waiting)
        if isinstance(mine[1], Exception):
            raise mine[1]
        return mine[1]

    def translate(self, form: dict) -> tuple[str, dict | str]:
        """A ``/v1/audio/translations`` response: :meth:`transcribe` with Whisper's ``translate`` task."""
        return self.transcribe(form, task="translate")

    def transcribe(self, form: dict, task: str | None = None) -> tuple[str, dict | str]:
        """A ``/v1/audio/transcriptions`` response from the parsed form (field -> bytes):
        ``("json", payload)`` or ``("text", text)``."""
        import io

        from attnkit.audio import read_wav
        from attnkit.generation.alignment import alignment_heads
        from attnkit.generation.speech import encode_prompt, transcribe, whisper_defaults

        if not self.transcribes:
            raise RequestError(f"this server's model ({type(self.model).__name__}) does not transcribe speech", status=404)
        if task == "translate" and not isinstance(self.model.generation_config.other.get("task_to_id"), dict):
            raise RequestError(f"this server's model ({self.name}) has no translate task (no task_to_id in its "
                               "generation config: an English-only or custom Whisper)", status=404)
        self._check_fields(form, TRANSCRIPTION_FIELDS if task is None else TRANSLATION_FIELDS)
        if "file" not in form or not form["file"]:
            raise RequestError("'file' is required: the audio, as a PCM WAV file", param="file")
        text_fields = {}
        for name in set(form) - {"file"}:
            try:
                text_fields[name] = form[name].decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"'{name}' must be UTF-8 text", param=name) from None
        fmt = text_fields.get("response_format", "json")
        if fmt not in ("json", "text", "verbose_json"):
            raise RequestError(f"'response_format' must be 'json', 'text' or 'verbose_json', got {fmt!r}",
                               param="response_format")
        try:
            temperature = float(text_fields.get("temperature", "0"))
        except ValueError:
            temperature = -1.0
        if not 0 <= temperature <= 1:
            raise RequestError("'temperature' must be a number from 0 (greedy decoding) to 1", param="temperature")
        prompt = text_fields.get("prompt") or None
        if prompt is not None:
            try:
                encode_prompt(self.model, self.tokenizer, prompt)
            except AttnkitError as e:
                raise RequestError(f"'prompt': {e}", param="prompt") from None
        granularities = set(text_fields.get("timestamp_granularities[]", "segment").split(","))
        if not granularities <= {"segment", "word"}:
            raise RequestError(f"'timestamp_granularities[]' must be 'segment' and/or 'word', got "
                               f"{sorted(granularities)}", param="timestamp_granularities[]")
        by_word = "word" in granularities
        if by_word and fmt != "verbose_json":
            raise RequestError("'timestamp_granularities[]' word needs response_format 'verbose_json'",
                               param="timestamp_granularities[]")
        if by_word:
            try:
                alignment_heads(self.model)
            except AttnkitError as e:
                raise RequestError(f"'timestamp_granularities[]': {e}", param="timestamp_granularities[]") from None
        language = text_fields.get("language") or None
        try:
            audio, rate = read_wav(io.BytesIO(form["file"]))
        except AttnkitError as e:
            raise RequestError(f"'file' must be a PCM WAV file: {e}", param="file") from None
        if audio.numel() < 400:
            raise RequestError("'file' holds less than 25 ms of audio", param="file")
        # At 0, OpenAI's rule: Whisper's fallback to higher temperatures, sampled from a fixed seed
        # (the same upload gives the same text); above 0, that one temperature.
        decoding = dict(temperature=temperature) if temperature > 0 else whisper_defaults(self.model)
        result = self.model_thread.call(lambda: transcribe(
            self.model, self.tokenizer, audio, rate, language=language, task=task, prompt=prompt,
            generator=torch.Generator(self.model.device).manual_seed(0), **decoding,
            return_timestamps=fmt == "verbose_json" and ("word" if by_word else True))[0])
        if fmt == "text":
            return "text", result + "\n"
        if fmt == "json":
            return "json", dict(text=result)
        reply = dict(task=task or "transcribe", language=result["language"] or "", duration=round(audio.numel() / rate, 3),
                     text=result["text"])
        if "segment" in granularities:
            reply["segments"] = [{k: round(v, 2) if k in ("start", "end") else v for k, v in segment.items()
                                  if k not in ("words", "token_times")} for segment in result["segments"]]
        if by_word:
            reply["words"] = [dict(word=w["word"], start=w["start"], end=w["end"])
                              for segment in result["segments"] for w in segment["words"]]
        return "json", reply

    def models(self) -> dict:
        return dict(object="list", data=[dict(id=self.name, object="model", created=0, owned_by="attnkit")])

    def health(self) -> dict:
        return dict(status="ok", model=self.name, architecture=type(self.model).__name__,
                    endpoints=[e for e, ok in (("/v1/completions", self.generates),
                                               ("/v1/chat/completions", self.generates and self.chats),
                                               ("/v1/embeddings", self.embeds),
                                               ("/v1/audio/transcriptions", self.transcribes),
                                               ("/v1/audio/translations", self.transcribes)) if ok])


def _cached(choices: list[TextStream]) -> int:
    """A prompt's ``cached_tokens``: those every one of its choices found cached (a choice whose
    prompt a sibling read in the same pass took them all from it, which the request did not find)."""
    return min(s.cached_tokens for s in choices)


def _relayed(sources: list, start):
    """The events of the generators that ``sources`` make (functions, each called where it
    runs), each run by ``start(run)`` elsewhere (a thread of its own, or the model thread) and
    handed over through a queue as they come. The first error of any is raised here; when this
    generator is closed (the client went away), the others stop at their next event."""
    events, stop = queue.Queue(), threading.Event()

    def run(source) -> None:
        made = None
        try:
            if not stop.is_set():  # not if the client left while this waited for its turn
                made = source()
                for event in made:
                    events.put((True, event))
                    if stop.is_set():
                        break
        except Exception as e:  # handed to the consumer, which raises it
            events.put((False, e))
        finally:
            if made is not None:
                made.close()
            events.put((False, None))

    for source in sources:
        start(functools.partial(run, source))
    try:
        running = len(sources)
        while running:
            ok, item = events.get()
            if ok:
                yield item
            elif item is None:
                running -= 1
            else:
                raise item
    finally:
        stop.set()


class _Shown:
    """Hands out the scored tokens of a :class:`TextStream` (made with ``logprobs``) that begin
    within the text shown so far, each once: a choice's log-probabilities cover its text's tokens
    and none past it (a stop string's)."""

    def __init__(self, stream: TextStream):
        self.entries, self.sent, self.at = stream.scored, 0, 0  # tokens handed out, where the next one begins

    def upto(self, length: int) -> list:
        """The tokens not yet handed out that begin before character ``length`` of the text."""
        start = self.sent
        while self.sent < len(self.entries) and self.at < length:
            self.at += len(self.entries[self.sent][1])
            self.sent += 1
        return self.entries[start:self.sent]


class _Handler(BaseHTTPRequestHandler):
    """HTTP framing around :class:`ModelServer` (set as ``server.app``)."""

    server_version = "attnkit"
    timeout = 60  # seconds a client may take to send its request

    ROUTES = {"/health": ("GET", "health"), "/v1/models": ("GET", "models"),
              "/v1/completions": ("POST", "complete"), "/v1/chat/completions": ("POST", "chat"),
              "/v1/embeddings": ("POST", "embed"),
              "/v1/audio/transcriptions": ("POST", "transcribe"), "/v1/audio/translations": ("POST", "translate")}

    def log_message(self, format, *args):  # the access log goes to logging, not stderr
        log.info("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, e: RequestError, headers: dict | None = None) -> None:
        kind = "invalid_request_error" if e.status < 500 else "server_error"
        self._send_json(e.status, dict(error=dict(message=str(e), type=kind, param=e.param, code=None)), headers)

    def _route(self, method: str) -> str:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path not in self.ROUTES:
            raise RequestError(f"no endpoint {path}; this server has {', '.join(self.ROUTES)}", status=404)
        allowed, action = self.ROUTES[path]
        if method != allowed:
            self.allow = allowed
            raise RequestError(f"{path} takes {allowed}, not {method}", status=405)
        return action

    def _read_raw(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError("Content-Length is required", status=411)
        if not length.isdigit():
            raise RequestError(f"Content-Length must be a number of bytes, got {length!r}")
        if int(length) > limit:
            raise RequestError(f"the body has {int(length)} bytes, more than this server accepts ({limit})", status=413)
        return self.rfile.read(int(length))

    def _read_form(self) -> dict[str, bytes]:
        """A ``multipart/form-data`` body as ``{field name: bytes}`` (the standard library's MIME parser)."""
        from email.parser import BytesParser
        from email.policy import HTTP

        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "multipart/form-data":
            raise RequestError(f"the body must be multipart/form-data (an upload), got {content_type!r}", status=415)
        raw = self._read_raw(self.server.max_audio_bytes)
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + raw)
        if not message.is_multipart():
            raise RequestError("the multipart body could not be parsed (a missing or wrong boundary?)")
        form = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                value = part.get_payload(decode=True) or b""
                # an array field ("timestamp_granularities[]") may repeat: its values, comma-separated
                form[name] = form[name] + b"," + value if name.endswith("[]") and name in form else value
        return form

    def _read_body(self) -> dict:
        kind = self.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError(f"the body must be JSON (Content-Type: application/json), got {kind!r}", status=415)
        raw = self._read_raw(self.server.max_body_bytes)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise RequestError(f"the body must be a JSON object, got a JSON {type(body).__name__}")
        return body

    def _handle(self, method: str) -> None:
        app: ModelServer = self.server.app
        try:
            action = self._route(method)
            if method == "GET":
                return self._send_json(200, getattr(app, action)())
            if action in ("transcribe", "translate"):
                kind, payload = getattr(app, action)(self._read_form())
                return self._send_json(200, payload) if kind == "json" else self._send_text(payload)
            body = self._read_body()
            if action == "complete" and body.get("stream") is True:
                return self._stream(app, app.complete_stream, app.completion_request(body))
            if action == "chat" and body.get("stream") is True:
                return self._stream(app, app.chat_events, app.chat_request(body))
            self._send_json(200, getattr(app, action)(body))
        except RequestError as e:
            self._send_error(e, {"Allow": self.allow} if e.status == 405 else None)
        except AttnkitError as e:  # the model's own checks: a prompt too long, a token out of range
            self._send_error(RequestError(str(e)))
        except Exception:  # never a traceback to the client, never a dead server
            log.exception("request %s %s failed", method, self.path)
            self._send_error(RequestError("internal error; see the server's log", status=500))

    def _stream(self, app: ModelServer, make_events, r: dict) -> None:
        """Server-sent events (``make_events(r)``, the app's generator, through
        :meth:`ModelServer.events`), then ``data: [DONE]``. Until the first piece exists nothing
        is sent, so a prompt the model refuses is an ordinary error answer."""
        events = app.events(make_events, r)
        try:
            first = next(events)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                for event in itertools.chain([first], events):
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
            except AttnkitError as e:  # a later prompt of the list refused mid-stream
                error = dict(error=dict(message=str(e), type="invalid_request_error", param=None, code=None))
                self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            log.info("client %s went away during a stream", self.address_string())
        finally:
            events.close()  # stops decoding when the client has gone

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")


class _Server(ThreadingHTTPServer):
    app: ModelServer | None = None

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown`. The HTTP loop runs in a thread of its own and the calling
        thread runs the model's work (the app's
        :attr:`~ModelServer.model_thread`, :meth:`~attnkit.generation.batching.ModelThread.run_forever`):
        call this from the thread that loaded the model (the main one), where PyTorch's CPU
        thread pool already is."""
        if self.app is None:
            return super().serve_forever(poll_interval)
        self.app.model_thread.own()  # before any request can arrive
        http = threading.Thread(target=super().serve_forever, args=(poll_interval,), name="attnkit-http", daemon=True)
        http.start()
        try:
            self.app.model_thread.run_forever()
        finally:
            super().shutdown()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (from another thread) and the model thread with it."""
        if self.app is not None:
            self.app.model_thread.close()
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        if self.app is not None:
            self.app.close()


def make_server(model, tokenizer, host: str = "127.0.0.1", port: int = 8000, name: str = "attnkit",
                max_new_tokens_limit: int = 1024, max_body_bytes: int = MAX_BODY_BYTES,
                max_audio_bytes: int = MAX_AUDIO_BYTES, pack_weights: bool = True,
                assistant=None, tool_format: str | None = "auto", embeddings: bool = False,
                max_batch_size: int = 8, prefix_cache_bytes: int = 2**30) -> ThreadingHTTPServer:
    """An HTTP server for ``model`` (not started: call ``serve_forever()``, ``shutdown()`` to stop,
    ``server_close()`` to release the port and the packed weights). ``port=0`` picks a free port
    (``server.server_address[1]``). ``assistant``, ``tool_format``, ``embeddings``,
    ``max_batch_size``, ``prefix_cache_bytes``: see :class:`ModelServer`."""
    server = _Server((host, port), _Handler)
    server.daemon_threads = True
    try:
        server.app = ModelServer(model, tokenizer, name, max_new_tokens_limit, pack_weights, assistant, tool_format,
                                 embeddings, max_batch_size, prefix_cache_bytes)
    except InputError:
        server.server_close()
        raise
    server.max_body_bytes, server.max_audio_bytes = max_body_bytes, max_audio_bytes
    if not (server.app.generates or server.app.embeds or server.app.transcribes):
        server.server_close()
        raise InputError(f"{type(model).__name__} neither generates text, embeds sentences nor transcribes speech: "
                         "nothing to serve")
    return server
