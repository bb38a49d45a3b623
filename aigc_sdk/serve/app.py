"""The FastAPI application: OpenAI's endpoints, the generic ones, health, metrics, the page.

No ``from __future__ import annotations`` here: FastAPI reads the route functions'
annotations, and the request models are made per app, inside ``create_app``.
"""

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..batching import Piece
from ..errors import UnknownNameError, UserError
from ..generation import TextStream, resolve_seed
from .errors import APIError, error_body, failure_message
from .guard import Failures, Guard, Instrument
from .lanes import Lane, TextRun
from .metrics import Metrics
from .models import ChatMessage, openai_models

STATIC = Path(__file__).parent / "static"

# What one request may ask of a server unless the host's SDK says otherwise: requests
# are smaller than a library call may make (``SDK(limits=...)`` changes them).
SERVER_LIMITS = {"n": 16, "max_new_tokens": 1024}
CLIENT_GONE = 499  # nginx's status for a request its client abandoned (nobody reads it)


class Server:
    """The served generators (lanes) and the settings every route reads."""

    def __init__(self, sdk, names: list[str], *, max_batch, max_queue, context, metrics) -> None:
        self.sdk, self.metrics = sdk, metrics
        self.started = int(time.time())
        self.lanes = {
            name: Lane(
                sdk,
                name,
                max_batch=max_batch,
                max_queue=max_queue,
                context=context,
                metrics=metrics,
            )  # fmt: skip
            for name in names
        }
        self.max_batch = max_batch

    def lane(self, name: str, modality: str | None = None) -> Lane:
        lane = self.lanes.get(name)
        if lane is None:
            known = ", ".join(sorted(self.lanes)) or "none"
            raise APIError(
                404,
                f"the model {name!r} does not exist on this server; served: {known}",
                param="model",
                code="model_not_found",
            )
        if modality is not None and lane.modality != modality:
            raise APIError(
                400,
                f"the model {name!r} makes {lane.modality}, not {modality}",
                param="model",
                code="wrong_modality",
            )
        return lane

    def limits(self, name: str) -> dict[str, float | None]:
        return self.sdk.limits_for(name)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()


def create_app(
    sdk=None,
    *,
    api_key: str | None = None,
    generators: list[str] | None = None,
    max_batch: int = 8,
    max_queue: int = 32,
    context: int | None = None,
    max_body: int = 1 << 20,
    drain_timeout: float = 60.0,
    preload: bool = False,
) -> FastAPI:
    """The server's ASGI app over ``sdk`` (a new ``SDK(limits=SERVER_LIMITS)`` when None).

    ``generators``: the names served (default: every installed generator).
    ``max_batch``: sequences a text generator with continuous batching decodes at
    once. ``max_queue``: requests a generator holds beyond those it runs before it
    answers 429. ``context``: tokens per sequence of a batching engine (its default
    when None). ``max_body``: the largest request body in bytes. ``drain_timeout``:
    how long a stream may go on after a shutdown signal. ``preload``: create every
    served generator at start-up rather than on its first request.
    """
    if sdk is None:
        from ..sdk import SDK

        sdk = SDK(limits=SERVER_LIMITS)
    names = _served(sdk, generators)
    metrics = Metrics(lambda: server.lanes.values())
    server = Server(
        sdk, names, max_batch=max_batch, max_queue=max_queue, context=context, metrics=metrics
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if preload:
            for lane in server.lanes.values():
                await lane.ready()
        try:
            yield
        finally:
            server.close()

    app = FastAPI(
        title="aigc-sdk server",
        version=__version__,
        description="The OpenAI HTTP API and a generic one over every installed generator.",
        lifespan=lifespan,
    )
    app.state.server = server
    app.openapi = lambda: _openapi(app)
    _errors(app, server)
    _openai_routes(app, server, drain_timeout)
    _generic_routes(app, server, drain_timeout)
    _service_routes(app, server)
    app.add_middleware(Failures)  # innermost: the others see its 500 as any answer
    app.add_middleware(Guard, api_key=api_key, max_body=max_body)
    app.add_middleware(Instrument, metrics=metrics)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document, with the errors this server really answers: OpenAI's
    error body for every 4xx (validation included: 400, not FastAPI's 422) and 500."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["4XX"] = {"description": "A mistake in the request", **error}
            responses["500"] = {"description": "The generator failed", **error}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    text = {"type": ["string", "null"]}
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": text,
                    "code": text,
                },  # fmt: skip
            }
        },
    }
    app.openapi_schema = schema
    return schema


