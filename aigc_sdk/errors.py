"""Errors aigc-sdk raises on purpose. The CLI prints each as one line.

    AigcError                  every error below: catch it to catch them all
    ├── UserError              the caller can fix it by asking differently
    │   ├── RequestError       a request field is unknown, invalid or over a limit
    │   ├── UnknownNameError   no loaded plugin provides that generator or trainer
    │   └── CheckpointError    weights that are missing, damaged or another model's
    └── PluginError            a plugin is broken, or two plugins clash

A host serving requests maps ``UserError`` to "bad request" (HTTP 400) and
any other ``AigcError`` to a server-side problem. Errors of other types are
bugs, in aigc-sdk or in a plugin.
"""


class AigcError(Exception):
    """Base of every error aigc-sdk raises on purpose, with a one-line message."""


class UserError(AigcError):
    """What the caller asked for cannot be done as asked: a name, a value, a file or path.

    Its message names what is wrong and what was expected; asking differently fixes it.
    """


class PluginError(AigcError):
    """A plugin could not be loaded or used, broke its contract, or clashes with another."""


class UnknownNameError(UserError, KeyError):
    """A generator or trainer name that no loaded plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CheckpointError(UserError):
    """A checkpoint is missing, damaged, or belongs to another model."""


class RequestError(UserError, ValueError):
    """A generation request has an unknown or invalid field, or one over its limit."""
