"""Regular expressions as byte grammars for constrained decoding (:class:`RegexGrammar`).

A pattern is parsed into a Thompson NFA over characters (Thompson 1968); the grammar's state is
the set of NFA states reached (epsilon-closed) plus the bytes of a UTF-8 character not yet whole,
so a model may write only text that can still become a match, and end only on one. Transitions
are memoised per ``(set, character)``: a pattern's sets are few, so stepping is a dict lookup.

The meaning is Python's ``re`` for ``str`` patterns (the reference the tests compare against):
``\\d`` is any decimal digit (``str.isdecimal``), ``\\w`` a letter, digit or ``_``
(``str.isalnum``), ``\\s`` whitespace (``str.isspace``), ``.`` anything but a newline.
Supported: literals and escapes (``\\n``, ``\\t``, ``\\xHH``, ``\\uXXXX``, escaped punctuation),
classes ``[...]`` (ranges, negation, ``\\d\\w\\s`` inside), groups ``(...)``, ``(?:...)``,
``(?P<name>...)``, alternation, the quantifiers ``* + ? {n} {n,} {,m} {n,m}`` (lazy forms too:
they match the same strings), and the anchors ``^``/``\\A`` at the start and ``$``/``\\Z`` at the
end. Anything else (backreferences, lookaround, ``\\b``, inline flags, anchors elsewhere) is an
:class:`~attnkit.InputError` naming it, never silently read another way.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from attnkit.errors import InputError

MAX_REPEAT = 1000  # a bounded quantifier copies its operand this many times at most
MAX_STATES = 100_000  # NFA states in all (nested counted repeats multiply)


def utf8_lead(b: int) -> tuple[int, int, int] | None:
    """``(continuation bytes, lowest, highest allowed next byte)`` after a UTF-8 lead byte, as
    the Unicode standard's table 3-7 (no overlong forms, no surrogates, nothing past U+10FFFF)."""
    if 0xC2 <= b <= 0xDF:
        return 1, 0x80, 0xBF
    if 0xE0 <= b <= 0xEF:
        return 2, 0xA0 if b == 0xE0 else 0x80, 0x9F if b == 0xED else 0xBF
    if 0xF0 <= b <= 0xF4:
        return 3, 0x90 if b == 0xF0 else 0x80, 0x8F if b == 0xF4 else 0xBF
    return None


_CLASSES = {"d": str.isdecimal, "w": lambda c: c.isalnum() or c == "_", "s": str.isspace}


class CharSet(NamedTuple):
    """A set of characters: code point ``ranges`` and class letters (``d``, ``w``, ``s``; upper
    case for their complements), or the complement of all that."""

    ranges: tuple[tuple[int, int], ...]
    classes: str = ""
    negated: bool = False

    def __contains__(self, ch: str) -> bool:
        o = ord(ch)
        hit = any(lo <= o <= hi for lo, hi in self.ranges) or any(
            _CLASSES[c](ch) if c.islower() else not _CLASSES[c.lower()](ch) for c in self.classes)
        return hit != self.negated

    def may_hold(self, lo: int, hi: int) -> bool:
        """Whether some code point in ``[lo, hi]`` is in the set."""
        if not self.negated and not self.classes:
            return any(a <= hi and lo <= b for a, b in self.ranges)
        return _holds_one_of(self, lo, hi)


@functools.lru_cache(maxsize=4096)
def _holds_one_of(chars: CharSet, lo: int, hi: int) -> bool:
    """Whether a class-based set holds a code point in ``[lo, hi]``, by trying them (once per span)."""
    return any(chr(c) in chars for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF)


ANY = CharSet((), negated=True)
_DOT = CharSet(((0x0A, 0x0A),), negated=True)
_ESCAPED = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}


def _literal(ch: str) -> CharSet:
    return CharSet(((ord(ch), ord(ch)),))


