"""Tool calls for chat completions (OpenAI's ``tools``): the request's function definitions go
to the chat template (its ``tools`` variable, as ``transformers`` passes them), and the calls
are read back out of the generated text in the format the model was tuned to write:

- ``hermes`` (Qwen2.5, Qwen3, Hermes, and most templates that mention ``<tool_call>``): each
  call is ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; text before the first one
  is the message's content;
- ``llama3_json`` (Llama 3.1-3.3): the whole reply is a JSON object ``{"name": ...,
  "parameters": {...}}`` (or several separated by ``;``), after an optional ``<|python_tag|>``.

A reply that does not parse as calls (invalid JSON, an unknown function) is returned as plain
content, as vLLM does. Streamed, :class:`ToolCallDeltas` sends each call as OpenAI streams one:
its id and name once the name is written, then its arguments piece by piece.
:func:`template_messages` turns OpenAI-style history (assistant ``tool_calls`` with JSON-string
``arguments``, ``tool`` results) into what templates read.
"""

from __future__ import annotations

import json
import re
import uuid

TOOL_FORMATS = ("hermes", "llama3_json")
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def detect_tool_format(chat_template: str | None) -> str | None:
    """The tool-call format a chat template teaches its model, or None when it renders no tools:
    ``hermes`` when it mentions ``<tool_call>``, ``llama3_json`` when it mentions Llama 3.1's
    ``<|python_tag|>`` or ``ipython`` turn."""
    if not chat_template or "tools" not in chat_template:
        return None
    if "<tool_call>" in chat_template:
        return "hermes"
    if "<|python_tag|>" in chat_template or "ipython" in chat_template:
        return "llama3_json"
    return None