def _served(sdk, generators: list[str] | None) -> list[str]:
    installed = sdk.generators.names()
    if generators is None:
        return installed
    for name in generators:
        sdk.generators.get(name)  # an unknown name is an error naming the closest one
    return list(dict.fromkeys(generators))


# -- errors --------------------------------------------------------------------------


def _errors(app: FastAPI, server: Server) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else first["msg"]
        return JSONResponse(error_body(400, message, param=param), status_code=400)

    @app.exception_handler(UnknownNameError)
    async def unknown(request: Request, exc: UnknownNameError):
        return JSONResponse(error_body(404, str(exc), code="model_not_found"), status_code=404)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse(error_body(400, str(exc)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


# -- OpenAI endpoints ------------------------------------------------------------------


def _openai_routes(app: FastAPI, server: Server, drain_timeout: float) -> None:
    limits = server.sdk.limits
    most_n = int(_limit(limits.get("n"), 64))
    by_modality = {kind: [n for n, lane in server.lanes.items() if lane.modality == kind]
                   for kind in ("text", "image")}  # fmt: skip
    models = openai_models(
        max_n=min(most_n, server.max_batch),
        max_tokens=int(_limit(limits.get("max_new_tokens"), 4096)),
        max_images=most_n,
        text_models=by_modality["text"],
        image_models=by_modality["image"],
    )
    ChatBody, CompletionBody, ImageBody = models.chat, models.completion, models.image

    @app.get("/v1/models", tags=["openai"])
    async def list_models() -> dict:
        """Every served generator, with its modality and plugin."""
        return {"object": "list", "data": [_model_card(server, n) for n in server.lanes]}

    @app.get("/v1/models/{model}", tags=["openai"])
    async def get_model(model: str) -> dict:
        server.lane(model)
        return _model_card(server, model)

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(body: ChatBody, http: Request):  # type: ignore[valid-type]
        arrived = time.perf_counter()
        lane = server.lane(body.model, "text")
        _refuse_unsupported(body)
        fields = _sampling(body, max_tokens=body.max_completion_tokens or body.max_tokens)
        fields.update(_conversation(lane, body.messages, server.limits(lane.name)))
        return await _text_response(
            http, lane, fields, body, arrived, chat=True, drain_timeout=drain_timeout
        )

    @app.post("/v1/completions", tags=["openai"])
    async def completions(body: CompletionBody, http: Request):  # type: ignore[valid-type]
        arrived = time.perf_counter()
        lane = server.lane(body.model, "text")
        _refuse_unsupported(body)
        if body.best_of not in (None, 1, body.n or 1):
            raise APIError(400, "best_of must equal n: choices are not ranked", param="best_of")
        fields = _sampling(body, max_tokens=body.max_tokens or 16)
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        n = fields.pop("n", 1)
        if len(prompts) == 1:
            fields.update(prompt=prompts[0], n=n)
        else:  # OpenAI's order: every choice of the first prompt, then of the next
            fields["prompt"] = [p for p in prompts for _ in range(n)]
        if "raw" in server.sdk.request_type(lane.name).field_names():
            fields["raw"] = True
        echo = [p for p in prompts for _ in range(n)] if body.echo else None
        return await _text_response(
            http, lane, fields, body, arrived, chat=False, drain_timeout=drain_timeout,
            echo=echo, per_prompt=n,
        )  # fmt: skip

    @app.post("/v1/images/generations", tags=["openai"])
    async def images(body: ImageBody):  # type: ignore[valid-type]
        name = body.model or _default_image_model(server)
        lane = server.lane(name, "image")
        if body.response_format != "b64_json":
            raise APIError(
                400, "response_format must be b64_json: this server keeps no image files",
                param="response_format",
            )  # fmt: skip
        fields: dict[str, Any] = {"n": body.n, "seed": resolve_seed(body.seed)}
        if body.prompt and "prompt" in server.sdk.request_type(name).field_names():
            fields["prompt"] = body.prompt
        result = await _run_whole(lane, fields)
        from ..media import png_bytes

        return {
            "created": int(time.time()),
            "data": [{"b64_json": _b64(png_bytes(image))} for image in result.images],
        }


def _limit(value: Any, fallback: float) -> float:
    return fallback if value is None or isinstance(value, Mapping) else value


def _model_card(server: Server, name: str) -> dict[str, Any]:
    lane = server.lanes[name]
    return {
        "id": name,
        "object": "model",
        "created": server.started,
        "owned_by": lane.plugin,
        "modality": lane.modality,
        "plugin": lane.plugin,
        "description": lane.description,
    }


def _default_image_model(server: Server) -> str:
    names = [n for n, lane in server.lanes.items() if lane.modality == "image"]
    if not names:
        raise APIError(404, "this server has no image generator", param="model")
    return "gan" if "gan" in names else names[0]


def _refuse_unsupported(body) -> None:
    field = body.unsupported()
    if field is not None:
        raise APIError(400, f"{field} is not supported by this server", param=field)


def _sampling(body, max_tokens: int | None) -> dict[str, Any]:
    """The SDK's sampling fields from an OpenAI body (fields left out keep their defaults)."""
    fields: dict[str, Any] = {"seed": resolve_seed(body.seed)}
    if max_tokens is not None:
        fields["max_new_tokens"] = max_tokens
    for name in ("temperature", "top_k", "min_p", "repetition_penalty", "n"):
        value = getattr(body, name)
        if value is not None:
            fields[name] = value
    if body.top_p is not None:
        # OpenAI takes top_p=0 to mean the likeliest token only.
        fields["top_p"] = body.top_p if body.top_p > 0 else 1e-9
    if body.stop:
        fields["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    return fields


def _conversation(
    lane: Lane, messages: list[ChatMessage], limits: Mapping[str, Any]
) -> dict[str, Any]:
    most = limits.get("prompt")
    total = sum(len(m.text()) for m in messages)
    if most is not None and total > most:
        raise APIError(
            400,
            f"messages: the conversation is {total} characters; the limit is {most:g}",
            param="messages",
            code="context_length_exceeded",
        )
    turns = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in messages
    ]
    if "messages" in lane.sdk.request_type(lane.name).field_names():
        return {"messages": turns}
    if len(turns) == 1 and turns[0]["role"] == "user":
        return {"prompt": turns[0]["content"]}
    raise APIError(
        400,
        f"the model {lane.name!r} continues a prompt and takes no conversation: send one user "
        f"message, or use /v1/completions",
        param="messages",
    )


async def _run_whole(lane: Lane, fields: dict[str, Any]):
    """A whole generation without an engine: admitted, run one at a time."""
    await lane.request(fields)
    lane.admit()
    try:
        await lane.ready()
        return await lane.generate(fields)
    finally:
        lane.leave()


async def _start_text(lane: Lane, fields: dict[str, Any], stream: bool):
    """(request, run) of an admitted text generation; the caller must ``lane.leave()``."""
    request = await lane.request(fields)
    lane.admit()
    try:
        await lane.ready()
        run = await lane.text(request, fields, stream)
    except BaseException:
        lane.leave()
        raise
    return request, run


async def _text_response(
    http: Request,
    lane: Lane,
    fields: dict[str, Any],
    body,
    arrived: float,
    *,
    chat: bool,
    drain_timeout: float,
    echo: list[str] | None = None,
    per_prompt: int = 1,
):
    request, run = await _start_text(lane, fields, body.stream)
    stops = tuple(fields.get("stop", ()))
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    kind = "chat.completion" if chat else "text_completion"

    def usage() -> dict[str, int]:
        if chat:  # the n answers share one prompt
            prompt = run.prompt_tokens[0] if run.prompt_tokens else 0
        else:
            prompt = sum(run.prompt_tokens[::per_prompt])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": run.completion_tokens,
            "total_tokens": prompt + run.completion_tokens,
        }

    if not body.stream:
        collected = await _collect(lane, run, http)
        if collected is None:
            return Response(status_code=CLIENT_GONE)
        sdk_texts, reasons = collected
        texts = [""] * run.sequences
        for i, text in enumerate(sdk_texts):
            stream = TextStream(stops, keep_stop=False)
            texts[i] = stream.add(text) + stream.finish()
            reasons[i] = "stop" if stream.stop is not None else reasons[i]
        lane.finished(run, request, sdk_texts, arrived)
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reasons[i],
                }
                for i, text in enumerate(texts)
            ]
        else:
            choices = [
                {
                    "index": i,
                    "text": (echo[i] if echo else "") + text,
                    "logprobs": None,
                    "finish_reason": reasons[i],
                }
                for i, text in enumerate(texts)
            ]
        return {
            "id": ident,
            "object": kind,
            "created": created,
            "model": lane.name,
            "choices": choices,
            "usage": usage(),
        }

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(choices: list[dict], **extra: Any) -> dict[str, str]:
        data = {
            "id": ident,
            "object": f"{kind}.chunk" if chat else kind,
            "created": created,
            "model": lane.name,
            "choices": choices,
            **extra,
        }
        return {"data": json.dumps(data)}

    def choice(index: int, text: str | None, reason: str | None, role: bool = False) -> dict:
        if chat:
            delta: dict[str, str] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": reason}

    # OpenAI's text leaves out the stop string the SDK's text ends with.
    streams = [TextStream(stops, keep_stop=False) for _ in range(run.sequences)]

    def opening() -> Iterator[dict[str, str]]:
        for i in range(run.sequences):
            if chat:
                yield chunk([choice(i, "", None, role=True)])
            elif echo:
                yield chunk([choice(i, echo[i], None)])

    def on_piece(piece: Piece) -> Iterator[dict[str, str]]:
        stream, reason = streams[piece.index], piece.finish_reason
        out = stream.add(piece.text)
        if reason is not None:
            out += stream.finish()
        if out:
            yield chunk([choice(piece.index, out, None)])
        if reason is not None:
            reason = "stop" if stream.stop is not None else reason
            yield chunk([choice(piece.index, None, reason)])

    def closing() -> Iterator[dict[str, str]]:
        if include_usage:
            yield chunk([], usage=usage())

    events = _text_events(lane, run, request, arrived, on_piece, opening(), closing)
    return _sse(events, drain_timeout)


