"""Constrained decoding: JSON mode, JSON schemas and regular expressions.
:class:`GrammarLogitsProcessor` (also named ``JSONLogitsProcessor``) lets a model write only
text that can still become a JSON document (RFC 8259), one a JSON schema accepts, or a match of
a regex (:mod:`attnkit.generation.regex`), and end only once it is one.

The grammar is a pushdown automaton over bytes (:func:`json_step`): a state is ``(mode, stack,
aux)``, ``stack`` the open containers (``"o"`` objects, ``"a"`` arrays) and ``aux`` what the mode
needs (the whitespace run, a string's escape and pending UTF-8 bytes, a number's part, a
literal's remaining letters). It accepts exactly the documents Python's ``json.loads`` accepts
(without its ``NaN``/``Infinity`` extension), UTF-8 checked as Python's decoder checks it (tested
on mutated documents). A token is allowed when all its bytes step from the row's state; the
allowed set of each state is computed once and cached: inside a string every token of plain
text is allowed at once, elsewhere only the tokens whose first byte can follow are checked.
"""

from __future__ import annotations

import copy
import json
import math
import re
from fractions import Fraction
from typing import NamedTuple

import torch

from attnkit.errors import InputError
from attnkit.generation.regex import RegexGrammar, utf8_lead

ROOT, VALUE, ARRAY_FIRST, OBJECT_FIRST, KEY, COLON, AFTER, STRING, NUMBER, LITERAL = range(10)
_WS = frozenset(b" \t\n\r")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')
_LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}
# A number's parts: 0 after "-", 1 "0", 2 integer digits, 3 after ".", 4 fraction digits, 5 after
# "e", 6 after its sign, 7 exponent digits. Accepting: 1, 2, 4, 7 (the number may end there).
_DIGITS = frozenset(b"0123456789")
_NUMBER_ENDS = frozenset({1, 2, 4, 7})


def _number_step(part: int, b: int) -> int | None:
    if b in _DIGITS:
        if part == 0:
            return 1 if b == 0x30 else 2
        return None if part == 1 else {2: 2, 3: 4, 4: 4, 5: 7, 6: 7, 7: 7}[part]  # no digit after a leading 0
    if b == 0x2E:
        return 3 if part in (1, 2) else None
    if b in (0x65, 0x45):
        return 5 if part in (1, 2, 4) else None
    if b in (0x2B, 0x2D):
        return 6 if part == 5 else None
    return None


def json_start(root: str = "object") -> tuple:
    """The state before a document: ``root="object"`` (OpenAI's JSON mode) or ``"any"`` value."""
    if root not in ("object", "any"):
        raise InputError(f"root must be 'object' or 'any', got {root!r}")
    return (ROOT if root == "object" else VALUE, "", 0)


def json_complete(state: tuple) -> bool:
    """Whether the text up to ``state`` is a whole document (it may end here)."""
    mode, stack, aux = state
    return not stack and (mode == AFTER or (mode == NUMBER and aux in _NUMBER_ENDS))


def json_plain_string(state: tuple) -> bool:
    """Whether ``state`` is inside a string, no escape or UTF-8 character open: there every token
    of plain text may follow (when the string's content is free)."""
    return state[0] == STRING and state[2][1:] == (0, 0)


def json_step(state: tuple, b: int, max_whitespace: int = 16) -> tuple | None:
    """The state after byte ``b``, or None when no JSON document goes on that way. Runs of more
    than ``max_whitespace`` whitespace bytes between tokens are refused (a model must not pad
    forever)."""
    mode, stack, aux = state
    if mode == STRING:
        key, esc, cont = aux
        if cont:
            n, lo, hi = cont
            return (STRING, stack, (key, 0, (n - 1, 0x80, 0xBF) if n > 1 else 0)) if lo <= b <= hi else None
        if esc == 1:
            if b in _ESCAPES:
                return (STRING, stack, (key, 0, 0))
            return (STRING, stack, (key, 2, 0)) if b == 0x75 else None  # \u and four hex digits
        if esc:
            return (STRING, stack, (key, esc + 1 if esc < 5 else 0, 0)) if b in _HEX else None
        if b == 0x22:
            return (COLON, stack, 0) if key else (AFTER, stack, 0)
        if b == 0x5C:
            return (STRING, stack, (key, 1, 0))
        if b < 0x20:
            return None
        if b < 0x80:
            return state
        lead = utf8_lead(b)
        return None if lead is None else (STRING, stack, (key, 0, lead))
    if mode == NUMBER:
        part = _number_step(aux, b)
        if part is not None:
            return (NUMBER, stack, part)
        return json_step((AFTER, stack, 0), b, max_whitespace) if aux in _NUMBER_ENDS else None
    if mode == LITERAL:
        if b != aux[0]:
            return None
        return (LITERAL, stack, aux[1:]) if len(aux) > 1 else (AFTER, stack, 0)
    if b in _WS:
        return (mode, stack, aux + 1) if aux < max_whitespace else None
    if mode in (ROOT, VALUE, ARRAY_FIRST):
        if b == 0x7B:
            return (OBJECT_FIRST, stack + "o", 0)
        if mode == ROOT:
            return None
        if mode == ARRAY_FIRST and b == 0x5D:
            return (AFTER, stack[:-1], 0)
        if b == 0x5B:
            return (ARRAY_FIRST, stack + "a", 0)
        if b == 0x22:
            return (STRING, stack, (False, 0, 0))
        if b == 0x2D or b in _DIGITS:
            return (NUMBER, stack, _number_step(0, b) if b != 0x2D else 0)
        literal = _LITERALS.get(b)
        return None if literal is None else (LITERAL, stack, literal)
    if mode in (OBJECT_FIRST, KEY):
        if b == 0x22:
            return (STRING, stack, (True, 0, 0))
        return (AFTER, stack[:-1], 0) if mode == OBJECT_FIRST and b == 0x7D else None
    if mode == COLON:
        return (VALUE, stack, 0) if b == 0x3A else None
    # AFTER a value: a comma or the close of the innermost container; nothing at the top level.
    top = stack[-1:] if stack else ""
    if b == 0x2C and top:
        return (KEY, stack, 0) if top == "o" else (VALUE, stack, 0)
    if (b == 0x7D and top == "o") or (b == 0x5D and top == "a"):
        return (AFTER, stack[:-1], 0)
    return None


