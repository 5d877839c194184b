"""Chat templates against `transformers`' apply_chat_template on the same tokenizer files: the
rendered text and ids, reading the template from tokenizer_config.json (string or named list)
or chat_template.jinja, templates that refuse a conversation, and the sandbox."""

import json

import pytest

from attnkit import InputError
from attnkit.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")

SPECIALS = ("<|endoftext|>", "<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<s>", "</s>")
CORPUS = ["hello world, how are you? I am fine. héllo! system user assistant [INST] [/INST] You are helpful.\n"]

# Qwen2.5's shape: a default system turn, ChatML turns, the assistant's turn opened on request.
CHATML = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.role != 'system' %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
# Llama 2's shape: the BOS token, roles that must alternate (raise_exception), trim, the EOS
# token, a namespace counter, tojson of non-ASCII text, and block tags on their own lines
# (trim_blocks / lstrip_blocks decide the whitespace).
LLAMA2 = (
    "{{ bos_token }}{% set ns = namespace(turns=0) %}\n"
    "{% for message in messages %}\n"
    "    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {% endif %}\n"
    "    {% set ns.turns = ns.turns + 1 %}\n"
    "    {% if message['role'] == 'user' %}\n"
    "{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}\n"
    "    {% else %}\n"
    "{{ ' ' + message['content'] | trim + ' ' + eos_token }}\n"
    "    {% endif %}\n"
    "{% endfor %}\n"
    "{{ ns.turns }}{{ messages[-1]['content'] | tojson }}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "hello world"}],
    [{"role": "system", "content": "I am fine."}, {"role": "user", "content": "how are you?"},
     {"role": "assistant", "content": "héllo! I am fine."}, {"role": "user", "content": "héllo"}],
    [{"role": "user", "content": " how are you? "}, {"role": "assistant", "content": "I am fine. "},
     {"role": "user", "content": "héllo"}],
]


def saved(tmp_path, template, where="config"):
    """A character tokenizer with ChatML's and Llama's special tokens, saved with ``template``
    in tokenizer_config.json (``where="config"``), as a named list, or in chat_template.jinja."""
    tok = Tokenizer.train_char(CORPUS, special_tokens=SPECIALS)
    tok.special_tokens_map.update(bos="<s>", eos="</s>")
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    if where == "config":
        config["chat_template"] = template
    elif where == "list":
        config["chat_template"] = [{"name": "tool_use", "template": "unused"}, {"name": "default", "template": template}]
    else:
        (tmp_path / "chat_template.jinja").write_text(template)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("template,where,conversations", [
    (CHATML, "config", CONVERSATIONS), (CHATML, "jinja", CONVERSATIONS),
    (LLAMA2, "list", [CONVERSATIONS[0], CONVERSATIONS[2]]),  # user first, roles alternating
])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_rendering_equals_transformers(tmp_path, template, where, conversations, generation_prompt):
    directory = saved(tmp_path, template, where)
    ours = Tokenizer.from_pretrained(directory)
    theirs = transformers.AutoTokenizer.from_pretrained(directory)
    for messages in conversations:
        text = ours.apply_chat_template(messages, add_generation_prompt=generation_prompt)
        assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        ids = ours.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
        assert ids == theirs.encode(text, add_special_tokens=False)
    assert "héllo" in text  # tojson / plain text keep non-ASCII characters


def test_the_template_survives_save_and_load(tmp_path):
    tok = Tokenizer.from_pretrained(saved(tmp_path / "a", CHATML))
    tok.save_pretrained(tmp_path / "b")
    again = Tokenizer.from_pretrained(tmp_path / "b")
    assert again.chat_template == CHATML
    messages = CONVERSATIONS[1]
    assert again.apply_chat_template(messages) == tok.apply_chat_template(messages)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "b").chat_template == CHATML


def test_refusals_are_input_errors_naming_the_problem(tmp_path):
    tok = Tokenizer.from_pretrained(saved(tmp_path, LLAMA2))
    with pytest.raises(InputError, match="roles must alternate"):
        tok.apply_chat_template([{"role": "assistant", "content": "hello"}])
    with pytest.raises(InputError, match=r"messages\[0\] must be a dict with a string 'role'"):
        tok.apply_chat_template([{"content": "hello"}])
    with pytest.raises(InputError, match="non-empty list"):
        tok.apply_chat_template([])
    tok.chat_template = None
    with pytest.raises(InputError, match="no chat template"):
        tok.apply_chat_template(CONVERSATIONS[0])


def test_templates_run_sandboxed(tmp_path):
    """A template from the Hub is untrusted code: no way to Python's internals."""
    tok = Tokenizer.from_pretrained(saved(tmp_path, CHATML))
    tok.chat_template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InputError, match="refused the conversation"):
        tok.apply_chat_template(CONVERSATIONS[0])