def _call(obj, names: set[str], arguments_key: str) -> dict | None:
    """One ``{"name", "arguments"}`` call from a parsed JSON object, or None if it is not one."""
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get(arguments_key, obj.get("arguments", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string already
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return dict(name=obj["name"], arguments=json.dumps(args, ensure_ascii=False))


def parse_tool_calls(text: str, fmt: str, names: set[str]) -> tuple[str | None, list[dict]]:
    """``(content, calls)`` of a reply in format ``fmt`` (:data:`TOOL_FORMATS`), each call
    ``{"name", "arguments"}`` with the arguments as a JSON string (OpenAI's shape) and ``name``
    one of ``names``. No calls: ``(text, [])``. ``content`` is the text before the calls, or None
    when that is blank."""
    if fmt == "hermes":
        found = _HERMES.findall(text)
        if not found:
            return text, []
        try:
            calls = [_call(json.loads(body), names, "arguments") for body in found]
        except json.JSONDecodeError:
            return text, []
        before = text[:text.index("<tool_call>")]
    elif fmt == "llama3_json":
        body = text.strip().removeprefix("<|python_tag|>").strip()
        if not body.startswith("{"):
            return text, []
        try:
            calls = [_call(json.loads(part), names, "parameters") for part in body.split(";") if part.strip()]
        except json.JSONDecodeError:
            return text, []
        before = ""
    else:
        raise ValueError(f"unknown tool-call format {fmt!r}; known: {TOOL_FORMATS}")
    if not calls or any(c is None for c in calls):
        return text, []
    return before if before.strip() else None, calls


def tool_call_grammar(fmt: str, tools: list[dict], name: str | None = None):
    """The texts a reply forced to call a tool may be (``tool_choice``: ``"required"``, or the
    function ``name``), as a :class:`~attnkit.generation.constraints.FramedGrammar`: one call in
    ``fmt``, its ``name`` one of the tools' (or ``name``), its arguments an object, under the
    function's ``parameters`` schema when one function can be called and attnkit reads that
    schema (else any object)."""
    from attnkit.errors import InputError
    from attnkit.generation.constraints import FramedGrammar, JSONSchemaGrammar

    functions = [t["function"] for t in tools if name is None or t["function"]["name"] == name]
    arguments = functions[0].get("parameters") if len(functions) == 1 else None
    key = "arguments" if fmt == "hermes" else "parameters"

    def call(args: dict) -> dict:
        return {"type": "object", "properties": {"name": {"enum": [f["name"] for f in functions]}, key: args},
                "required": ["name", key], "additionalProperties": False}
    try:
        inner = JSONSchemaGrammar(call(arguments if isinstance(arguments, dict) else {"type": "object"}))
    except InputError:  # a parameters schema with keywords attnkit does not read: any object
        inner = JSONSchemaGrammar(call({"type": "object"}))
    return FramedGrammar(b"<tool_call>\n", inner, b"</tool_call>") if fmt == "hermes" else FramedGrammar(b"", inner)


def openai_tool_calls(calls: list[dict]) -> list[dict]:
    """Calls in OpenAI's response shape: ``{"id", "type": "function", "function": {...}}``."""
    return [dict(id=f"call_{uuid.uuid4().hex[:24]}", type="function", function=call) for call in calls]


def template_messages(messages: list) -> list:
    """OpenAI-style messages for a chat template: an assistant's ``tool_calls`` arguments parsed
    from their JSON strings into objects (templates write ``arguments | tojson`` or read their
    fields), as ``transformers``' chat templates expect; everything else as it is."""
    out = []
    for m in messages:
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if isinstance(calls, list):
            m = dict(m, tool_calls=[_parsed_arguments(c) for c in calls])
        out.append(m)
    return out


def _parsed_arguments(call):
    function = call.get("function") if isinstance(call, dict) else None
    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
        try:
            function = dict(function, arguments=json.loads(function["arguments"]))
        except json.JSONDecodeError:
            pass  # left as the string the client sent
        call = dict(call, function=function)
    return call


class ToolCallFilter:
    """Splits a streamed reply into the content to send now and the text held back because it is
    (or may become) tool calls: from ``<tool_call>`` on (``hermes``, with any end of the text that
    could begin it held until it cannot), or the whole reply when it opens with ``{`` or
    ``<|python_tag|>`` (``llama3_json``). :meth:`feed` returns the content to send; ``held`` is
    what :func:`parse_tool_calls` reads at the end."""

    def __init__(self, fmt: str):
        self.fmt, self.held, self.calling, self.plain = fmt, "", False, False

    def feed(self, piece: str) -> str:
        if self.plain:
            return piece
        self.held += piece
        if self.calling:
            return ""
        if self.fmt == "llama3_json":
            start = self.held.lstrip()
            if not start or "<|python_tag|>".startswith(start):
                return ""  # not decided yet
            self.calling = start.startswith(("{", "<|python_tag|>"))
            self.plain = not self.calling
            out, self.held = ("", self.held) if self.calling else (self.held, "")
            return out
        marker = "<tool_call>"
        i = self.held.find(marker)
        if i >= 0:
            self.calling = True
            out, self.held = self.held[:i], self.held[i:]
            return out
        keep = max((n for n in range(1, len(marker)) if self.held.endswith(marker[:n])), default=0)
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return out


_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*(?=\{)')


class ToolCallDeltas:
    """OpenAI's streamed ``tool_calls`` deltas for the held-back text of a reply (what
    :class:`ToolCallFilter` holds): for each call, once ``{"name": "...", "arguments": {`` is
    written with the name one of ``names``, ``{index, id, type, function: {name, arguments: ""}}``;
    then ``{index, function: {arguments: piece}}`` as the arguments object is written, up to its
    closing brace (the model's own text: ``json.loads`` of the pieces joined gives the
    arguments). A call written otherwise (other key order, arguments as a string, an unknown
    name) stops the streaming: it and the calls after it are left for the end (``sent`` says
    how many calls were streamed). ``limit``: the most calls to stream (1 without
    ``parallel_tool_calls``)."""

    def __init__(self, fmt: str, names: set[str], limit: int | None = None):
        self.fmt, self.names, self.limit = fmt, names, limit
        self.sent, self.pos, self.stopped = 0, 0, False
        self.depth, self.in_string, self.escaped = None, False, False  # depth: None between calls

    def feed(self, held: str) -> list[dict]:
        """The deltas that ``held`` (all the text held so far) adds."""
        out = []
        while not self.stopped:
            if self.depth is None:  # between calls: the next one's head
                start = self._next_call(held)
                head = None if start is None else _HEAD.match(held, start)
                if head is None:
                    break  # not written yet (or written otherwise: the end will tell)
                name = json.loads(f'"{head[1]}"')
                if name not in self.names or (self.limit is not None and self.sent >= self.limit):
                    self.stopped = True
                    break
                out.append(dict(index=self.sent, id=f"call_{uuid.uuid4().hex[:24]}", type="function",
                                function=dict(name=name, arguments="")))
                self.pos, self.depth = head.end(), 0
            end = self._scan(held)
            if end > self.pos:
                out.append(dict(index=self.sent, function=dict(arguments=held[self.pos:end])))
                self.pos = end
            if self.depth is not None:
                break  # the arguments go on
            self.sent += 1
        return out

    def _next_call(self, held: str) -> int | None:
        """Where the next call's object may begin: after ``<tool_call>`` (hermes), or at the
        start (after ``<|python_tag|>``) or after ``;`` (llama3_json); None when not written yet."""
        if self.fmt == "hermes":
            i = held.find("<tool_call>", self.pos)
            return None if i < 0 else i + len("<tool_call>")
        if self.sent == 0:
            body = held.lstrip()
            return len(held) - len(body) + (len("<|python_tag|>") if body.startswith("<|python_tag|>") else 0)
        i = held.find(";", self.pos)
        return None if i < 0 else i + 1

    def _scan(self, held: str) -> int:
        """Follow the arguments object from ``pos``: where it ends (after its closing brace, and
        ``depth`` becomes None) or the end of ``held``."""
        for i in range(self.pos, len(held)):
            c = held[i]
            if self.in_string:
                self.escaped, self.in_string = (False, True) if self.escaped else (c == "\\", c != '"')
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.depth = None
                    return i + 1
        return len(held)
