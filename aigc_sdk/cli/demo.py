"""`make demo`: every installed generator makes something into ./out.

python -m aigc_sdk.cli.demo [--out DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..media import MEDIA_SUFFIX
from ..sdk import SDK
from ..testing import SMALL_REQUESTS

# Each modality's smallest request (the one every generator's tests make), made
# large enough to look at.
REQUESTS = {
    "image": {**SMALL_REQUESTS["image"], "n": 16},
    "text": {
        **SMALL_REQUESTS["text"],
        "prompt": "def ",
        "max_new_tokens": 200,
        "temperature": 0.8,
        "top_p": 0.95,
    },
    "audio": {**SMALL_REQUESTS["audio"], "seconds": 2.0},
}
# A generator whose requests take a conversation answers a fixed chat prompt.
CHAT_REQUEST = {
    "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
    "max_new_tokens": 128,
    "temperature": 0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aigc_sdk.cli.demo")
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True)
    sdk = SDK()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in sdk.generators.names():
        entry = sdk.generators.get(name)
        start = time.perf_counter()
        try:
            with console.status(f"generating with {name} ({entry.plugin})"):
                request = REQUESTS[entry.modality]
                if "messages" in sdk.generator(name).Request.field_names():
                    request = CHAT_REQUEST
                result = sdk.generate(name, seed=args.seed, **request)
                paths = result.save(Path(args.out) / f"{name}{MEDIA_SUFFIX[entry.modality]}")
        except Exception as exc:  # the demo reports every generator, whatever one of them does
            failures += 1
            console.print(f"[red]{name}: failed: {type(exc).__name__}: {exc}")
            continue
        seconds = time.perf_counter() - start
        console.print(
            f"{name:<12} {entry.modality:<6} {seconds:6.2f} s  -> "
            + ", ".join(str(p) for p in paths)
        )
        if result.modality == "text":
            console.print(result.texts[0][:300], markup=False, highlight=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