async def _collect(lane: Lane, run: TextRun, http: Request):
    """(texts, finish reasons) of a whole run, or None when the client left first (the
    run is then cancelled and its slots freed); always gives the lane its place back."""
    texts, reasons = [""] * run.sequences, ["stop"] * run.sequences

    async def gather() -> None:
        async for piece in run.pieces():
            texts[piece.index] += piece.text
            if piece.finish_reason is not None:
                reasons[piece.index] = piece.finish_reason

    gathering = asyncio.ensure_future(gather())
    leaving = asyncio.ensure_future(_disconnected(http))
    try:
        await asyncio.wait({gathering, leaving}, return_when=asyncio.FIRST_COMPLETED)
        if not gathering.done():
            gathering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gathering
            lane.cancelled()
            return None
        leaving.cancel()
        try:
            gathering.result()
        except Exception:
            lane.failed()
            raise
        return texts, reasons
    finally:
        gathering.cancel()
        leaving.cancel()
        lane.leave()


async def _disconnected(http: Request) -> None:
    while (await http.receive())["type"] != "http.disconnect":
        pass


def _sse(events: AsyncIterator[dict[str, str]], drain_timeout: float) -> EventSourceResponse:
    import anyio

    # On a shutdown signal a stream may finish within drain_timeout rather than be cut.
    return EventSourceResponse(
        events,
        sep="\n",
        ping=15,
        shutdown_event=anyio.Event(),
        shutdown_grace_period=drain_timeout,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- the generic endpoints ---------------------------------------------------------------


def _generic_routes(app: FastAPI, server: Server, drain_timeout: float) -> None:
    @app.get("/v1/generators", tags=["generators"])
    async def list_generators() -> dict:
        """Every served generator: name, modality, plugin, description, batching."""
        return {"data": [_generator_card(server, name) for name in server.lanes]}

    @app.get("/v1/generators/{name}", tags=["generators"])
    async def generator_schema(name: str) -> dict:
        """The generator's request fields as a JSON schema, from its request dataclass."""
        lane = server.lane(name)
        schema = server.sdk.request_schema(name)
        return {
            **schema,
            "x-generator": name,
            "x-modality": lane.modality,
            "x-plugin": lane.plugin,
        }

    async def generate(name: str, http: Request, stream: bool = False):
        lane = server.lane(name)
        fields = await _json_object(http)
        fields.setdefault("seed", None)
        if fields["seed"] is None:
            fields["seed"] = resolve_seed(None)
        if lane.modality != "text":
            if stream:
                raise APIError(400, f"{lane.modality} cannot stream", param="stream")
            return _media_response(lane, await _run_whole(lane, fields))
        arrived = time.perf_counter()
        request, run = await _start_text(lane, fields, stream)
        if stream:
            return _sse(_text_events(lane, run, request, arrived, _piece_event), drain_timeout)
        collected = await _collect(lane, run, http)
        if collected is None:
            return Response(status_code=CLIENT_GONE)
        texts, reasons = collected
        lane.finished(run, request, texts, arrived)
        return {
            "model": name,
            "modality": "text",
            "seed": run.seed,
            "texts": texts,
            "finish_reasons": reasons,
            "usage": {
                "prompt_tokens": sum(run.prompt_tokens),
                "completion_tokens": run.completion_tokens,
            },
        }

    for name in server.lanes:
        _one_generator_route(app, server, name, generate)

    @app.post("/v1/generate/{name}", include_in_schema=False)
    async def generate_any(name: str, http: Request, stream: bool = False):
        return await generate(name, http, stream)


def _one_generator_route(app: FastAPI, server: Server, name: str, generate) -> None:
    """POST /v1/generate/NAME, its body documented by the request dataclass's schema."""
    try:
        schema = server.sdk.request_schema(name)
    except Exception:  # noqa: BLE001 - a plugin whose request cannot be described
        schema = {"type": "object"}
    schema = {k: v for k, v in schema.items() if k not in ("title", "description")}
    modality = server.lanes[name].modality
    answers = {
        "image": "PNG images, base64 (`images`, and `grid` of them all)",
        "audio": "WAV clips, base64 (`audio`), and the attached spectrogram PNG",
        "text": "the texts (`texts`); `?stream=true` streams the pieces as server-sent events",
    }

    async def route(http: Request, stream: bool = False):
        return await generate(name, http, stream)

    app.post(
        f"/v1/generate/{name}",
        tags=["generators"],
        summary=f"Run {name} ({modality})",
        description=f"The body holds {name}'s request fields; the answer holds "
        f"{answers[modality]}.",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
        },
        name=f"generate_{name}",
    )(route)