class _Parser:
    """Recursive descent over a pattern already accepted by ``re.compile``. A node is
    ``("set", CharSet)``, ``("cat", [nodes])``, ``("alt", [nodes])`` or ``("repeat", node, lo, hi)``
    (``hi`` None: unbounded)."""

    def __init__(self, pattern: str):
        self.p, self.i = pattern, 0

    def refuse(self, what: str):
        raise InputError(f"regex {self.p!r}: {what} (at position {self.i}) is not supported")

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def alternatives(self):
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self):
        items = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.quantified(self.atom()))
        return ("cat", items)

    def atom(self):
        c = self.peek()
        self.i += 1
        if c == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?P<", self.i):
                self.i = self.p.index(">", self.i) + 1
            elif self.peek() == "?":
                self.refuse(f"the group {self.p[self.i - 1:self.i + 3]!r}... (lookaround, flags, references)")
            inner = self.alternatives()
            self.i += 1  # the ")" (re.compile checked the balance)
            return inner
        if c == "[":
            return ("set", self.char_class())
        if c == ".":
            return ("set", _DOT)
        if c == "\\":
            return ("set", self.escape())
        if c in "^$":
            self.i -= 1
            self.refuse(f"the anchor {c!r} away from the pattern's ends")
        return ("set", _literal(c))

    def quantified(self, node):
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                self.i += 1
            elif c == "{" and (m := re.compile(r"\{(\d*)(,?)(\d*)\}").match(self.p, self.i)) and m.group() != "{}":
                lo = int(m[1] or 0)
                hi = (int(m[3]) if m[3] else None) if m[2] else lo
                self.i = m.end()
                if max(lo, hi or 0) > MAX_REPEAT:
                    self.refuse(f"a repeat count over {MAX_REPEAT}")
            else:
                return node
            if self.peek() == "?":  # lazy: the same strings match
                self.i += 1
            elif self.peek() == "+":
                self.refuse("a possessive quantifier")
            node = ("repeat", node, lo, hi)

    def escape(self, in_class: bool = False) -> CharSet:
        c = self.peek()
        self.i += 1
        if c in "dwsDWS":
            return CharSet((), c)
        if c in _ESCAPED:
            return _literal(_ESCAPED[c])
        if c == "b" and in_class:
            return _literal("\b")
        if c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            code = int(self.p[self.i:self.i + width], 16)
            self.i += width
            return _literal(chr(code))
        if c.isalnum():
            self.i -= 1
            self.refuse(f"the escape '\\{c}'")
        return _literal(c)

    def char_class(self) -> CharSet:
        negated = self.peek() == "^"
        self.i += negated
        ranges, classes, first = [], "", True
        while first or self.peek() != "]":
            first = False
            item = self.escape(in_class=True) if self._take("\\") else _literal(self._next())
            if item.classes:
                classes += item.classes
                continue
            lo = item.ranges[0][0]
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                end = self.escape(in_class=True) if self._take("\\") else _literal(self._next())
                if end.classes:
                    self.refuse("a range ending in a class")
                ranges.append((lo, end.ranges[0][0]))
            else:
                ranges.append((lo, lo))
        self.i += 1
        return CharSet(tuple(ranges), classes, negated)

    def _take(self, c: str) -> bool:
        if self.peek() == c:
            self.i += 1
            return True
        return False

    def _next(self) -> str:
        self.i += 1
        return self.p[self.i - 1]


def _strip_anchors(pattern: str) -> tuple[str, str | None, str | None]:
    """``(body, start anchor, end anchor)``: ``^``/``\\A`` at the start and ``$``/``\\Z`` at the
    end (not an escaped ``\\$``)."""
    start = end = None
    for a in ("^", "\\A"):
        if pattern.startswith(a):
            start, pattern = a, pattern[len(a):]
            break
    for a in ("$", "\\Z"):
        if pattern.endswith(a):
            escapes = len(pattern[:-len(a)]) - len(pattern[:-len(a)].rstrip("\\"))
            if escapes % 2 == 0:
                end, pattern = a, pattern[:-len(a)]
            break
    return pattern, start, end


