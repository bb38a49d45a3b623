"""Command-line parsing shared by the commands: one-line errors, option types,
and request fields as options (``aigc generate`` and ``aigc chat``)."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import Any, NoReturn

from ..errors import AigcError
from ..generation import json_types, request_schema

EXIT_USAGE = 2  # argparse's code for a command line it cannot parse


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean --seed?)' for a mistyped long option, or ''."""
    # Compared without the dashes, which every long option shares: with them,
    # --prompt looked enough like --out to be offered it.
    flag = word.partition("=")[0].lstrip("-")
    names = {o.lstrip("-"): o for o in options if o.startswith("--")}
    close = difflib.get_close_matches(flag, list(names), n=1)
    return f" (did you mean {names[close[0]]}?)" if close else ""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one-line errors of every other user error.

    Used by ``aigc`` and ``aigc train``: a bad command line prints
    ``aigc: error: ...`` (an unknown option with the closest known one)
    instead of the whole usage block, and exits 2 as argparse does.
    """

    def error(self, message: str) -> NoReturn:
        unknown = message.partition("unrecognized arguments: ")[2].split()
        flags = [word for word in unknown if word.startswith("-")]
        if flags:
            message += did_you_mean(flags[0], self.option_names())
        self.exit(EXIT_USAGE, f"aigc: error: {message}\n")

    def option_names(self) -> list[str]:
        return [name for action in self._actions for name in action.option_strings]

    def subcommand(self, name: str) -> ArgumentParser:
        """The parser of subcommand ``name`` (it reports errors about its own options)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices[name]
        raise KeyError(name)


# -- request fields as options -------------------------------------------------


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


# What a field's command-line text becomes, by the JSON type its schema gives it
# (the first that applies: a prompt is a string or a batch, a label a name or an index).
_PARSERS = [("string", str), ("array", _split), ("integer", int), ("number", float)]
_PARSERS += [("boolean", _parse_bool)]
METAVARS = {"string": "TEXT", "array": "'A|B'", "integer": "INT", "number": "NUMBER"}
METAVARS["boolean"] = "true|false"


def field_kind(prop: dict[str, Any]) -> str:
    """The JSON type a field's command-line text is parsed as (a key of ``METAVARS``)."""
    kinds = json_types(prop)
    return next((kind for kind, _ in _PARSERS if kind in kinds), "string")


def _field_parser(request_type: type) -> dict[str, Any]:
    """Maps each request field to a function parsing its command-line text."""
    parsers = dict(_PARSERS)
    properties = request_schema(request_type)["properties"]
    return {name: parsers[field_kind(prop)] for name, prop in properties.items()}


def field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def request_kwargs(
    request_type: type,
    pairs: list[str],
    cli_options: Iterable[str] = (),
    generator: str | None = None,
) -> dict[str, Any]:
    """The request fields given as ``--field value`` options, parsed by their types."""
    parsers = _field_parser(request_type)
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        flag = pairs[i]
        if not flag.startswith("--"):
            raise AigcError(f"unexpected argument {flag!r}")
        key, _, value = flag[2:].partition("=")
        key = key.replace("-", "_")
        if key not in parsers:
            accepted = [field_flag(k) for k in sorted(parsers)]
            # The generator's own fields first: a command option only for a typo of one.
            hint = did_you_mean(flag, accepted) or did_you_mean(flag, cli_options)
            what = f"generator {generator}" if generator else request_type.__name__
            raise AigcError(
                f"unknown option {field_flag(key)} for {what}{hint}; accepted: "
                f"{', '.join(accepted)}"
                + (f" (aigc generate {generator} --help)" if generator else "")
            )
        if not value:
            i += 1
            if i >= len(pairs):
                raise AigcError(f"option --{key.replace('_', '-')} needs a value")
            value = pairs[i]
        try:
            parsed = parsers[key](value)
        except ValueError:
            raise AigcError(f"option --{key.replace('_', '-')}: invalid value {value!r}") from None
        if key == "prompt" and "prompt" in kwargs:  # --prompt twice makes a batch
            previous = kwargs["prompt"]
            parsed = (*((previous,) if isinstance(previous, str) else previous), parsed)
        kwargs[key] = parsed
        i += 1
    return kwargs
