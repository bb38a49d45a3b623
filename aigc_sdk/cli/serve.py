"""``aigc serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--generators a,b] ...``:
the OpenAI HTTP API and a playground page for every installed generator. The
server (``aigc_sdk.serve``) is a layer over ``SDK`` like this CLI: it loads only
for this command."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        allow_abbrev=False,
        help="serve the generators over HTTP: the OpenAI API and a playground page",
        description="An HTTP server for every installed generator: the OpenAI API "
        "(/v1/chat/completions, /v1/completions, /v1/images/generations, /v1/models), "
        "/v1/generate/NAME, /health, /metrics and a playground page at /. Stops on "
        "SIGTERM or Ctrl-C after the requests in flight finish.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every endpoint but /health "
        "(also AIGC_API_KEY, which keeps the key out of the process list)",
    )
    p.add_argument("--generators", help="serve only these, e.g. chat,gan (default: all)")
    p.add_argument(
        "--max-batch",
        type=_positive_int,
        default=8,
        help="text sequences decoded together by continuous batching (default: 8)",
    )
    p.add_argument(
        "--max-queue",
        type=_count,
        default=32,
        help="requests a generator queues beyond those it runs; more get 429 (default: 32)",
    )
    p.add_argument(
        "--context",
        type=_positive_int,
        help="tokens one text sequence may hold, prompt and answer (default: 2048)",
    )
    p.add_argument(
        "--max-body", type=_positive_int, default=1 << 20, help="largest request body, in bytes"
    )
    p.add_argument("--preload", action="store_true", help="load the generators at start-up")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch's intra-op threads (default: one per core; 1 on a machine shared with "
        "other work, see docs/plugins.md)",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    # The web stack loads only for this command: the other commands stay fast.
    from ..sdk import SDK
    from ..serve import SERVER_LIMITS, run

    api_key = args.api_key or os.environ.get("AIGC_API_KEY") or None
    names = None
    if args.generators:
        names = [name.strip() for name in args.generators.split(",") if name.strip()]
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(
            f"aigc: warning: serving on {args.host} without an API key: anyone who can reach "
            f"this port can use it (set --api-key or AIGC_API_KEY)",
            file=sys.stderr,
        )
    sdk = SDK(disable=args.disable or (), limits=SERVER_LIMITS)
    run(
        args.host,
        args.port,
        sdk=sdk,
        api_key=api_key,
        generators=names,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        context=args.context,
        max_body=args.max_body,
        preload=args.preload,
        threads=args.threads,
    )
    return 0