class RegexGrammar:
    """The texts that match ``pattern`` (Python's ``re.fullmatch``; with ``search=True``,
    ``re.search``, as JSON schema's ``pattern`` reads), as a byte grammar for
    :class:`~attnkit.generation.constraints.GrammarLogitsProcessor`: UTF-8 checked byte by byte,
    each character stepped through the pattern's NFA once it is whole. See the module doc for the
    syntax; anything outside it is an :class:`~attnkit.InputError`."""

    def __init__(self, pattern: str, search: bool = False):
        if not isinstance(pattern, str):
            raise InputError(f"a regex must be a string, got {type(pattern).__name__}")
        try:
            re.compile(pattern)
        except re.error as e:
            raise InputError(f"regex {pattern!r} is invalid: {e}") from None
        body, start, end = _strip_anchors(pattern)
        parser = _Parser(body)
        tree = parser.alternatives()
        if parser.i < len(body):
            parser.refuse("an unbalanced ')'")
        if search and (start or end) and tree[0] == "alt":
            raise InputError(f"regex {pattern!r}: an anchor beside a top-level '|' binds to one alternative; "
                             "group them, as in ^(a|b)$")
        if search:  # re.search: anything around the match, unless anchored; "$" also before a final newline
            around = ("repeat", ("set", ANY), 0, None)
            tail = ("repeat", ("set", _literal("\n")), 0, 1) if end == "$" else ("cat", []) if end else around
            tree = ("cat", [("cat", []) if start else around, tree, tail])
        self.pattern, self.search = pattern, search
        self._edges: list[list[tuple[CharSet | None, int]]] = []
        first, self._accept = self._emit(tree)
        self._moves: dict[tuple[frozenset, str], frozenset] = {}
        self.start = (self._closure({first}), b"")

    # -- the NFA -----------------------------------------------------------------------------
    def _state(self) -> int:
        if len(self._edges) >= MAX_STATES:
            raise InputError(f"regex {self.pattern!r} is too large: over {MAX_STATES} NFA states (nested counted "
                             "repeats multiply)")
        self._edges.append([])
        return len(self._edges) - 1

    def _emit(self, node) -> tuple[int, int]:
        """States for ``node``: ``(entry, exit)``; ``None`` labels an epsilon edge."""
        kind = node[0]
        if kind == "set":
            a, b = self._state(), self._state()
            self._edges[a].append((node[1], b))
            return a, b
        if kind == "cat":
            entry = exit_ = self._state()
            for item in node[1]:
                a, b = self._emit(item)
                self._edges[exit_].append((None, a))
                exit_ = b
            return entry, exit_
        if kind == "alt":
            entry, exit_ = self._state(), self._state()
            for item in node[1]:
                a, b = self._emit(item)
                self._edges[entry].append((None, a))
                self._edges[b].append((None, exit_))
            return entry, exit_
        _, inner, lo, hi = node
        parts = [inner] * lo
        entry, exit_ = self._emit(("cat", parts))
        if hi is None:  # a loop: zero or more further copies
            a, b = self._emit(inner)
            self._edges[exit_] += [(None, a)]
            self._edges[b] += [(None, a)]
            end = self._state()
            self._edges[exit_].append((None, end))
            self._edges[b].append((None, end))
            return entry, end
        end = self._state()
        for _ in range(hi - lo):  # each optional copy may be skipped to the end
            a, b = self._emit(inner)
            self._edges[exit_] += [(None, a), (None, end)]
            exit_ = b
        self._edges[exit_].append((None, end))
        return entry, end

    def _closure(self, states) -> frozenset:
        todo, seen = list(states), set(states)
        while todo:
            for label, target in self._edges[todo.pop()]:
                if label is None and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return frozenset(seen)

    def _move(self, states: frozenset, ch: str) -> frozenset:
        key = (states, ch)
        nxt = self._moves.get(key)
        if nxt is None:
            reached = {t for s in states for label, t in self._edges[s] if label is not None and ch in label}
            nxt = self._closure(reached) if reached else frozenset()
            if len(self._moves) > 1 << 16:
                self._moves.clear()
            self._moves[key] = nxt
        return nxt

    # -- the grammar -------------------------------------------------------------------------
    def step_char(self, states: frozenset, ch: str) -> frozenset | None:
        """The NFA states after one more character, or None when no match goes on that way."""
        return self._move(states, ch) or None

    def accepts(self, states: frozenset) -> bool:
        return self._accept in states

    def may_start(self, states: frozenset, lo: int, hi: int) -> bool:
        """Whether a character in ``[lo, hi]`` might step from ``states`` (a UTF-8 lead byte's range)."""
        return any(label is not None and label.may_hold(lo, hi) for s in states for label, _ in self._edges[s])

    def step(self, state: tuple, b: int) -> tuple | None:
        states, pending = state
        data = pending + bytes([b])
        if data[0] < 0x80:
            return None if (nxt := self.step_char(states, chr(b))) is None else (nxt, b"")
        span = utf8_span(data)
        if span is None or not self.may_start(states, *span):
            return None
        if span[0] != span[1]:  # the character is not whole yet
            return (states, data)
        return None if (nxt := self.step_char(states, chr(span[0]))) is None else (nxt, b"")

    def complete(self, state: tuple) -> bool:
        return not state[1] and self.accepts(state[0])

    def plain_string(self, state: tuple) -> bool:
        return False


def utf8_span(data: bytes) -> tuple[int, int] | None:
    """The code points a UTF-8 character beginning with ``data`` can still be, ``(lowest,
    highest)`` (equal once it is whole), or None when no character begins so."""
    lead = utf8_lead(data[0])
    if lead is None or len(data) > lead[0] + 1:
        return None
    n, lo2, hi2 = lead
    for k, byte in enumerate(data[1:], 1):
        if not ((lo2 <= byte <= hi2) if k == 1 else (0x80 <= byte <= 0xBF)):
            return None
    rest = n + 1 - len(data)
    low = data + (bytes([lo2]) if len(data) == 1 else b"") + b"\x80" * (rest - (len(data) == 1))
    high = data + (bytes([hi2]) if len(data) == 1 else b"") + b"\xbf" * (rest - (len(data) == 1))
    return ord(low.decode()), ord(high.decode())
