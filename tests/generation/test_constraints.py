"""JSON mode: the byte grammar accepts exactly what ``json.loads`` accepts (on random documents
and mutations of them), and the schema grammar exactly what ``jsonschema`` validates; token
bytes join to the decoded text for byte-level BPE, SentencePiece and character vocabularies, the
cached masks equal checking every token, and constrained decoding (greedy, sampled, beam search;
left-padded batches; the server's ``response_format``) writes JSON objects (valid under the
schema) where the same model unconstrained does not."""

import copy
import json
import random

import pytest
import torch

import attnkit
from attnkit import InputError
from attnkit.generation.constraints import (GrammarLogitsProcessor, JSONLogitsProcessor, JSONSchemaGrammar,
                                            json_complete, json_feed, json_start, token_bytes)
from attnkit.tokenizers import Tokenizer

jsonschema = pytest.importorskip("jsonschema")  # the reference validator (a dev dependency)


def _accepts(data: bytes, root: str = "any") -> bool:
    state = json_feed(json_start(root), data, max_whitespace=10**9)
    return state is not None and json_complete(state)


def _json_loads_accepts(data: bytes) -> bool:
    def no_constants(name):  # Python's NaN / Infinity extension is not JSON
        raise ValueError(name)

    try:
        json.loads(data.decode("utf-8"), parse_constant=no_constants)
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        return rng.choice([0, -1, 12, 3.5, -0.25, 1e-7, 6.02e23, 10**20, rng.random()])
    if kind in (2, 3):
        return "".join(rng.choice('ab "\\/\n\té€😀\u0001\u2028') for _ in range(rng.randrange(6)))
    if kind in (4, 5):
        return {str(_random_value(rng, depth + 1))[:5]: _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_the_grammar_accepts_exactly_what_json_loads_accepts():
    """Random documents (ASCII-escaped or UTF-8, compact or indented) are accepted, and of their
    random one-byte mutations (a byte deleted, inserted or replaced: structure, digits, escapes,
    stray UTF-8) exactly those ``json.loads`` accepts."""
    rng = random.Random(0)
    mutations = b'{}[]",:0123456789-+.eE tfnrul\\\x00\x7f\x80\xbf\xc3\xa9\xe0\xed\xa0\xf0\xf4\x90\x9f'
    checked = 0
    for _ in range(1500):
        doc = json.dumps(_random_value(rng), ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2])).encode()
        assert _accepts(doc), doc
        for _ in range(4):
            b, pos = bytearray(doc), rng.randrange(len(doc))
            kind = rng.randrange(3)
            if kind == 0:
                del b[pos]
            elif kind == 1:
                b.insert(pos, rng.choice(mutations))
            else:
                b[pos] = rng.choice(mutations) if rng.random() < 0.7 else rng.randrange(256)
            assert _accepts(bytes(b)) == _json_loads_accepts(bytes(b)), bytes(b)
            checked += 1
    assert checked == 6000


def test_the_vocabularies_have_tokens_with_escapes(bpe, sentencepiece):
    """The tokenizers of the tests below have tokens holding quotes mid-string and escapes, and
    (SentencePiece's) backslashes that no JSON string may hold."""
    data = [d for d in token_bytes(bpe) if d]
    assert any(b'"' in d and len(d) > 2 for d in data) and any(b'\\"' in d for d in data)
    data = [d for d in token_bytes(sentencepiece) if d]
    assert any(b'"' in d and len(d) > 2 for d in data) and any(b'\\"' in d or b"\\n" in d for d in data)
    assert any(json_feed(json_start(), b'{"a": "' + d) is None and b'"' not in d and b"\\" in d for d in data)


def test_objects_at_the_root_and_bounded_whitespace():
    assert _accepts(b'{"a": [1, {"b": null}]}', root="object")
    for doc in (b"[1]", b'"x"', b"1", b"true"):
        assert _accepts(doc) and not _accepts(doc, root="object")
    assert json_feed(json_start(), b"{" + b" " * 16) is not None
    assert json_feed(json_start(), b"{" + b" " * 17) is None  # 16 whitespace bytes in a row at most
    assert json_feed(json_start(), b'{"' + b" " * 100) is not None  # inside a string it is text
    state = json_feed(json_start("any"), b"12")
    assert json_complete(state) and not json_complete(json_feed(json_start("any"), b"12."))
    with pytest.raises(InputError, match="root"):
        json_start("array")


DOCS = [json.dumps({"name": "x" * (i % 5), "n": i * 7 % 100, "ok": i % 3 == 0, "tags": ["a", "b"][:i % 3],
                    "note": "naïve € 😀"[:i % 11]}, ensure_ascii=False) for i in range(300)]


