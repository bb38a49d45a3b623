"""Errors a user can cause and fix. The CLI prints them as one line."""


class AigcError(Exception):
    """Base of every error raised for bad input, configuration or files."""


class PluginError(AigcError):
    """A plugin could not be found, loaded, or clashes with another."""


class UnknownNameError(AigcError, KeyError):
    """A generator or trainer name that no loaded plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CheckpointError(AigcError):
    """A checkpoint is missing, damaged, or belongs to another model."""


class RequestError(AigcError, ValueError):
    """A generation request has an unknown or invalid field."""
