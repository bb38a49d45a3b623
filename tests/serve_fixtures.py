"""Real servers for the serve tests: uvicorn on 127.0.0.1, in a thread or a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn

from aigc_sdk import hookimpl
from aigc_sdk.generation import GenerationResult, Generator, ImageRequest, TextRequest

# Requests small enough for a test; the schema the fuzzer reads shows them.
TEST_LIMITS = {"n": 4, "max_new_tokens": 256, "seconds": 0.05, "prompt": 2000}


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Runs ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields its URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@contextlib.contextmanager
def aigc_serve(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``aigc serve ARGS`` in a subprocess on a free port; yields (URL, process) once
    /health answers. The process is stopped (SIGTERM, then SIGKILL) afterwards."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # uvicorn binds it itself; SO_REUSEADDR makes the race harmless here
    process = subprocess.Popen(
        [sys.executable, "-m", "aigc_sdk.cli", "serve", "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"aigc serve exited: {process.stdout.read()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("aigc serve did not answer /health")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- a plugin whose generators misbehave on request ------------------------------------


class _Boom(Generator):
    """Raises on ``prompt="boom"``, else echoes: a generator failing mid-service."""

    modality = "text"
    Request = TextRequest

    def generate(self, request):
        if request.prompt == "boom":
            raise RuntimeError("the boom generator exploded as asked")
        return GenerationResult("text", texts=[request.prompt] * request.n, seed=request.seed)


class _SlowImage(Generator):
    """Sleeps ``seed`` hundredths of a second, then makes a blank 4x4 image: holds a lane."""

    modality = "image"
    Request = ImageRequest

    def generate(self, request):
        import torch

        time.sleep((request.seed or 0) / 100)
        images = torch.zeros(request.n, 1, 4, 4)
        from aigc_sdk.media import to_pil

        return GenerationResult("image", images=to_pil(images), seed=request.seed)


class FaultyPlugin:
    @hookimpl
    def aigc_register_generators(self, register):
        register("boom", _Boom, modality="text", description="fails on prompt 'boom'")
        register("slow", _SlowImage, modality="image", description="sleeps seed/100 s")


def stream_lines(response: httpx.Response) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream."""
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield line[5:].strip()