async def _json_object(http: Request) -> dict[str, Any]:
    raw = await http.body()
    try:
        value = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise APIError(400, "the body must be a JSON object of request fields")
    return value


def _piece_event(piece: Piece) -> Iterator[dict[str, str]]:
    """The generic endpoint's event of one piece: the SDK's text as it is."""
    data = {"index": piece.index, "text": piece.text}
    if piece.finish_reason is not None:
        data["finish_reason"] = piece.finish_reason
    yield {"data": json.dumps(data)}


async def _text_events(
    lane: Lane,
    run: TextRun,
    request,
    arrived: float,
    on_piece: Callable[[Piece], Iterable[dict[str, str]]],
    opening: Iterable[dict[str, str]] = (),
    closing: Callable[[], Iterable[dict[str, str]]] = tuple,
) -> AsyncIterator[dict[str, str]]:
    """The server-sent events of a streamed text run: ``opening``, the events
    ``on_piece`` makes of each piece, ``closing()`` and ``[DONE]``.

    An error is told to the client in the stream. The run counts as finished,
    failed or cancelled (the client left), and the lane gets its place back.
    """
    texts = [""] * run.sequences
    outcome = "cancelled"
    try:
        for event in opening:
            yield event
        async for piece in run.pieces():
            texts[piece.index] += piece.text
            for event in on_piece(piece):
                yield event
        outcome = "ok"
        lane.finished(run, request, texts, arrived)
        for event in closing():
            yield event
        yield {"data": "[DONE]"}
    except Exception as exc:  # noqa: BLE001 - told to the client in the stream
        outcome = "error"
        lane.failed()
        yield {"data": json.dumps(error_body(500, failure_message(exc)))}
    finally:
        lane.leave()
        if outcome == "cancelled":
            lane.cancelled()