ESCAPED = [json.dumps({"path": "C:\\dir\\x", "quote": 'say "hi"\n', "e": "é"})] * 20  # \\ \" \n \u00e9
PATHS = ["C:\\dir\\x\\data"] * 20  # raw: tokens such as \d, which no JSON string may hold


@pytest.fixture(scope="module")
def bpe():
    return Tokenizer.train_bpe(DOCS + ESCAPED + ["the quick brown fox jumps over the lazy dog"], vocab_size=400)


@pytest.fixture(scope="module")
def sentencepiece():
    from tokenizers import SentencePieceBPETokenizer

    sp = SentencePieceBPETokenizer()
    sp.train_from_iterator(DOCS + ESCAPED + PATHS, vocab_size=400, special_tokens=["<unk>", "</s>"])
    return Tokenizer(sp._tokenizer)


@pytest.mark.parametrize("kind", ["bpe", "sentencepiece", "char"])
def test_token_bytes_join_to_the_decoded_text(kind, bpe, sentencepiece):
    """Byte-level pieces of a UTF-8 character, SentencePiece's word-initial spaces, single
    characters: the tokens' bytes join to the decoded text (a SentencePiece text's first space
    aside, which its decoder drops); special tokens have none."""
    tok = {"bpe": bpe, "sentencepiece": sentencepiece, "char": Tokenizer.train_char(DOCS)}[kind]
    data = token_bytes(tok, size=tok.vocab_size + 3)
    assert len(data) == tok.vocab_size + 3 and data[-3:] == [None] * 3  # ids past the tokenizer's
    for text in ['{"name": "xx", "note": "naïve € 😀"}', DOCS[17], ' {"tags": ["a", "b"]}']:
        ids = tok.encode(text, add_special_tokens=False)
        joined = b"".join(data[i] for i in ids).decode()
        assert joined == tok.decode(ids) or (kind == "sentencepiece" and joined.lstrip(" ") == tok.decode(ids))
    if kind == "bpe":
        assert data[tok.eos_token_id] is None
        assert any(d is not None and len(d) == 1 and d[0] >= 0x80 for d in data)  # a lone UTF-8 byte


@pytest.mark.parametrize("kind", ["bpe", "sentencepiece"])
def test_the_cached_masks_equal_checking_every_token(kind, bpe, sentencepiece):
    """Inside strings (plain text at once), after escapes, within numbers, literals and between
    tokens: each state's mask is exactly the tokens whose bytes can follow, plus EOS when whole
    (or when no token can follow: SentencePiece has no token to finish a UTF-8 character that
    only a byte-level vocabulary could have begun)."""
    tok = bpe if kind == "bpe" else sentencepiece
    proc = JSONLogitsProcessor(tok, prompt_length=0)
    data = token_bytes(tok)
    prefixes = ["", "{", ' {"na', '{"name"', '{"name": ', '{"n": 4', '{"n": 4.', '{"n": -0', '{"ok": tr',
                '{"a": "x\\', '{"a": "x\\u0', '{"a": "\xe2', '{"tags": ["a", ', '{"a": {}', '{"a": 1}', '{"a": 1} ']
    for prefix in prefixes:
        state = json_feed(json_start(), prefix.encode("latin-1") if "\xe2" in prefix else prefix.encode())
        assert state is not None, prefix
        expected = torch.tensor([d is not None and json_feed(state, d) is not None for d in data])
        expected[tok.eos_token_id] = json_complete(state) or not expected.any()  # stuck: it may end
        assert torch.equal(proc.allowed(state), expected), prefix
        assert proc.allowed(state) is proc.allowed(state)  # cached


@pytest.fixture(scope="module")
def random_gpt(bpe):
    torch.manual_seed(0)
    return attnkit.GPT(attnkit.GPTConfig.from_preset("gpt-tiny", vocab_size=bpe.vocab_size, n_positions=128)).eval()


def _closing_bias(tok):
    """A processor that makes an untrained model close strings and containers and end more
    often, so that its documents end within a few dozen tokens."""
    data = token_bytes(tok)
    close = [i for i, d in enumerate(data) if d and (b"}" in d or b'"' in d)]

    def bias(ids, scores):
        scores[:, close] += 2.0
        scores[:, tok.eos_token_id] += 4.0
        return scores
    return bias


def _finished_texts(tok, rows):
    """Each row's text up to its EOS, and whether it had one."""
    out = []
    for row in rows.tolist():
        ended = tok.eos_token_id in row
        out.append((tok.decode(row[:row.index(tok.eos_token_id)] if ended else row), ended))
    return out


