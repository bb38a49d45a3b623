"""What several commands share: the SDK the global options ask for, the
generator options, and file-system errors as one line."""

from __future__ import annotations

import argparse
from typing import Any

from ..generation import check_device

EXIT_USER_ERROR = 1


def os_error_message(exc: OSError) -> str:
    """A file-system error as the path and the problem, without the errno noise."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        reason = f"{reason} (a file is where a directory is needed)"
    return f"{exc.filename}: {reason}" if exc.filename else reason


def make_sdk(args: argparse.Namespace):
    from ..sdk import SDK

    return SDK(disable=args.disable or ())


def generator_options(args: argparse.Namespace) -> dict[str, Any]:
    """--weights, --device and --dtype as the generator's constructor options (when given)."""
    options: dict[str, Any] = {}
    if args.weights:
        options["weights"] = args.weights
    if args.device:
        check_device(args.device, "--device")
        options["device"] = args.device
    if getattr(args, "dtype", None):
        options["dtype"] = args.dtype
    return options
