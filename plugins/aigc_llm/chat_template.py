"""Chat templates: a conversation rendered into the prompt text a chat model was trained on.

A model's chat template is a Jinja program that ships in its file, so it runs in jinja2's
immutable sandbox with the environment transformers gives it (the same options, globals and
``tojson`` filter): the same template and messages render to the same text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aigc_sdk import CheckpointError, RequestError

ROLES = ("system", "user", "assistant", "tool")


def check_messages(messages: Any) -> list[dict]:
    """``messages`` as fresh plain dicts, or a RequestError naming the first bad entry.

    Each message has a ``role`` (one of ROLES) and a string ``content``; other keys (``name``,
    ``tool_calls``, ...) pass through to the template if they hold JSON data.
    """
    if not isinstance(messages, (list, tuple)):
        raise RequestError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
            f"got {type(messages).__name__}"
        )
    if not messages:
        raise RequestError("messages must hold at least one message, got an empty list")
    checked = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise RequestError(
                f"{where} must be a dict with 'role' and 'content', got {type(message).__name__}"
            )
        for key in ("role", "content"):
            if key not in message:
                raise RequestError(f"{where} has no {key!r}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise RequestError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RequestError(f"{where}.content must be a string, got {type(content).__name__}")
        plain = {}
        for key, value in message.items():
            if not isinstance(key, str):
                raise RequestError(f"{where} has a key that is not a string: {key!r}")
            plain[key] = _json_data(value, f"{where}.{key}")
        checked.append(plain)
    return checked


def render_chat(
    template: str,
    messages: list[dict],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """The prompt text for ``messages`` (checked with check_messages) under ``template``.

    ``add_generation_prompt`` ends the text with the opening of the assistant's turn; ``extra``
    reaches the template as variables (``tools``, ``documents``, ``enable_thinking``, ...).
    A template with a syntax error raises CheckpointError (the fault is in the model's files);
    one that rejects the conversation (``raise_exception``) raises RequestError.
    """
    if not isinstance(template, str):
        raise CheckpointError(f"a chat template must be a string, got {type(template).__name__}")
    compiled = _compile(template)
    variables = {"tools": None, "documents": None, **extra}
    variables = {key: _json_data(value, key) for key, value in variables.items()}
    try:
        return compiled.render(
            messages=check_messages(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **variables,
        )
    except RequestError:
        raise
    except _Rejected as error:
        raise RequestError(f"the chat template rejected the messages: {error}") from None
    except Exception as error:  # the template is a program from the model file: any failure
        raise RequestError(
            f"the chat template failed on these messages: {type(error).__name__}: "
            f"{_one_line(error)}"
        ) from None


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise CheckpointError(
            f"the chat template has a syntax error on line {error.lineno}: {_one_line(error)}"
        ) from None


class _Rejected(jinja2.TemplateError):
    """What a template's ``raise_exception(message)`` raises."""

    def __str__(self) -> str:
        return _one_line(self.message or "")


def _raise_exception(message: str):
    raise _Rejected(str(message))


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # Jinja's own tojson escapes <, >, & and ' for HTML; prompts need the characters as they are.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _Dict:
    """``dict(...)`` in templates: builds dicts, but is not the ``dict`` type itself, whose
    attributes would be a way out of the sandbox."""

    def __call__(self, *args, **kwargs) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """``namespace(...)`` that refuses underscore names, which reach Python internals."""

    def __init__(*args, **kwargs):  # Jinja's signature, so namespace(self=...) still works
        self, args = args[0], args[1:]
        attributes = dict(*args, **kwargs)
        for name in attributes:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attributes)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a chat template may not set underscore attributes on a namespace: {name!r}"
            )


class _Generation(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: transformers' marker of the assistant's
    tokens for training masks. Templates that use it must compile; here it renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller) -> str:
        return caller()


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    environment.globals["dict"] = _Dict()
    environment.globals["namespace"] = _Namespace
    return environment


def _json_data(value: Any, where: str) -> Any:
    """``value`` rebuilt from plain JSON types: objects with methods must not reach a sandboxed
    template, and ``str`` subclasses (enums...) carry methods of their own."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {
            _json_data(key, where): _json_data(item, f"{where}.{key}")
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_json_data(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise RequestError(
        f"{where} must hold JSON data (str, number, bool, None, list, dict), "
        f"got {type(value).__name__}"
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