def test_sampled_rows_are_json_objects_where_unconstrained_ones_are_not(bpe, random_gpt):
    prompt = torch.tensor([bpe.encode("give json:")] * 8)
    outs = {}
    for constrained in (True, False):
        procs = [_closing_bias(bpe)] + ([JSONLogitsProcessor(bpe, prompt.shape[1])] if constrained else [])
        out = random_gpt.generate(prompt, max_new_tokens=80, do_sample=True, top_k=0, eos_token_id=bpe.eos_token_id,
                                  pad_token_id=bpe.pad_token_id, logits_processor=procs,
                                  generator=torch.Generator().manual_seed(1))
        outs[constrained] = _finished_texts(bpe, out[:, prompt.shape[1]:])
    ended = [text for text, done in outs[True] if done]
    assert len(ended) >= 5 and all(isinstance(json.loads(text), dict) for text in ended)
    assert all(json_feed(json_start(), text.encode()) is not None for text, _ in outs[True])  # the rest: on course
    assert not any(_json_loads_accepts(text.encode()) for text, _ in outs[False])


def test_greedy_takes_the_most_likely_token_that_keeps_the_json(bpe, random_gpt):
    """Left-padded rows decoded together: each step's token is the model's best among those whose
    bytes keep the text a JSON prefix (EOS once it is whole), checked by a loop of full forwards."""
    tok, model = bpe, random_gpt
    texts = ["give json:", "{", "the quick brown fox"]
    enc = tok(texts, padding_side="left")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    proc = JSONLogitsProcessor(tok, ids.shape[1])
    out = model.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, logits_processor=[_closing_bias(tok), proc])
    data = token_bytes(tok)
    for r, text in enumerate(texts):
        seq = tok.encode(text)
        state = json_start()
        while len(seq) < len(tok.encode(text)) + 12:
            with torch.no_grad():
                scores = _closing_bias(tok)(None, model(torch.tensor([seq])).logits[:, -1])[0]
            ok = [i for i in scores.argsort(descending=True).tolist()
                  if (i == tok.eos_token_id and json_complete(state))
                  or (data[i] is not None and json_feed(state, data[i]) is not None)]
            seq.append(ok[0])
            if ok[0] == tok.eos_token_id:
                break
            state = json_feed(state, data[ok[0]])
        got = out[r, ids.shape[1]:].tolist()
        assert got[:len(seq) - len(tok.encode(text))] == seq[len(tok.encode(text)):]


def test_beam_search_keeps_every_beam_on_course(bpe, random_gpt):
    prompt = torch.tensor([bpe.encode("give json:")])
    proc = JSONLogitsProcessor(bpe, prompt.shape[1])
    out = random_gpt.generate(prompt, max_new_tokens=30, num_beams=4, num_return_sequences=4,
                              eos_token_id=bpe.eos_token_id, pad_token_id=bpe.pad_token_id,
                              logits_processor=[_closing_bias(bpe), proc])
    for text, ended in _finished_texts(bpe, out[:, prompt.shape[1]:]):
        assert isinstance(json.loads(text), dict) if ended else json_feed(json_start(), text.encode()) is not None


