"""``aigc serve``: the OpenAI HTTP API and a generic one over every installed generator.

    from aigc_sdk.serve import create_app, run
    app = create_app()                 # an ASGI app (FastAPI) over a new SDK
    run(port=8000)                     # uvicorn on 127.0.0.1:8000 until SIGTERM / Ctrl-C

A layer over ``aigc_sdk.SDK`` like the CLI: the library never imports it. Text
generators offering a batching engine (``Generator.batch_engine``) decode
concurrent requests together; every other generator serves one request at a
time. See docs/serving.md.
"""

from __future__ import annotations

from typing import Any

from .app import SERVER_LIMITS, create_app

__all__ = ["SERVER_LIMITS", "create_app", "run"]


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    drain_timeout: float = 60.0,
    threads: int | None = None,
    **options: Any,
) -> None:
    """Serves ``create_app(**options)`` with uvicorn until SIGINT or SIGTERM.

    On either signal the server stops accepting connections, lets the requests in
    flight finish (streams included, for up to ``drain_timeout`` seconds), then exits.
    ``threads`` sets torch's intra-op threads for the process (the server is the host).
    """
    import signal
    import threading

    import uvicorn

    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    app = create_app(drain_timeout=drain_timeout, **options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=drain_timeout,
        access_log=False,
    )
    if threading.current_thread() is not threading.main_thread():
        uvicorn.Server(config).run()
        return
    # uvicorn drains, then re-raises the SIGTERM it caught with the handler found before
    # it: this one makes that a clean exit (status 0) instead of death by the signal.
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        uvicorn.Server(config).run()
    except _Drained:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Drained(Exception):
    pass


def _drained(signum, frame) -> None:
    raise _Drained