def _generator_card(server: Server, name: str) -> dict[str, Any]:
    lane = server.lanes[name]
    return {
        "name": name,
        "modality": lane.modality,
        "plugin": lane.plugin,
        "description": lane.description,
        "loaded": lane.generator is not None,
        "batching": lane.engine is not None,
    }


def _media_response(lane: Lane, result) -> dict[str, Any]:
    from ..media import make_grid, png_bytes, wav_bytes

    out: dict[str, Any] = {"model": lane.name, "modality": result.modality, "seed": result.seed}
    if result.modality == "image":
        out["images"] = [_b64(png_bytes(image)) for image in result.images]
        if result.images:
            out["grid"] = _b64(png_bytes(make_grid(result.images)))
    elif result.modality == "audio":
        clips = result.audio if result.audio is not None else []
        out["sample_rate"] = result.sample_rate
        out["audio"] = [_b64(wav_bytes(clip, result.sample_rate)) for clip in clips]
    else:
        out["texts"] = list(result.texts)
    out["attachments"] = {suffix: _b64(data) for suffix, data in (result.attachments or {}).items()}
    if result.modality == "audio" and ".png" in out["attachments"]:
        out["spectrogram"] = out["attachments"][".png"]
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- health, metrics, the page ------------------------------------------------------------


def _service_routes(app: FastAPI, server: Server) -> None:
    @app.get("/health", tags=["service"])
    async def health() -> dict:
        """Up and answering (no API key needed: for load balancers)."""
        return {
            "status": "ok",
            "generators": {
                name: {"loaded": lane.generator is not None, "in_flight": lane.in_flight}
                for name, lane in server.lanes.items()
            },
        }

    @app.get("/metrics", tags=["service"])
    async def metrics() -> Response:
        """Prometheus metrics: requests, errors, tokens, queue lengths, latencies."""
        return Response(server.metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