def json_feed(state: tuple | None, data: bytes, max_whitespace: int = 16) -> tuple | None:
    """The state after the bytes of ``data`` (None as soon as one cannot follow)."""
    for b in data:
        if state is None:
            return None
        state = json_step(state, b, max_whitespace)
    return state


class JSONGrammar:
    """Any JSON document (``root="object"``: an object) as a byte grammar: :func:`json_step` with
    the whitespace bound, for :class:`JSONLogitsProcessor`."""

    def __init__(self, root: str = "object", max_whitespace: int = 16):
        self.start, self.max_whitespace = json_start(root), max_whitespace

    def step(self, state: tuple, b: int) -> tuple | None:
        return json_step(state, b, self.max_whitespace)

    def complete(self, state: tuple) -> bool:
        return json_complete(state)

    def plain_string(self, state: tuple) -> bool:
        return json_plain_string(state)


def _later_start(a: tuple, b: tuple) -> tuple:
    """The later of two interval starts ``(value, included)``; value None is -inf."""
    if a[0] is None or b[0] is None:
        return b if a[0] is None else a
    return (a[0], a[1] and b[1]) if a[0] == b[0] else max(a, b, key=lambda e: e[0])


def _earlier_end(a: tuple, b: tuple) -> tuple:
    """The earlier of two interval ends ``(value, included)``; value None is +inf."""
    if a[0] is None or b[0] is None:
        return b if a[0] is None else a
    return (a[0], a[1] and b[1]) if a[0] == b[0] else min(a, b, key=lambda e: e[0])


def _decimal(x: int | float | str) -> Fraction:
    """A JSON number as the decimal it is written as (a float as its shortest repr: ``0.1`` is
    1/10). Shortest reprs order as their floats do, so comparing these agrees with comparing
    floats, as ``jsonschema`` does, for every number ``json.dumps`` writes."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


class _Range(NamedTuple):
    """A schema's bounds on its numbers (``minimum``, ``exclusiveMinimum``, ...): the start and
    end ``(decimal, included)`` (decimal None: none), for what a number being written can still
    become and for where it ends."""

    start: tuple
    end: tuple

    @classmethod
    def make(cls, low, low_open: bool, high, high_open: bool, integer: bool) -> _Range:
        start = (None if low is None else _decimal(low), not low_open)
        end = (None if high is None else _decimal(high), not high_open)
        if integer:  # the integers inside, both ends included
            if start[0] is not None:
                start = (math.floor(start[0]) + 1 if low_open or start[0].denominator > 1 else start[0], True)
            if end[0] is not None:
                end = (math.ceil(end[0]) - 1 if high_open or end[0].denominator > 1 else end[0], True)
        return cls(start, end)

    def holds(self, x: int | float | str) -> bool:
        """Whether a number (a JSON number's text, or a Python number) is inside."""
        x = _decimal(x) if not isinstance(x, str) else Fraction(x)
        return self._meets((x, True), (x, True))

    def _meets(self, start: tuple, end: tuple) -> bool:
        (a, a_in), (b, b_in) = _later_start(start, self.start), _earlier_end(end, self.end)
        return a is None or b is None or a < b or (a == b and a_in and b_in)

    def reaches(self, text: str) -> bool:
        """Whether a JSON number that begins with ``text`` (no exponent) can end inside."""
        negative, body = text.startswith("-"), text.lstrip("-")

        def meets(a, b, b_in: bool = False) -> bool:  # magnitudes from a (included) to b; None: no end
            return (self._meets((None if b is None else -b, b_in), (-a, True)) if negative
                    else self._meets((a, True), (b, b_in)))
        if not body:
            return meets(0, None)
        if "." in body:
            whole, fraction = body.split(".")
            base = Fraction(f"{whole}.{fraction or 0}")
            return meets(base, base + Fraction(1, 10 ** len(fraction)))
        if body == "0":
            return meets(0, 1)
        digits, scale = int(body), 1  # more digits may follow: [D·10^m, (D+1)·10^m) for every m
        while True:
            a = digits * scale
            if meets(a, (digits + 1) * scale):
                return True
            if (self.end[0] is not None and not negative and a > self.end[0]) or \
                    (self.start[0] is not None and negative and -a < self.start[0]):
                return False
            scale *= 10


class _Node(NamedTuple):
    """One compiled schema: the kinds of value it admits (None: any), and per kind what it asks."""

    kinds: frozenset | None
    properties: dict  # escaped key bytes -> node id
    required: frozenset
    additional: int | bool  # a node id for the other keys, True (any) or False (none)
    items: int | None  # a node id, or None (any)
    values: tuple | None  # enum/const: the allowed scalars, serialized
    branches: tuple  # anyOf: node ids with disjoint kinds
    pattern: RegexGrammar | None  # what its strings must hold (re.search)
    lengths: tuple[int, int | None]  # its strings' fewest and most characters
    counts: tuple[int, int | None]  # its arrays' fewest and most items
    prefix: tuple  # prefixItems: the node ids of its arrays' first items
    range: _Range | None  # its numbers' bounds


_KINDS = ("object", "array", "string", "number", "integer", "boolean", "null")
_IGNORED_KEYWORDS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "format",
                     "strict", "name", "$defs", "definitions", "deprecated", "readOnly", "writeOnly"}