def test_the_server_answers_in_json_mode(bpe, random_gpt):
    """``response_format: {"type": "json_object"}`` on /v1/completions, plain and streamed, and on
    /v1/chat/completions: the text is a JSON object (the request's ``logit_bias`` helps the
    untrained model close it); with a ``json_schema``, one the schema accepts; other formats and
    unsupported schemas are 400s naming the field."""
    from tests.serve.test_server import events, request, start

    data = token_bytes(bpe)
    bias = {str(i): 2.0 for i, d in enumerate(data) if d and (b"}" in d or b'"' in d)}
    bias[str(bpe.eos_token_id)] = 4.0
    chat_tok = copy.copy(bpe)
    chat_tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    server = start(random_gpt, chat_tok, max_new_tokens_limit=100)
    port = server.server_address[1]
    try:
        body = dict(prompt="give json:", max_tokens=100, temperature=1.0, seed=3, logit_bias=bias,
                    response_format={"type": "json_object"})
        status, reply, _ = request(port, "POST", "/v1/completions", body)
        assert status == 200 and reply["choices"][0]["finish_reason"] == "stop", reply
        text = reply["choices"][0]["text"]
        assert isinstance(json.loads(text), dict)
        status, raw, _ = request(port, "POST", "/v1/completions", dict(body, stream=True))
        pieces = [e["choices"][0]["text"] for e in events(raw) if e != "[DONE]"]
        assert status == 200 and "".join(pieces) == text
        chat = dict(messages=[{"role": "user", "content": "give json:"}], **{k: v for k, v in body.items()
                                                                            if k != "prompt"})
        status, reply, _ = request(port, "POST", "/v1/chat/completions", chat)
        assert status == 200 and isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict), reply
        status, reply, _ = request(port, "POST", "/v1/completions", dict(body, response_format={"type": "text"}))
        assert status == 200 and not _json_loads_accepts(reply["choices"][0]["text"].encode())
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
                  "additionalProperties": False}
        status, reply, _ = request(port, "POST", "/v1/completions", dict(body, response_format={
            "type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}))
        assert status == 200 and _valid(schema, json.loads(reply["choices"][0]["text"])), reply
        for fmt, match in [({"type": "json_schema", "json_schema": {}}, "'schema'"),
                           ({"type": "json_schema", "json_schema": {"schema": {"type": "number", "multipleOf": 2}}},
                            "'multipleOf'"), ("json", "an object"), ({"type": "yaml"}, "'json_object'")]:
            status, reply, _ = request(port, "POST", "/v1/completions", dict(body, response_format=fmt))
            assert status == 400 and reply["error"]["param"] == "response_format" and match in reply["error"][
                "message"], reply
    finally:
        server.shutdown()
        server.server_close()


def test_the_server_takes_guided_regex_and_guided_choice(bpe, random_gpt):
    """vLLM's ``guided_regex`` and ``guided_choice``: completions and chat replies, sampled with
    n = 3, are whole matches / one of the choices; a regex it cannot read, two constraints at once
    and an empty choice list are 400s naming the field."""
    import re

    from tests.serve.test_server import request, start

    chat_tok = copy.copy(bpe)
    chat_tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    server = start(random_gpt, chat_tok, max_new_tokens_limit=60)
    port = server.server_address[1]
    pattern, choices = r"(the|a) [a-z]{2,4}( [a-z]{1,3})?\.", ["yes", "no", "maybe so"]
    try:
        for path, base in (("/v1/completions", dict(prompt="say:")),
                           ("/v1/chat/completions", dict(messages=[{"role": "user", "content": "say:"}]))):
            base = dict(base, max_tokens=60, temperature=1.0, seed=2, n=3)
            status, reply, _ = request(port, "POST", path, dict(base, guided_regex=pattern))
            texts = [c.get("text", c.get("message", {}).get("content")) for c in reply["choices"]]
            assert status == 200 and all(re.fullmatch(pattern, t) for t in texts), reply
            assert all(c["finish_reason"] == "stop" for c in reply["choices"])
            status, reply, _ = request(port, "POST", path, dict(base, guided_choice=choices))
            texts = [c.get("text", c.get("message", {}).get("content")) for c in reply["choices"]]
            assert status == 200 and all(t in choices for t in texts), reply
        for extra, param, match in [({"guided_regex": "(?=a)"}, "guided_regex", "lookaround"),
                                    ({"guided_choice": []}, "guided_choice", "1 to 256"),
                                    ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice", "not both"),
                                    ({"guided_regex": "a", "response_format": {"type": "json_object"}}, "guided_regex",
                                     "not both")]:
            status, reply, _ = request(port, "POST", "/v1/completions", dict(prompt="x", **extra))
            assert status == 400 and reply["error"]["param"] == param and match in reply["error"]["message"], reply
    finally:
        server.shutdown()
        server.server_close()


def test_json_mode_needs_an_attnkit_tokenizer():
    with pytest.raises(InputError, match="attnkit Tokenizer"):
        JSONLogitsProcessor(object(), 0)


# -- JSON schemas -------------------------------------------------------------------------------

PERSON = {  # as Pydantic writes them: $defs and $ref, Optional as anyOf with null, an enum
    "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]},
                                                        "age": {"type": "integer"}},
                      "required": ["kind"], "additionalProperties": False}},
    "type": "object",
    "properties": {"name": {"type": "string", "title": "Name"}, "age": {"type": "integer"},
                   "height": {"type": "number"}, "ok": {"type": "boolean"},
                   "nick": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                   "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}},
                   "tags": {"type": "array", "items": {"type": "string"}}, "level": {"const": 3},
                   "extra": {"type": "object", "additionalProperties": {"type": "integer"}}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
NODE = {"type": "array", "items": {"$ref": "#/$defs/Node"}}
TREE = {"$defs": {"Node": {"type": "object", "properties": {"v": {"type": "number"}, "kids": NODE},
                           "required": ["v"]}},
        "$ref": "#/$defs/Node"}  # recursive, and other keys allowed (additionalProperties absent)


def _feed_schema(grammar: JSONSchemaGrammar, data: bytes):
    state = grammar.start
    for b in data:
        state = grammar.step(state, b)
        if state is None:
            return None
    return state


def _accepts_schema(schema: dict, data: bytes) -> bool:
    grammar = JSONSchemaGrammar(schema, max_whitespace=10**9)
    state = _feed_schema(grammar, data)
    return state is not None and grammar.complete(state)


def _valid(schema: dict, doc) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(doc)


def _random_doc(rng: random.Random, schema: dict, root: dict, depth: int = 0):
    """A document shaped like ``schema``, with random slips (a wrong kind of value, a key left out
    or added, a value outside an enum), so that some are valid and some are not."""
    if "$ref" in schema:
        return _random_doc(rng, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, depth)
    scalars = ["x", "é😀", "", 'a,b}"]: {c', 0, -7, 42, 2.5, -0.125, True, False, None, "cat", "dog", "bird", 3]
    if rng.random() < 0.08 or depth > 4:
        return rng.choice(scalars + [[], {}])
    if "anyOf" in schema:
        return _random_doc(rng, rng.choice(schema["anyOf"]), root, depth)
    if "enum" in schema or "const" in schema:
        return rng.choice(schema.get("enum", [schema.get("const")]) + ["bird"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        keys = [k for k in props if k in schema.get("required", []) or rng.random() < 0.6]
        doc = {k: _random_doc(rng, props[k], root, depth + 1) for k in keys}
        extra = schema.get("additionalProperties", True)
        if rng.random() < 0.15 or (isinstance(extra, dict) and rng.random() < 0.5):
            doc["more"] = _random_doc(rng, extra if isinstance(extra, dict) else {}, root, depth + 1)
        if doc and rng.random() < 0.1:
            doc.pop(rng.choice(list(doc)))
        return doc
    if kind == "array":
        return [_random_doc(rng, schema.get("items", {}), root, depth + 1) for _ in range(rng.randrange(3))]
    if kind == "integer":
        return rng.choice([0, -7, 42, 2.5])
    if kind == "number":
        return rng.choice([0, -7, 2.5, -0.125, 1e-7])
    if kind == "string":
        return rng.choice(["x", "é😀", "", 'a,b}"]: [{', 5])
    if kind == "boolean":
        return rng.choice([True, False, None])
    return rng.choice(scalars)


@pytest.mark.parametrize("schema", [PERSON, TREE], ids=["person", "tree"])
def test_the_schema_grammar_accepts_exactly_what_jsonschema_validates(schema):
    """Random documents shaped like the schema, with slips, written by ``json.dumps`` (compact or
    indented): the grammar accepts exactly those the reference validator (``jsonschema``) finds
    valid, and some of each kind are met."""
    rng = random.Random(0)
    verdicts = []
    for _ in range(600):
        doc = _random_doc(rng, schema, schema)
        text = json.dumps(doc, ensure_ascii=False, indent=rng.choice([None, 2])).encode()
        verdicts.append(_valid(schema, doc))
        assert _accepts_schema(schema, text) == verdicts[-1], text
    assert 30 < sum(verdicts) < 570


def test_schema_features_each_constrain():
    """Keys outside the properties, a key twice, a missing required key, an integer with a
    fraction, a value outside the enum, the wrong branch of an anyOf are refused byte by byte."""
    for text in ['{"name": "a", "age": 1, "color": 1}', '{"name": "a", "name": "b", "age": 1}', '{"name": "a"}',
                 '{"name": "a", "age": 1.5}', '{"name": "a", "age": 1, "pets": [{"kind": "bird"}]}',
                 '{"name": "a", "age": 1, "nick": 3}', '{"name": "a", "age": 1, "level": 4}',
                 '{"name": "a", "age": 1, "extra": {"k": "v"}}']:
        assert not _accepts_schema(PERSON, text.encode()), text
    assert _accepts_schema(PERSON, '{"age": -2, "name": "é", "nick": null, "pets": [{"kind": "dog", "age": 3}], '
                                   '"extra": {"k": 1}, "level": 3}'.encode())
    grammar = JSONSchemaGrammar(PERSON)
    state = grammar.start
    for b in b'{"name": "a", "age": 1':
        state = grammar.step(state, b)
    assert grammar.step(state, ord("}")) is not None and not grammar.complete(state)


@pytest.mark.parametrize("schema,match", [
    ({"type": "integer", "multipleOf": 2}, "'multipleOf'"), ({"type": "integer", "minimum": True}, "a number"),
    ({"type": "integer", "minimum": 2.2, "exclusiveMaximum": 3}, "no integer"),
    ({"enum": [1, 5], "maximum": 0}, "no value of its enum"), ({"type": "string", "minLength": -1}, "whole number"),
    ({"type": "array", "minItems": 3, "maxItems": 2}, "over maxItems"),
    ({"type": "string", "pattern": "(?=a)"}, "lookaround"),
    ({"enum": ["a", "b"], "pattern": "c"}, "no value of its enum"),
    ({"anyOf": [{"type": "integer"}, {"type": "number"}]}, "anyOf"),
    ({"$ref": "#/$defs/Missing"}, "points at nothing"), ({"type": "object", "required": ["x"]}, "required"),
    ({"enum": [{"a": 1}]}, "scalars"), ({"type": "text"}, "type"),
    ({"type": "object", "anyOf": [{"type": "string"}, {"type": "null"}]}, "no other keyword beside it"),
    ({"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}, "$ref": "#/$defs/A"}, "refers back"),
])
def test_unsupported_schemas_are_refused_by_name(schema, match):
    with pytest.raises(InputError, match=match):
        JSONSchemaGrammar(schema)


CODES = {"type": "object", "properties": {
    "code": {"type": "string", "pattern": r"^[A-Z]{2}-\d{2,3}$"}, "word": {"type": "string", "pattern": r"é|x\n"},
    "pick": {"enum": ["ab", "cd", 3], "pattern": "^a"}, "any": {"type": "string"},
    "many": {"type": "array", "items": {"type": "string", "pattern": r"^\w*$"}},
    "name": {"type": "string", "minLength": 2, "maxLength": 4},
    "tags": {"type": "array", "minItems": 1, "maxItems": 2,
             "items": {"type": "string", "maxLength": 3, "pattern": "a"}},
    "short": {"enum": ["a", "abc", "ab"], "maxLength": 2}}}


def _random_string(rng: random.Random) -> str:
    return "".join(rng.choice('AZ-0159 éx\n"\\\t😀ab') for _ in range(rng.randrange(8)))


def test_schema_patterns_accept_exactly_what_jsonschema_validates():
    """Strings under ``pattern`` (``re.search``, anchored or not) and lengths, written with and
    without ``\\uXXXX`` escapes (surrogate pairs counted as one character); arrays with item
    counts; an enum whose strings must match the pattern and lengths too."""
    rng = random.Random(0)
    verdicts = []
    for _ in range(2000):
        key = rng.choice(["code", "word", "pick", "any", "many", "name", "tags", "short"])
        if key in ("many", "tags"):
            value = [rng.choice([_random_string(rng), "a", "ab"]) for _ in range(rng.randrange(4))]
        elif key == "short":
            value = rng.choice(["a", "abc", "ab", "b"])
        elif key == "pick":
            value = rng.choice(["ab", "cd", 3, "a"])
        else:
            matches = ["AB-12", "XY-123", "é", "x\n", "AB-1234"]
            value = _random_string(rng) if rng.random() < 0.7 else rng.choice(matches)
        doc = {key: value}
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
        verdicts.append(_valid(CODES, doc))
        assert _accepts_schema(CODES, text) == verdicts[-1], text
    assert 400 < sum(verdicts) < 1600
    grammar = JSONSchemaGrammar(CODES)  # refused at the byte that oversteps, not at the close
    full, long = _feed_schema(grammar, b'{"tags": ["a", "ba"'), _feed_schema(grammar, b'{"name": "abcd')
    assert grammar.step(full, ord(",")) is None and grammar.step(full, ord("]")) is not None
    assert grammar.step(long, ord("x")) is None and grammar.step(long, ord('"')) is not None
    assert _feed_schema(grammar, b'{"code": "AB-1') is not None and _feed_schema(grammar, b'{"code": "ABC') is None


BOUNDED = [{"type": "integer", "minimum": 0, "maximum": 120},
           {"type": "number", "exclusiveMinimum": -1.5, "maximum": 2.25},
           {"type": "integer", "exclusiveMinimum": 5}, {"type": "number", "maximum": -3, "exclusiveMaximum": -3},
           {"type": "number", "minimum": 0.001, "exclusiveMaximum": 0.0125},
           {"type": "integer", "minimum": -20, "exclusiveMaximum": 999, "maximum": 1000}]


@pytest.mark.parametrize("schema", BOUNDED, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items() if k != "type"))
def test_bounded_numbers_accept_what_jsonschema_validates_and_never_stall(schema):
    """Numbers without an exponent, as values and inside an array: the grammar accepts exactly the
    valid ones; and a random walk over the bytes it allows never reaches a number it cannot end
    (each one it ends is valid)."""
    rng = random.Random(str(schema))
    numbers = [rng.choice([0, -0.0, 1, 5, 6, 7, 119, 120, 121, 999, 1000, -3, -3.5, -20, -21, 2.25, 2.26, -1.5, -1.49,
                           0.001, 0.0125, 0.0124, 0.01, 130, 12, 1.5, -7])
               for _ in range(200)] + [round(rng.uniform(-50, 1500), rng.choice([0, 1, 3])) for _ in range(300)]
    if schema["type"] == "integer":  # 2.0 is an integer to jsonschema, and a fraction the grammar refuses (its doc)
        numbers = [x for x in numbers if not (isinstance(x, float) and x.is_integer())]
    verdicts = []
    for x in numbers:
        for doc in (x, [x, x]):
            text = json.dumps(doc).encode()
            verdicts.append(_valid(schema, doc) if isinstance(doc, (int, float)) else _valid({"items": schema}, doc))
            grammar_schema = schema if isinstance(doc, (int, float)) else {"type": "array", "items": schema}
            assert _accepts_schema(grammar_schema, text) == verdicts[-1], text
    assert any(verdicts) and not all(verdicts)
    grammar = JSONSchemaGrammar(schema)
    for _ in range(300):
        state, text = grammar.start, b""
        while True:
            allowed = [c for c in b"0123456789-.e" if grammar.step(state, c) is not None]
            if grammar.complete(state) and (not allowed or rng.random() < 0.3):
                break
            assert allowed, text  # stuck inside a number that cannot end
            c = rng.choice(allowed)
            state, text = grammar.step(state, c), text + bytes([c])
        assert _valid(schema, json.loads(text)), text


# What Pydantic 2 writes for a model with a pattern, lengths, a tuple, a list with item counts, an
# enum behind a $ref with a description, an optional nested model with bounds, a Literal; plus
# an enum behind allOf (older Pydantic's wrapper) and a tuple with nothing after it.
ORDER = json.loads(r"""{"$defs": {"Color": {"enum": ["red", "green"], "title": "Color", "type": "string"},
 "Point": {"properties": {"x": {"maximum": 100, "minimum": 0, "title": "X", "type": "integer"},
 "y": {"exclusiveMaximum": 2.5, "exclusiveMinimum": -1.5, "title": "Y", "type": "number"}}, "required": ["x", "y"],
 "title": "Point", "type": "object"}}, "properties": {"id": {"pattern": "^[A-Z]{3}-\\d{4}$", "title": "Id",
 "type": "string"}, "name": {"maxLength": 5, "minLength": 2, "title": "Name", "type": "string"}, "pair": {"maxItems": 2,
 "minItems": 2, "prefixItems": [{"type": "integer"}, {"type": "string"}], "title": "Pair", "type": "array"}, "tags":
 {"items": {"type": "string"}, "maxItems": 3, "minItems": 1, "title": "Tags", "type": "array"}, "color": {"$ref":
 "#/$defs/Color", "description": "the color"}, "where": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}],
 "default": null}, "kind": {"default": "a", "enum": ["a", "b"], "title": "Kind", "type": "string"},
 "shade": {"allOf": [{"$ref": "#/$defs/Color"}], "description": "older Pydantic"},
 "flag": {"type": "array", "prefixItems": [{"type": "boolean"}], "items": false}},
 "required": ["id", "name", "pair", "tags", "color"], "title": "Order", "type": "object"}""")


def _random_order(rng: random.Random) -> dict:
    """A document shaped like ORDER: each field's first option is valid, the others are slips."""
    def pick(options):
        return options[0] if rng.random() < 0.75 else rng.choice(options)

    doc = {"id": pick(["ABC-1234", "AB-1234", "ABC-12345", "xABC-1234"]), "name": pick(["ab", "abcde", "a", "abcdef"]),
           "pair": pick([[1, "x"], [1], [1, "x", 2], ["x", 1], [-3, ""]]), "tags": pick([["a"], [], ["a", "b", "c"],
                                                                                       ["a"] * 4, [1]]),
           "color": pick(["red", "green", "blue"])}
    if rng.random() < 0.5:
        doc["where"] = pick([None, {"x": 0, "y": -1.4}, {"x": 101, "y": 0}, {"x": 5, "y": 2.5}, {"x": 100, "y": 2.49},
                             {"x": -1, "y": 0}, {"x": 3}])
    if rng.random() < 0.3:
        doc["kind"] = pick(["a", "b", "c"])
    if rng.random() < 0.3:
        doc["shade"] = pick(["red", "blue"])
    if rng.random() < 0.3:
        doc["flag"] = pick([[], [True], [True, False], [1]])
    if rng.random() < 0.1:
        doc.pop(rng.choice(list(doc)))
    return doc


def test_a_pydantic_schema_accepts_exactly_what_jsonschema_validates():
    rng = random.Random(0)
    verdicts = []
    for _ in range(800):
        doc = _random_order(rng)
        text = json.dumps(doc, indent=rng.choice([None, 1])).encode()
        verdicts.append(_valid(ORDER, doc))
        assert _accepts_schema(ORDER, text) == verdicts[-1], text
    assert 40 < sum(verdicts) < 760
    for schema, match in [({"$ref": "#/$defs/A", "maxLength": 3, "$defs": {"A": {"type": "string"}}}, "beside \\$ref"),
                          ({"allOf": [{"type": "string"}, {"maxLength": 2}]}, "one schema")]:
        with pytest.raises(InputError, match=match):
            JSONSchemaGrammar(schema)


def test_regex_masks_and_sampled_rows(bpe, random_gpt):
    """``regex=``: each state's mask is exactly the tokens whose bytes can go on (plus EOS once
    the text matches), and sampled rows that end match the pattern whole."""
    import re

    pattern = r"(the|a) (quick|lazy) [a-z]{2,5}( [a-z]{1,4})?\."  # bounded: every row ends within 40 tokens
    proc = GrammarLogitsProcessor(bpe, prompt_length=0, regex=pattern)
    data = token_bytes(bpe)
    grammar = proc.grammar
    for prefix in [b"", b"th", b"the ", b"a lazy do", b"a lazy dog", b"a lazy dog."]:
        state = grammar.start
        for b in prefix:
            state = grammar.step(state, b)
        expected = torch.tensor([d is not None and proc._feed(state, d) is not None for d in data])
        expected[bpe.eos_token_id] = grammar.complete(state) or not expected.any()
        assert torch.equal(proc.allowed(state), expected), prefix
    prompt = torch.tensor([bpe.encode("say:")] * 8)
    out = random_gpt.generate(prompt, max_new_tokens=40, do_sample=True, top_k=0, eos_token_id=bpe.eos_token_id,
                              pad_token_id=bpe.pad_token_id, logits_processor=[proc.for_prompt(prompt.shape[1])],
                              generator=torch.Generator().manual_seed(3))
    ended = [text for text, done in _finished_texts(bpe, out[:, prompt.shape[1]:]) if done]
    assert len(ended) == 8 and all(re.fullmatch(pattern, text) for text in ended), ended
    assert len(set(ended)) > 4


def test_schema_masks_equal_checking_every_token(bpe):
    proc = JSONLogitsProcessor(bpe, prompt_length=0, schema=PERSON)
    data = token_bytes(bpe)
    grammar = proc.grammar
    for prefix in [b"", b"{", b'{"na', b'{"name": "x', b'{"name": "x", "age": 4', b'{"name": "x", "pets": [{"kind": "c',
                   b'{"name": "x", "age": 1, "ok": ', b'{"name": "x", "age": 1}']:
        state = grammar.start
        for b in prefix:
            state = grammar.step(state, b)
        assert state is not None, prefix
        expected = torch.tensor([d is not None and proc._feed(state, d) is not None for d in data])
        expected[bpe.eos_token_id] = grammar.complete(state) or not expected.any()
        assert torch.equal(proc.allowed(state), expected), prefix


def test_sampled_rows_follow_the_schema(bpe, random_gpt):
    """An untrained model, sampled under a schema: every row that ends is valid under it."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"},
                                               "ok": {"type": "boolean"}},
              "required": ["name", "n"], "additionalProperties": False}
    prompt = torch.tensor([bpe.encode("give json:")] * 8)
    proc = JSONLogitsProcessor(bpe, prompt.shape[1], schema=schema)
    out = random_gpt.generate(prompt, max_new_tokens=80, do_sample=True, top_k=0, eos_token_id=bpe.eos_token_id,
                              pad_token_id=bpe.pad_token_id, logits_processor=[_closing_bias(bpe), proc],
                              generator=torch.Generator().manual_seed(1))
    ended = [text for text, done in _finished_texts(bpe, out[:, prompt.shape[1]:]) if done]
    assert len(ended) >= 4 and all(_valid(schema, json.loads(text)) for text in ended)


def test_tool_choice_forces_a_call_in_the_models_format(bpe, random_gpt):
    """``tool_choice: "required"`` or a named function on a Hermes-format model: the reply is
    constrained to one ``<tool_call>`` block, so even an untrained model answers with a call of
    one of the tools (the named one), its arguments valid under the function's parameters when it
    is the only one callable."""
    from tests.serve.test_server import request, start

    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "integer", "multipleOf": 2}}}}}  # multipleOf: unread
    chat_tok = copy.copy(bpe)
    chat_tok.chat_template = ("{# <tool_call> #}{% for t in tools %}{{ t.function.name }} {% endfor %}"
                              "{% for m in messages %}{{ m.content }}\n{% endfor %}")
    bias = {str(i): 2.0 for i, d in enumerate(token_bytes(bpe)) if d and (b"}" in d or b'"' in d)}
    server = start(random_gpt, chat_tok, max_new_tokens_limit=100)
    port = server.server_address[1]
    try:
        for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            body = dict(messages=[{"role": "user", "content": "weather?"}], tools=[weather, clock], tool_choice=choice,
                        temperature=1.0, seed=5, logit_bias=bias, max_tokens=100)
            status, reply, _ = request(port, "POST", "/v1/chat/completions", body)
            assert status == 200 and reply["choices"][0]["finish_reason"] == "tool_calls", reply
            (call,) = reply["choices"][0]["message"]["tool_calls"]
            arguments = json.loads(call["function"]["arguments"])
            assert call["function"]["name"] in ("get_weather", "get_time") and isinstance(arguments, dict)
            if choice != "required":
                assert call["function"]["name"] == "get_weather"
                assert _valid(weather["function"]["parameters"], arguments)
    finally:
        server.shutdown()
        server.server_close()
