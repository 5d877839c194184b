"""Constrained decoding: JSON mode. :class:`JSONLogitsProcessor` lets a model write only text
that can still become a JSON document (RFC 8259), and end only once it is one.

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
import re

import torch

from attnkit.errors import InputError

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


def _utf8_lead(b: int) -> tuple[int, int, int] | None:
    """``(continuation bytes, lowest, highest allowed next byte)`` after a UTF-8 lead byte, as
    the Unicode standard's table 3-7 (no overlong forms, no surrogates, nothing past U+10FFFF)."""
    if 0xC2 <= b <= 0xDF:
        return 1, 0x80, 0xBF
    if 0xE0 <= b <= 0xEF:
        return 2, 0xA0 if b == 0xE0 else 0x80, 0x9F if b == 0xED else 0xBF
    if 0xF0 <= b <= 0xF4:
        return 3, 0x90 if b == 0xF0 else 0x80, 0x8F if b == 0xF4 else 0xBF
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
        lead = _utf8_lead(b)
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


class JSONLogitsProcessor:
    """A ``logits_processor`` for ``generate``/``stream`` (and the server's ``response_format``)
    that keeps each row's generated text a prefix of a JSON document: every token whose bytes
    could not go on one gets ``-inf``, and the ``eos_token_id`` s are allowed only once the
    document is whole (then nothing else is, but whitespace). ``root="object"`` asks for an
    object (OpenAI's JSON mode), ``"any"`` for any value.

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
                 vocab_size: int | None = None, root: str = "object", max_whitespace: int = 16):
        if not hasattr(tokenizer, "backend"):
            raise InputError("JSONLogitsProcessor needs an attnkit Tokenizer (tokenizer=...) to read token bytes")
        eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        self.eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.prompt_length, self.max_whitespace, self.start = prompt_length, max_whitespace, json_start(root)
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

    def for_prompt(self, prompt_length: int) -> JSONLogitsProcessor:
        """This processor for generated ids after ``prompt_length`` tokens, sharing the token
        bytes and the masks."""
        other = copy.copy(self)
        other.prompt_length, other._rows = prompt_length, {}
        return other

    def state(self, generated: list[int]) -> tuple | None:
        """The grammar state after the ``generated`` ids, or None once the row has ended (or
        left the grammar)."""
        state = self.start
        for t in generated:
            data = self.tokens[t] if 0 <= t < len(self.tokens) else None
            state = None if data is None else json_feed(state, data, self.max_whitespace)
            if state is None:
                return None
        return state

    def allowed(self, state: tuple) -> torch.Tensor:
        """``(V,)`` bool: the tokens that may follow ``state`` (cached per state)."""
        mask = self._masks.get(state)
        if mask is not None:
            return mask
        mode, _, aux = state
        if mode == STRING and aux[1:] == (0, 0):  # inside a string, no escape or UTF-8 character open
            mask, candidates = self._plain.clone(), self._string_rest
        else:
            mask = torch.zeros(len(self.tokens), dtype=torch.bool)
            firsts = [b for b in self._by_first if json_step(state, b, self.max_whitespace) is not None]
            candidates = [i for b in firsts for i in self._by_first[b]]
        for i in candidates:
            if json_feed(state, self.tokens[i], self.max_whitespace) is not None:
                mask[i] = True
        if json_complete(state) or not mask.any():  # whole (or, against all odds, stuck): it may end
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
                data = self.tokens[key[-1]] if before is not None and 0 <= key[-1] < len(self.tokens) else None
                state = None if data is None else json_feed(before, data, self.max_whitespace)
            else:
                state = self.state(ids)
            rows[key] = state
            if state is not None:
                scores[r].masked_fill_(~self.allowed(state).to(scores.device), float("-inf"))
        self._rows = rows
        return scores


def _plain_text(data: bytes) -> bool:
    """Whether ``data`` is whole UTF-8 characters of string content: no quote, backslash or
    control character (allowed anywhere inside a string, whatever the document around it)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(c in '"\\' or ord(c) < 0x20 for c in text)