_ANY = -1  # the node id of "any value"


def _kind_of(b: int) -> str | None:
    return {0x7B: "object", 0x5B: "array", 0x22: "string", 0x74: "boolean", 0x66: "boolean",
            0x6E: "null"}.get(b, "number" if b == 0x2D or b in _DIGITS else None)


def _admits(node: _Node, kind: str) -> bool:
    return node.kinds is None or kind in node.kinds or (kind == "number" and "integer" in node.kinds)


class JSONSchemaGrammar:
    """JSON documents that a JSON schema accepts, as a byte grammar (OpenAI's structured outputs,
    ``response_format: {"type": "json_schema"}``): :func:`json_step` for the syntax, and the
    schema checked at each value's first byte, each key, each scalar of an ``enum``, each close.

    The schema keywords read: ``type`` (a kind or a list), ``properties``, ``required``,
    ``additionalProperties`` (true, false or a schema), ``items`` (a schema, or false after
    ``prefixItems``), ``prefixItems`` (tuples), ``allOf`` of one schema, ``enum`` and ``const`` (of
    scalars), ``anyOf``/``oneOf`` of schemas whose kinds differ (``Optional[X]``: X or null),
    ``pattern`` (a regex a string must hold somewhere, as ``re.search``; the syntax of
    :mod:`attnkit.generation.regex`), ``minLength``/``maxLength`` (characters, as Python counts
    them), ``minItems``/``maxItems``, ``minimum``/``maximum``/``exclusiveMinimum``/
    ``exclusiveMaximum`` (numbers with bounds are written without an exponent, and refused at
    the first digit after which they could no longer end inside), and ``$ref`` to
    ``#/$defs/...`` (recursion included);
    annotations (``title``, ``description``,
    ``format``, ...) are ignored. Any other keyword is an :class:`~attnkit.InputError` naming it,
    never silently dropped. Keys must be written as ``json.dumps`` writes them, in any order, each
    once; ``integer`` numbers have no fraction or exponent."""

    def __init__(self, schema: dict, max_whitespace: int = 16):
        if not isinstance(schema, dict):
            raise InputError(f"a JSON schema must be an object, got {type(schema).__name__}")
        self.max_whitespace, self._document, self.nodes, self._compiled = max_whitespace, schema, [], {}
        self.root = self._compile(schema, "#")
        self.start = (json_start("any"), (), None)

    # -- compiling ---------------------------------------------------------------------------
    def _compile(self, schema, where: str) -> int:
        if schema is True or schema == {}:
            return _ANY
        if not isinstance(schema, dict):
            raise InputError(f"JSON schema at {where} must be an object or true, got {json.dumps(schema)[:60]}")
        for keyword in ("$ref", "allOf"):  # alone, or with annotations beside it
            if keyword in schema:
                beside = sorted(set(schema) - {keyword} - _IGNORED_KEYWORDS)
                if beside:
                    raise InputError(f"JSON schema keyword {beside[0]!r} beside {keyword} at {where} is not supported")
        if "$ref" in schema:
            return self._ref(schema["$ref"], where)
        if "allOf" in schema:  # Pydantic's wrapper of a $ref with a description
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise InputError(f"JSON schema allOf at {where} must hold one schema (more are not supported)")
            return self._compile(parts[0], f"{where}/allOf/0")
        if id(schema) in self._compiled:
            return self._compiled[id(schema)]
        known = {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "enum", "const",
                 "anyOf", "oneOf",
                 "pattern", "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum",
                 "exclusiveMaximum"}
        unknown = sorted(set(schema) - known - _IGNORED_KEYWORDS)
        if unknown:
            raise InputError(f"JSON schema keyword {unknown[0]!r} at {where} is not supported (supported: "
                             f"{', '.join(sorted(known))}, $ref, and annotations)")
        index = len(self.nodes)
        self._compiled[id(schema)] = index
        self.nodes.append(None)  # reserved: a $ref inside may point back here
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if kinds is not None and (not isinstance(kinds, list) or any(k not in _KINDS for k in kinds)):
            raise InputError(f"JSON schema type at {where} must be one of {_KINDS} or a list of them, got {kinds!r}")
        values = None
        if "enum" in schema or "const" in schema:
            options = schema["enum"] if "enum" in schema else [schema["const"]]
            if not isinstance(options, list) or not options or any(isinstance(v, (dict, list)) for v in options):
                raise InputError(f"JSON schema enum/const at {where} must list scalars (strings, numbers, booleans, "
                                 "null)")
            lo, hi = self._bounds(schema, "minLength", "maxLength", where)
            pattern = schema.get("pattern") if isinstance(schema.get("pattern"), str) else None
            numbers = self._range(schema, where, integer=False)
            options = [v for v in options if not isinstance(v, str) or (  # strings must match and fit too
                (pattern is None or re.search(pattern, v)) and lo <= len(v) <= (len(v) if hi is None else hi))]
            options = [v for v in options if numbers is None or isinstance(v, (str, bool)) or v is None
                       or numbers.holds(v)]  # numbers within the bounds
            if not options:
                raise InputError(f"JSON schema at {where}: no value of its enum/const meets its other keywords")
            values = tuple(json.dumps(v, ensure_ascii=False).encode() for v in options)
            kinds = kinds or sorted({_kind_of(v[0]) for v in values})
        branches = ()
        alternatives = schema.get("anyOf", schema.get("oneOf"))
        if alternatives is not None:
            beside = sorted(set(schema) & (known - {"anyOf", "oneOf"}))
            if not isinstance(alternatives, list) or not alternatives or beside:
                raise InputError(f"JSON schema anyOf at {where} must be a non-empty list, with no other keyword beside "
                                 f"it{f' (here {beside[0]!r})' if beside else ''}")
            branches = tuple(self._compile(a, f"{where}/anyOf/{i}") for i, a in enumerate(alternatives))
            seen: set = set()
            for b in branches:
                if b != _ANY and self.nodes[b] is None:
                    raise InputError(f"JSON schema anyOf at {where} refers back to itself")
                node_kinds = set(_KINDS) if b == _ANY or self.nodes[b].kinds is None else set(self.nodes[b].kinds)
                node_kinds |= {"number", "integer"} if node_kinds & {"number", "integer"} else set()
                if seen & node_kinds:
                    raise InputError(f"JSON schema anyOf at {where}: its schemas must admit different kinds of value "
                                     f"({sorted(seen & node_kinds)[0]} twice)")
                seen |= node_kinds
            kinds = sorted(seen - ({"integer"} if "number" in seen else set()))
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise InputError(f"JSON schema properties at {where} must be an object")
        properties = {json.dumps(k, ensure_ascii=False)[1:-1].encode(): self._compile(v, f"{where}/properties/{k}")
                      for k, v in props.items()}
        required = schema.get("required", [])
        if not isinstance(required, list) or any(k not in props for k in required):
            raise InputError(f"JSON schema required at {where} must list some of its properties, got {required!r}")
        extra = schema.get("additionalProperties", True)
        additional = extra if isinstance(extra, bool) else self._compile(extra, f"{where}/additionalProperties")
        prefix = schema.get("prefixItems", [])
        if not isinstance(prefix, list):
            raise InputError(f"JSON schema prefixItems at {where} must be a list of schemas")
        prefix = tuple(self._compile(p, f"{where}/prefixItems/{i}") for i, p in enumerate(prefix))
        counts = self._bounds(schema, "minItems", "maxItems", where)
        items = schema.get("items", True)
        if items is False:  # no item after the prefix
            counts = (counts[0], len(prefix) if counts[1] is None else min(counts[1], len(prefix)))
            if counts[0] > counts[1]:
                raise InputError(f"JSON schema at {where}: minItems ({counts[0]}) is over the {len(prefix)} "
                                 "prefixItems")
        items = None if isinstance(items, bool) else self._compile(items, f"{where}/items")
        pattern = schema.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise InputError(f"JSON schema pattern at {where} must be a string, got {json.dumps(pattern)[:60]}")
        self.nodes[index] = _Node(None if kinds is None else frozenset(kinds), properties,
                                  frozenset(json.dumps(k, ensure_ascii=False)[1:-1].encode() for k in required),
                                  additional, None if items == _ANY else items, values, branches,
                                  None if pattern is None else RegexGrammar(pattern, search=True),
                                  self._bounds(schema, "minLength", "maxLength", where),
                                  counts, prefix,
                                  self._range(schema, where, integer=kinds is not None and "number" not in kinds))
        return index

    @staticmethod
    def _bounds(schema: dict, low: str, high: str, where: str) -> tuple[int, int | None]:
        """``(schema[low], schema[high])``: counts, 0 and None when absent."""
        lo, hi = schema.get(low, 0), schema.get(high)
        for name, v in ((low, lo), (high, hi)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InputError(f"JSON schema {name} at {where} must be a whole number >= 0, got {json.dumps(v)[:60]}")
        if hi is not None and lo > hi:
            raise InputError(f"JSON schema at {where}: {low} ({lo}) is over {high} ({hi})")
        return lo, hi

    @staticmethod
    def _range(schema: dict, where: str, integer: bool) -> _Range | None:
        """The bounds of ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``
        (the tighter of each pair), or None when there are none."""
        given = {k: schema[k] for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum") if k in schema}
        for k, v in given.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise InputError(f"JSON schema {k} at {where} must be a number, got {json.dumps(v)[:60]}")
        if not given:
            return None
        lows = [(v, k == "exclusiveMinimum") for k, v in given.items() if k in ("minimum", "exclusiveMinimum")]
        highs = [(v, k == "exclusiveMaximum") for k, v in given.items() if k in ("maximum", "exclusiveMaximum")]
        low = max(lows, key=lambda e: (e[0], e[1])) if lows else (None, False)
        high = min(highs, key=lambda e: (e[0], not e[1])) if highs else (None, False)
        bounds = _Range.make(*low, *high, integer)
        if bounds.start[0] is not None and bounds.end[0] is not None and not bounds._meets(bounds.start, bounds.end):
            raise InputError(f"JSON schema at {where}: no {'integer' if integer else 'number'} is within its bounds")
        return bounds

    def _ref(self, ref, where: str) -> int:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise InputError(f"JSON schema $ref at {where} must point inside the schema (#/$defs/...), got {ref!r}")
        target = self._document
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                raise InputError(f"JSON schema $ref {ref!r} at {where} points at nothing")
            target = target[part]
        return self._compile(target, ref)

    # -- the grammar -------------------------------------------------------------------------
    def _node(self, index: int | None) -> _Node | None:
        return None if index is None or index == _ANY else self.nodes[index]

    def _value_node(self, frames: tuple) -> int | None:
        """The schema of the value that may start here."""
        if not frames:
            return self.root
        top = frames[-1]
        if top[0] == "a":  # the item just begun, the top[2]-th
            node = self._node(top[1])
            if node is None:
                return None
            return node.prefix[top[2] - 1] if top[2] <= len(node.prefix) else node.items
        return top[3]

    def step(self, state: tuple, b: int) -> tuple | None:
        js, frames, scalar = state
        nxt = json_step(js, b, self.max_whitespace)
        if nxt is None:
            return None
        before, after = js[0], nxt[0]
        if scalar is not None and scalar[0] == "key":
            if before == STRING and after == COLON:  # the key is whole
                return self._key(nxt, frames, scalar[1])
            return self._key_byte(nxt, frames, scalar[1] + bytes([b]))
        if scalar is not None and scalar[0] == "string":
            return self._string_byte(nxt, frames, scalar, b)
        if scalar is not None and scalar[0] == "number":
            return self._number_byte(nxt, frames, scalar, b)
        if scalar is not None:
            node, typed = self._node(scalar[0]), scalar[1]
            inside = after in (STRING, NUMBER, LITERAL)
            if inside or before in (STRING, LITERAL):  # b belongs to the value
                typed = None if typed is None else typed + bytes([b])
                if before == NUMBER and b in b".eE" and "number" not in node.kinds:
                    return None  # an integer
                if typed is not None and not any(v.startswith(typed) for v in node.values):
                    return None
                if inside:
                    return (nxt, frames, (scalar[0], typed))
                return (nxt, frames, None) if typed is None or typed in node.values else None
            if typed is not None and typed not in node.values:  # a number ended by b
                return None
            scalar, before = None, AFTER
        elif before in (STRING, LITERAL) or (before == NUMBER and after == NUMBER):
            return (nxt, frames, None)  # inside (or closing) a value the schema leaves free
        elif before == NUMBER:
            before = AFTER  # a free number ended by b
        return self._structure(before, nxt, frames, b)

    def _structure(self, before: int, nxt: tuple, frames: tuple, b: int) -> tuple | None:
        """The schema's say on a byte outside any scalar: a value's start, a key's, a close, a comma."""
        if b in _WS:
            return (nxt, frames, None)
        if before in (ROOT, VALUE, ARRAY_FIRST) and not (before == ARRAY_FIRST and b == 0x5D):
            return self._start(nxt, frames, b)
        top = frames[-1] if frames else None
        node = self._node(top[1]) if top is not None else None
        if before in (OBJECT_FIRST, KEY) and b == 0x22:
            return (nxt, frames, ("key", b""))
        if b == 0x7D:  # an object closes: every required key is there
            return (nxt, frames[:-1], None) if node is None or node.required <= top[2] else None
        if b == 0x5D:  # an array closes: with enough items
            return (nxt, frames[:-1], None) if node is None or node.counts[0] <= top[2] else None
        if b == 0x2C and top[0] == "o" and node is not None and node.additional is False \
                and not set(node.properties) - top[2]:
            return None  # no key left to write
        if b == 0x2C and top[0] == "a" and node is not None and node.counts[1] is not None \
                and top[2] >= node.counts[1]:
            return None  # no item left to write
        return (nxt, frames, None)

    def _start(self, nxt: tuple, frames: tuple, b: int) -> tuple | None:
        kind = _kind_of(b)
        if frames and frames[-1][0] == "a":  # one more item
            _, array, count = frames[-1]
            node = self._node(array)
            if node is not None and node.counts[1] is not None and count >= node.counts[1]:
                return None
            frames = frames[:-1] + (("a", array, count + 1),)
        index = self._value_node(frames)
        node = self._node(index)
        if node is not None and node.branches:  # the one branch that admits this kind of value
            index = next((i for i in node.branches if i == _ANY or _admits(self.nodes[i], kind)), None)
            if index is None:
                return None
            node = self._node(index)
        if node is not None and not _admits(node, kind):
            return None
        if kind == "object":
            return (nxt, frames + (("o", index, frozenset(), None),), None)
        if kind == "array":
            return (nxt, frames + (("a", index, 0),), None)
        if kind == "string" and node is not None and node.values is None and (
                node.pattern is not None or node.lengths != (0, None)):  # watched character by character
            return (nxt, frames, ("string", index, None if node.pattern is None else node.pattern.start[0], b"", 0))
        if node is not None and node.values is not None:
            typed = bytes([b])
            if not any(v.startswith(typed) for v in node.values):
                return None
            return (nxt, frames, (index, typed)) if nxt[0] in (STRING, NUMBER, LITERAL) else (nxt, frames, None)
        if kind == "number" and node is not None and node.range is not None:  # watched against its bounds
            return (nxt, frames, ("number", index, bytes([b]))) if node.range.reaches(chr(b)) else None
        if kind == "number" and node is not None and "number" not in node.kinds:
            return (nxt, frames, (index, None))  # an integer: watched for a fraction or an exponent
        return (nxt, frames, None)

    def _string_byte(self, nxt: tuple, frames: tuple, scalar: tuple, b: int) -> tuple | None:
        """A byte of a string with a pattern or lengths: its characters, once whole (escapes
        decoded as ``json.loads`` decodes them, a ``\\u`` surrogate pair as one character), step
        the pattern and are counted; the closing quote only where the pattern has matched and the
        string is long enough."""
        _, index, states, pending, count = scalar
        node = self.nodes[index]
        closing = nxt[0] != STRING
        data = pending if closing else pending + bytes([b])
        if not closing and (nxt[2][1] or nxt[2][2]):  # an escape or a UTF-8 character, not whole yet
            return (nxt, frames, ("string", index, states, data, count))
        text = json.loads(b'"' + data + b'"')
        if not closing and text and 0xD800 <= ord(text[-1]) <= 0xDBFF:
            return (nxt, frames, ("string", index, states, data, count))  # a low surrogate may follow
        count += len(text)
        if node.lengths[1] is not None and count > node.lengths[1]:
            return None
        for ch in text if states is not None else ():
            states = node.pattern.step_char(states, ch)
            if states is None:
                return None
        if closing:
            whole = count >= node.lengths[0] and (states is None or node.pattern.accepts(states))
            return (nxt, frames, None) if whole else None
        return (nxt, frames, ("string", index, states, b"", count))

    def _number_byte(self, nxt: tuple, frames: tuple, scalar: tuple, b: int) -> tuple | None:
        """A byte of a number with bounds, or the byte after it: the number must still be able to
        end inside them (written without an exponent; an integer without a fraction), and be
        inside once it ends."""
        _, index, typed = scalar
        node = self.nodes[index]
        if nxt[0] == NUMBER:
            if b in b"eE" or (b == 0x2E and "number" not in node.kinds):
                return None
            typed += bytes([b])
            return (nxt, frames, ("number", index, typed)) if node.range.reaches(typed.decode()) else None
        if not node.range.holds(typed.decode()):
            return None
        return self._structure(AFTER, nxt, frames, b)

    def _key_byte(self, nxt: tuple, frames: tuple, typed: bytes) -> tuple | None:
        top = frames[-1]
        node = self._node(top[1])
        if node is not None and node.additional is False \
                and not any(k.startswith(typed) for k in node.properties if k not in top[2]):
            return None
        return (nxt, frames, ("key", typed))

    def _key(self, nxt: tuple, frames: tuple, key: bytes) -> tuple | None:
        top = frames[-1]
        node = self._node(top[1])
        if key in top[2]:
            return None  # each key once
        if node is None:
            value = None
        elif key in node.properties:
            value = node.properties[key]
        elif node.additional is False:
            return None
        else:
            value = None if node.additional is True else node.additional
        return (nxt, frames[:-1] + (("o", top[1], top[2] | {key}, value),), None)

    def complete(self, state: tuple) -> bool:
        js, frames, scalar = state
        if not json_complete(js) or frames:
            return False
        if scalar is not None and scalar[0] == "number":
            return self.nodes[scalar[1]].range.holds(scalar[2].decode())
        return scalar is None or scalar[1] is None or scalar[1] in self._node(scalar[0]).values

    def plain_string(self, state: tuple) -> bool:
        js, _, scalar = state
        return scalar is None and json_plain_string(js)


class FramedGrammar:
    """Fixed text, then a document of ``inner`` (a :class:`JSONGrammar` or
    :class:`JSONSchemaGrammar`), then fixed text: a tool call in a chat model's format
    (``<tool_call>\n{...}</tool_call>``). The document's trailing whitespace belongs to it;
    ``suffix`` begins where the document can take no more."""

    def __init__(self, prefix: bytes, inner, suffix: bytes = b""):
        self.prefix, self.inner, self.suffix = prefix, inner, suffix
        self.start = ("pre", 0) if prefix else ("in", inner.start)

    def step(self, state: tuple, b: int) -> tuple | None:
        part, at = state
        if part == "pre":
            if b != self.prefix[at]:
                return None
            return ("pre", at + 1) if at + 1 < len(self.prefix) else ("in", self.inner.start)
        if part == "in":
            nxt = self.inner.step(at, b)
            if nxt is not None:
                return ("in", nxt)
            if self.suffix and self.inner.complete(at) and b == self.suffix[0]:
                return ("post", 1)
            return None
        return ("post", at + 1) if at < len(self.suffix) and b == self.suffix[at] else None

    def complete(self, state: tuple) -> bool:
        part, at = state
        return (part == "post" and at == len(self.suffix)) or (part == "in" and not self.suffix
                                                                and self.inner.complete(at))

    def plain_string(self, state: tuple) -> bool:
        return state[0] == "in" and self.inner.plain_string(state[1])


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as the printable character that stands for it."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def token_bytes(tokenizer, size: int | None = None) -> list[bytes | None]:
    """The bytes each token id adds to a decoded text (``size`` ids, the model's vocabulary;
    ids past the tokenizer's are None), None for special tokens and tokens that add nothing.

    Byte-level BPE tokens (GPT-2, Llama 3, Qwen) map back through the byte alphabet, so a token
    holding part of a UTF-8 character gives that part; ``<0xXX>`` byte-fallback tokens give their
    byte; any other token the text it adds after a one-letter token (SentencePiece's leading
    space included)."""
    backend = tokenizer.backend
    n = tokenizer.vocab_size
    size = n if size is None else size
    added = backend.get_added_tokens_decoder()
    decoder = json.dumps(json.loads(backend.to_str()).get("decoder"))
    out: list[bytes | None] = [None] * size
    ids = [i for i in range(min(n, size)) if i not in added]
    if '"ByteLevel"' in decoder:
        inverse = {c: b for b, c in _bytes_to_unicode().items()}
        for i in ids:
            token = backend.id_to_token(i)
            if token and all(c in inverse for c in token):
                out[i] = bytes(inverse[c] for c in token)
    else:
        anchor = next((i for i in ids if backend.decode([i]) in ("a", "x", "e")), ids[0] if ids else None)
        head = backend.decode([anchor]) if anchor is not None else ""
        texts = backend.decode_batch([[anchor, i] for i in ids], skip_special_tokens=False) if ids else []
        for i, text in zip(ids, texts):
            fallback = _BYTE_FALLBACK.fullmatch(backend.id_to_token(i) or "")
            if fallback:
                out[i] = bytes([int(fallback.group(1), 16)])
            elif text.startswith(head) and "\ufffd" not in text:
                out[i] = text[len(head):].encode()
    for i, token in added.items():  # added tokens that are not special are their text as it stands
        if i < size and not token.special:
            out[i] = token.content.encode()
    return [b or None for b in out]


class GrammarLogitsProcessor:
    """A ``logits_processor`` for ``generate``/``stream`` (and the server's ``response_format``)
    that keeps each row's generated text a prefix of a JSON document: every token whose bytes
    could not go on one gets ``-inf``, and the ``eos_token_id`` s are allowed only once the
    document is whole (then nothing else is, but whitespace). ``root="object"`` asks for an
    object (OpenAI's JSON mode), ``"any"`` for any value; ``schema`` (a JSON schema) for a
    document it accepts (:class:`JSONSchemaGrammar`: OpenAI's structured outputs); ``regex``
    for a text that matches it whole (:class:`~attnkit.generation.regex.RegexGrammar`);
    ``grammar`` for the texts of any byte grammar (``start``, ``step``, ``complete``,
    ``plain_string``, as those). ``JSONLogitsProcessor`` is its other name.

    ``prompt_length``: the tokens of ``input_ids`` before the generated ones (the padded prompt's
    width; an encoder-decoder's start tokens). Rows that have ended (an EOS or another special
    token among their generated ones) are left as they are. Greedy decoding then picks the most
    likely token that keeps the text on course; sampling samples among those tokens, with the
    warpers (temperature, top-k, top-p) applied after the constraint, as Hugging Face applies
    its processors before its warpers.

    Building one reads the bytes of every token (a fraction of a second for 150,000 tokens);
    :meth:`for_prompt` gives one for another prompt length that shares them and the cached
    masks (a server builds one per tokenizer).
    """

    def __init__(self, tokenizer, prompt_length: int, eos_token_id: int | list[int] | None = None,
                 vocab_size: int | None = None, root: str = "object", max_whitespace: int = 16,
                 schema: dict | None = None, regex: str | None = None, grammar=None):
        if not hasattr(tokenizer, "backend"):
            raise InputError("constrained decoding needs an attnkit Tokenizer (tokenizer=...) to read token bytes")
        if sum(x is not None for x in (schema, regex, grammar)) > 1:
            raise InputError("give one of schema, regex and grammar")
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        self.eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if grammar is None:
            grammar = (JSONSchemaGrammar(schema, max_whitespace) if schema is not None
                       else RegexGrammar(regex) if regex is not None else JSONGrammar(root, max_whitespace))
        self.grammar, self.max_whitespace = grammar, max_whitespace
        self.prompt_length = prompt_length
        self.tokens = token_bytes(tokenizer, vocab_size or tokenizer.vocab_size)
        V = len(self.tokens)
        self._by_first: dict[int, list[int]] = {}
        plain, self._string_rest = torch.zeros(V, dtype=torch.bool), []
        for i, data in enumerate(self.tokens):
            if data is None:
                continue
            self._by_first.setdefault(data[0], []).append(i)
            text = _plain_text(data)
            if text:
                plain[i] = True
            else:
                self._string_rest.append(i)
        self._plain = plain  # the tokens of plain text: allowed anywhere inside a string
        self._masks: dict[tuple, torch.Tensor] = {}
        self._rows: dict[tuple, tuple | None] = {}

    def for_prompt(self, prompt_length: int, schema: dict | None = None, grammar=None) -> GrammarLogitsProcessor:
        """This processor for generated ids after ``prompt_length`` tokens, sharing the token
        bytes and the masks; with ``schema``, for documents that JSON schema accepts instead, or
        with ``grammar`` (:class:`FramedGrammar`, ...) for its texts (masks of their own)."""
        other = copy.copy(self)
        other.prompt_length, other._rows = prompt_length, {}
        if schema is not None:
            grammar = JSONSchemaGrammar(schema, self.max_whitespace)
        if grammar is not None:
            other.grammar, other._masks = grammar, {}
        return other

    def _feed(self, state: tuple | None, data: bytes | None) -> tuple | None:
        """The grammar state after ``data`` (a token's bytes; None: a special token, which ends
        the row), or None."""
        if data is None:
            return None
        for b in data:
            if state is None:
                return None
            state = self.grammar.step(state, b)
        return state

    def state(self, generated: list[int]) -> tuple | None:
        """The grammar state after the ``generated`` ids, or None once the row has ended (or
        left the grammar)."""
        state = self.grammar.start
        for t in generated:
            state = self._feed(state, self.tokens[t] if 0 <= t < len(self.tokens) else None)
            if state is None:
                return None
        return state

    def allowed(self, state: tuple) -> torch.Tensor:
        """``(V,)`` bool: the tokens that may follow ``state`` (cached per state)."""
        mask = self._masks.get(state)
        if mask is not None:
            return mask
        if self.grammar.plain_string(state):  # inside free string content: all plain text at once
            mask, candidates = self._plain.clone(), self._string_rest
        else:
            mask = torch.zeros(len(self.tokens), dtype=torch.bool)
            firsts = [b for b in self._by_first if self.grammar.step(state, b) is not None]
            candidates = [i for b in firsts for i in self._by_first[b]]
        for i in candidates:
            if self._feed(state, self.tokens[i]) is not None:
                mask[i] = True
        if self.grammar.complete(state) or not mask.any():  # whole (or, against all odds, stuck): it may end
            mask[[i for i in self.eos if i < len(mask)]] = True
        if len(self._masks) >= 4096:
            self._masks.clear()
        self._masks[state] = mask
        return mask

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows = {}
        for r, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            key = tuple(ids)
            if key in rows:
                state = rows[key]
            elif key[:-1] in self._rows and key:  # the row one token ago: one more token to feed
                before = self._rows[key[:-1]]
                state = self._feed(before, self.tokens[key[-1]] if 0 <= key[-1] < len(self.tokens) else None)
            else:
                state = self.state(ids)
            rows[key] = state
            if state is not None:
                scores[r].masked_fill_(~self.allowed(state).to(scores.device), float("-inf"))
        self._rows = rows
        return scores


JSONLogitsProcessor = GrammarLogitsProcessor  # its name from when it knew JSON alone


def _plain_text(data: bytes) -> bool:
    """Whether ``data`` is whole UTF-8 characters of string content: no quote, backslash or
    control character (allowed anywhere inside a string, whatever the document around it)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(c in '"\\' or ord(c) < 0x20 for c in text)
