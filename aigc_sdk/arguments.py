"""Command-line parsing with one-line errors, shared by ``aigc`` and ``aigc train``."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import NoReturn

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
