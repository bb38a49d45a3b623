"""``python -m aigc_sdk.training NAME [options]``: ``aigc train`` without the CLI.

Handy under ``torchrun`` (``torchrun --nproc_per_node=2 -m aigc_sdk.training
NAME ...``) and wherever the ``aigc`` script is not on the PATH.
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m aigc_sdk.training NAME [options]   (NAME --help for the options)"


def main(argv: list[str] | None = None) -> int:
    from ..errors import AigcError
    from ..sdk import SDK

    argv = sys.argv[1:] if argv is None else argv
    try:
        sdk = SDK()
        if not argv or argv[0].startswith("-"):
            names = sdk.trainers.names()
            print(USAGE, file=sys.stderr)
            print(f"trainers: {', '.join(names) if names else 'none installed'}", file=sys.stderr)
            return 0 if argv and argv[0] in ("-h", "--help") else 2
        from .cli import cli_main

        return cli_main(sdk, argv[0], argv[1:], prog=f"python -m aigc_sdk.training {argv[0]}")
    except AigcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
