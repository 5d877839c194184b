"""RegexGrammar: accepts exactly what Python's ``re.fullmatch`` (``re.search`` with ``search=True``)
accepts, on random texts and on texts walked through the grammar, refuses a byte as soon as no
match can go on that way (UTF-8 lead bytes included), and refuses by name the syntax it does not
read."""

import random
import re

import pytest

from attnkit import InputError
from attnkit.generation.regex import RegexGrammar

PATTERNS = [r"\d{3}-\d{4}", r"(ab|a)*c?", r"[a-c]+x{2,3}", r"[^abc\n]{1,3}", r"(?:\w+\s?)+\.", r"é|ü+|😀{2}",
            r"a.b", r"[]a-]+", r"\x41\u00e9*", r"(?P<year>19|20)\d\d", r"a{,2}b{2,}", r"(a|b)?c+?", r"[\d\s]*",
            r"\S\W\D", r"^ab$", r"colou?r", r"(a*)*b", r"[^\x00-\x7f]+", r"x{0}y", r"\.\*\\", r"a\Z", r"\Aa|b",
            r"a{}", r"[\w-]+@\w+\.(com|org)"]
ALPHA = list("abcxy019- _.\n\\*]é€ü😀٣@{}") + ["A", "\t", "r", "o", "l", "u", "C", "m", "g"]


def _feed(grammar, state, text: str):
    for b in text.encode():
        state = grammar.step(state, b)
        if state is None:
            return None
    return state


def _accepts(grammar, text: str) -> bool:
    state = _feed(grammar, grammar.start, text)
    return state is not None and grammar.complete(state)


def _walk(grammar, rng: random.Random, steps: int) -> str:
    """A text the grammar keeps alive, stopping at random once it could end."""
    state, text = grammar.start, ""
    for _ in range(steps):
        options = [c for c in ALPHA if _feed(grammar, state, c) is not None]
        if not options or (grammar.complete(state) and rng.random() < 0.2):
            break
        c = rng.choice(options)
        state, text = _feed(grammar, state, c), text + c
    return text


CASES = [(p, search) for search in (False, True) for p in PATTERNS
         if not (search and p == r"\Aa|b")]  # refused in search mode: an anchor beside a top-level "|"


@pytest.mark.parametrize("pattern,search", CASES, ids=[f"{p}-{'search' if s else 'fullmatch'}" for p, s in CASES])
def test_the_grammar_accepts_exactly_what_re_accepts(pattern, search):
    grammar = RegexGrammar(pattern, search=search)
    reference = re.compile(pattern).search if search else re.compile(pattern).fullmatch
    rng = random.Random(pattern)
    texts = ["".join(rng.choice(ALPHA) for _ in range(rng.randrange(7))) for _ in range(400)]
    whole = RegexGrammar(pattern)  # walks through the pattern itself, with random text around when searching
    around = (lambda: "".join(rng.choice(ALPHA) for _ in range(rng.randrange(3)))) if search else (lambda: "")
    texts += [around() + _walk(whole, rng, 12) + around() for _ in range(100)]
    texts += [_walk(grammar, rng, 8) for _ in range(50)]
    verdicts = [bool(reference(t)) for t in texts]
    for text, verdict in zip(texts, verdicts):
        assert _accepts(grammar, text) == verdict, repr(text)
    assert any(verdicts) and (not all(verdicts) or (search and reference("")))  # found in any text: all match


def test_a_byte_no_match_can_follow_is_refused_at_once():
    digits = RegexGrammar(r"\d{3}")
    assert digits.step(digits.start, ord("a")) is None and digits.step(digits.start, ord("7")) is not None
    assert _feed(digits, digits.start, "123") is not None and _feed(digits, digits.start, "1234") is None
    # UTF-8: a lead byte only where a character it begins can match; é is C3 A9, ٣ (Arabic three) D9 A3
    word = RegexGrammar("[a-z]+é")
    after = _feed(word, word.start, "ab")
    assert word.step(after, 0xC3) is not None and word.step(after, 0xC4) is None
    assert word.step(word.step(after, 0xC3), 0xA8) is None  # è, not é
    assert digits.step(digits.start, 0xD9) is not None and digits.step(digits.start, 0xC3) is None
    assert digits.step(digits.start, 0x80) is None and digits.step(digits.start, 0xFF) is None  # not a lead byte


@pytest.mark.parametrize("pattern,match", [
    (r"(a)\1", r"escape '\\1'"), (r"(?=a)a", "lookaround"), (r"\bword", r"escape '\\b'"), (r"(?i)a", "lookaround"),
    (r"a^b", "anchor '\\^'"), (r"a$b", "anchor '\\$'"), (r"a*+", "possessive"), (r"a{2000}", "repeat count"),
    (r"a(", "invalid"), (r"(a{900}){900}", "too large"),
])
def test_unsupported_syntax_is_refused_by_name(pattern, match):
    with pytest.raises(InputError, match=match):
        RegexGrammar(pattern)


def test_search_refuses_anchors_beside_a_top_level_alternation():
    with pytest.raises(InputError, match="binds to one alternative"):
        RegexGrammar(r"^a|b", search=True)
    assert _accepts(RegexGrammar(r"^(a|b)$", search=True), "b\n")  # "$" also before a final newline, as re
    assert not _accepts(RegexGrammar(r"^(a|b)\Z", search=True), "b\n")
