"""Chat templates: a conversation (``[{"role": ..., "content": ...}, ...]``) rendered into the
prompt text an instruction-tuned model was trained on, with the Jinja template its tokenizer
ships (``tokenizer_config.json``'s ``chat_template``, or ``chat_template.jinja``).

Rendering follows ``transformers``' ``apply_chat_template``: a sandboxed Jinja environment
(templates from the Hub are untrusted code) with ``trim_blocks``/``lstrip_blocks``, the loop
controls extension, ``raise_exception``, ``strftime_now``, a ``tojson`` that keeps non-ASCII
text, and the variables ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the
special tokens (``bos_token``, ``eos_token``, ...) and any extra keyword (Qwen3's
``enable_thinking``). Needs ``jinja2`` (a dependency of attnkit).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from attnkit.errors import ConfigError, InputError

TEMPLATE_FILE = "chat_template.jinja"  # transformers >= 4.43 saves the template beside tokenizer_config.json


def read_chat_template(directory: Path, config: dict) -> str | None:
    """The chat template of a tokenizer directory: ``chat_template.jinja``, else the
    ``chat_template`` field of ``tokenizer_config.json`` (a string, or a list of named templates:
    the one named ``default``), else None."""
    path = Path(directory) / TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise ConfigError(f"{directory}/tokenizer_config.json: chat_template must be a string or a list of "
                          f"{{name, template}} entries with a 'default' one, got {type(template).__name__}")
    return template


@lru_cache(maxsize=8)
def _compile(template: str):
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("chat templates need jinja2: pip install jinja2") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ConfigError(f"the tokenizer's chat template is not valid Jinja: {e}") from None


def check_messages(messages) -> list[dict]:
    """``messages`` as a list of dicts, each with a string ``role`` and a ``content`` (a string,
    a list of content parts, or None for tool-calling turns); else :class:`InputError`."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InputError(f"messages[{i}] must be a dict with a string 'role', got {m!r}")
        if not isinstance(m.get("content"), (str, list, type(None))):
            raise InputError(f"messages[{i}].content must be a string or a list of parts, got "
                             f"{type(m.get('content')).__name__}")
    return [dict(m) for m in messages]


def render_chat(template: str, messages, add_generation_prompt: bool = False, special_tokens: dict | None = None,
                tools: list | None = None, documents: list | None = None, **kwargs) -> str:
    """``template`` rendered for ``messages`` (see the module doc). A template that refuses the
    conversation (``raise_exception``: roles out of order, an unknown role) is an
    :class:`InputError` carrying its message."""
    import jinja2

    compiled = _compile(template)
    try:
        return compiled.render(messages=check_messages(messages), tools=tools, documents=documents,
                               add_generation_prompt=add_generation_prompt, **(special_tokens or {}), **kwargs)
    except jinja2.exceptions.TemplateError as e:
        raise InputError(f"the chat template refused the conversation: {e}") from None
