"""ASGI middleware in front of every route: metrics, the API key, the body-size limit and
the answer to a generator that failed.

Plain ASGI rather than ``BaseHTTPMiddleware``: responses stream through untouched
and a client's disconnect still reaches the route (a cancelled chat frees its slot).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

from .errors import error_bytes, failure_message

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .metrics import Metrics

# Paths served without the API key: the health check (for load balancers) and the
# playground's static files, which hold no data; the page sends the key the user
# types as a Bearer token with every API call.
OPEN_PATHS = ("/health", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)

_log = logging.getLogger("aigc_sdk.serve")


def _digest(value: bytes) -> bytes:
    # Equal-length digests: compare_digest's time then reveals nothing, not even the length.
    return hashlib.sha256(value).digest()


class Guard:
    """Checks ``Authorization: Bearer KEY`` (when a key is set) and caps request bodies
    at ``max_body`` bytes, answering 401 / 413 with OpenAI's error JSON."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body: int) -> None:
        self.app = app
        self.key_digest = _digest(api_key.encode()) if api_key else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._is_open(scope["path"]) and not self._authorized(scope):
            await _answer(
                send,
                401,
                "a valid API key is needed: send the header 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "Content-Length must be a number of bytes")
                return
            if int(declared) > self.max_body:
                await self._too_large(send)
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_body(receive)
            if body is None:
                await self._too_large(send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    @staticmethod
    def _is_open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    def _authorized(self, scope: Scope) -> bool:
        if self.key_digest is None:
            return True
        given = _header(scope, b"authorization") or ""
        scheme, _, token = given.partition(" ")
        valid = hmac.compare_digest(_digest(token.strip().encode()), self.key_digest)
        return valid and scheme.lower() == "bearer"

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when it passes ``max_body`` (reading stops there)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _answer(
            send, 413, f"the request body is over the limit of {self.max_body} bytes",
            code="request_too_large",
        )  # fmt: skip


class Instrument:
    """Counts every answer and times it to its last byte (streams included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)


class Failures:
    """Answers an exception no route handled (a generator that raised) with a 500 and
    OpenAI's error body, and logs it with its traceback.

    Starlette's last-resort handler re-raises after answering, and uvicorn then closes
    the connection: a client keeping it alive would lose its next request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:  # too late for an error answer: the connection must end
                raise
            _log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
            await _answer(send, 500, failure_message(exc))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving ``body`` once, then the client's own messages (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Send, status: int, message: str, *, code: str | None = None, headers=()
) -> None:
    body = error_bytes(status, message, code=code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
