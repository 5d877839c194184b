"""Tool-call parsing for the server's chat completions: the formats models write (Hermes'
``<tool_call>`` blocks, Llama 3.1's JSON), replies that are not calls, the streaming filter that
holds back what may be a call, and the history a template reads."""

import json

import pytest

from attnkit.serve.tools import ToolCallDeltas, ToolCallFilter, detect_tool_format, parse_tool_calls, template_messages

NAMES = {"get_weather", "get_time"}


def test_hermes_calls_with_content_before_them():
    text = ('Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": "{\\"zone\\": \\"CET\\"}"}</tool_call>')
    content, calls = parse_tool_calls(text, "hermes", NAMES)
    assert content == "Let me look. "
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Zürich"}, {"zone": "CET"}]
    assert "Zürich" in calls[0]["arguments"]  # non-ASCII kept as written


@pytest.mark.parametrize("text", [
    "no call here",
    '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',  # invalid JSON
    '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>',  # not one of the request's tools
    '<tool_call>{"name": "get_weather", "arguments": [1]}</tool_call>',  # arguments not an object
])
def test_replies_that_are_not_calls_stay_content(text):
    assert parse_tool_calls(text, "hermes", NAMES) == (text, [])


def test_llama3_json_calls():
    text = ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo"}}; '
            '{"name": "get_time", "parameters": {}}')
    content, calls = parse_tool_calls(text, "llama3_json", NAMES)
    assert content is None and [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {})]
    assert parse_tool_calls("It is sunny {today}.", "llama3_json", NAMES) == ("It is sunny {today}.", [])


def test_the_filter_holds_back_what_may_be_a_call():
    f = ToolCallFilter("hermes")
    sent = [f.feed(p) for p in ["Sure", ", <to", "ol_c", "all>{\"name\"", ": 1}"]]
    assert sent == ["Sure", ", ", "", "", ""] and f.held == '<tool_call>{"name": 1}'
    f = ToolCallFilter("hermes")
    assert [f.feed(p) for p in ["a <", "b"]] == ["a ", "<b"] and f.held == ""  # "<b" cannot begin a call
    f = ToolCallFilter("llama3_json")
    assert [f.feed(p) for p in ["  ", '{"na', 'me"']] == ["", "", ""] and f.held == '  {"name"'
    f = ToolCallFilter("llama3_json")
    assert [f.feed(p) for p in [" It", " is {x}"]] == [" It", " is {x}"] and f.held == ""


def streamed_calls(text: str, fmt: str, step: int, limit=None) -> tuple[list, int]:
    """The calls a client assembles from :class:`ToolCallDeltas` fed ``text`` ``step`` characters
    at a time: ``[(name, arguments text)]``, and how many streamed."""
    deltas, out = ToolCallDeltas(fmt, NAMES, limit), []
    for end in range(0, len(text) + step, step):
        out += deltas.feed(text[:end])
    calls = {}
    for d in out:
        if "id" in d:  # a call's first delta: id, type and name, no arguments yet
            assert d["type"] == "function" and d["function"]["arguments"] == "" and d["index"] == len(calls)
            calls[d["index"]] = [d["function"]["name"], ""]
        else:
            calls[d["index"]][1] += d["function"]["arguments"]
    return [tuple(c) for c in calls.values()], deltas.sent


HERMES_CALLS = ('Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Z\\"ü}rich", '
                '"days": [1, {"a": "]"}]}}\n</tool_call>\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')


@pytest.mark.parametrize("step", [1, 3, 11, 1000])
def test_streamed_calls_are_the_parsed_calls_piece_by_piece(step):
    """Names as soon as they are written, then the arguments object as the model wrote it (braces
    and quotes inside strings followed): joined, what parse_tool_calls reads."""
    _, parsed = parse_tool_calls(HERMES_CALLS, "hermes", NAMES)
    calls, sent = streamed_calls(HERMES_CALLS, "hermes", step)
    assert sent == 2 and [(n, json.loads(a)) for n, a in calls] == [(c["name"], json.loads(c["arguments"]))
                                                                    for c in parsed]
    assert calls[0][1] == '{"city": "Z\\"ü}rich", "days": [1, {"a": "]"}]}'  # the model's own text
    assert streamed_calls(HERMES_CALLS, "hermes", step, limit=1)[1] == 1  # parallel_tool_calls false
    llama = ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "a;b"}}; '
             '{"name": "get_time", "parameters": {}}')
    assert streamed_calls(llama, "llama3_json", step) == ([("get_weather", '{"city": "a;b"}'), ("get_time", "{}")], 2)


@pytest.mark.parametrize("text", [
    '<tool_call>{"arguments": {"city": "Rome"}, "name": "get_weather"}</tool_call>',  # the name after the arguments
    '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": 1}"}</tool_call>',  # arguments as a string
    '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>',  # not one of the request's tools
])
def test_calls_written_otherwise_are_left_for_the_end(text):
    assert streamed_calls(text, "hermes", 1) == ([], 0)


def test_templates_read_arguments_as_objects_and_formats_are_detected():
    history = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}]
    assert template_messages(history)[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Rome"}
    assert history[0]["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome"}'  # the request is not changed
    assert detect_tool_format("{% for t in tools %}<tool_call>{% endfor %}") == "hermes"
    assert detect_tool_format("{% if tools %}<|python_tag|>{% endif %}") == "llama3_json"
    assert detect_tool_format("{{ messages[0].content }}") is None
