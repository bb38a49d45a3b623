"""aigc serve over plain HTTP (httpx): the generic endpoints, limits, the API key, the
bounded queue, failing generators, metrics, disconnects, and SIGTERM on `aigc serve`."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402
from serve_fixtures import TEST_LIMITS, FaultyPlugin, aigc_serve, serving, stream_lines  # noqa: E402

from aigc_sdk import SDK  # noqa: E402
from aigc_sdk.serve import create_app  # noqa: E402

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Tell me a long story."}]}


@pytest.fixture(scope="module")
def sdk():
    with SDK(plugins=[FaultyPlugin()], limits=TEST_LIMITS) as sdk:
        yield sdk


# The tests of this app are marked model: it serves the real chat model (SmolLM2).
@pytest.fixture(scope="module")
def app(sdk):
    return create_app(
        sdk,
        generators=["chat", "gan", "audio", "boom", "slow"],
        max_batch=4,
        max_queue=2,
        context=512,
        max_body=64 * 1024,
        preload=True,
    )


@pytest.fixture(scope="module")
def url(app):
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=300) as client:
        yield client


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# -- the generic endpoints ------------------------------------------------------------


@pytest.mark.model
def test_generators_describe_their_request_fields_from_the_dataclass(http, sdk):
    listed = {g["name"]: g for g in http.get("/v1/generators").json()["data"]}
    assert set(listed) == {"chat", "gan", "audio", "boom", "slow"}
    assert listed["chat"]["batching"] is True and listed["gan"]["batching"] is False
    for name in ("chat", "gan", "audio"):
        schema = http.get(f"/v1/generators/{name}").json()
        assert schema["x-modality"] == listed[name]["modality"]
        own = {k: v for k, v in schema.items() if not k.startswith("x-")}
        assert own == sdk.request_schema(name)
    assert http.get("/v1/generators/chat").json()["properties"]["n"]["maximum"] == TEST_LIMITS["n"]
    assert error_of(http.get("/v1/generators/nope"))["code"] == "model_not_found"


@pytest.mark.model
def test_generate_answers_images_as_png_audio_as_wav_text_as_text(http, sdk):
    images = http.post("/v1/generate/gan", json={"n": 2, "seed": 4}).json()
    assert images["modality"] == "image" and images["seed"] == 4
    pngs = [Image.open(io.BytesIO(base64.b64decode(b))) for b in images["images"]]
    assert len(pngs) == 2 and all(p.format == "PNG" for p in pngs)
    assert Image.open(io.BytesIO(base64.b64decode(images["grid"]))).width > pngs[0].width

    clip = http.post("/v1/generate/audio", json={"seconds": 0.05, "seed": 1}).json()
    with wave.open(io.BytesIO(base64.b64decode(clip["audio"][0]))) as wav:
        assert wav.getframerate() == clip["sample_rate"] == 16000
        assert wav.getnframes() == 800
    spectrogram = Image.open(io.BytesIO(base64.b64decode(clip["spectrogram"])))
    assert spectrogram.format == "PNG"

    fields = {"prompt": "1, 2, 3,", "raw": True, "temperature": 0, "max_new_tokens": 8,
              "stop": [" 5"]}  # fmt: skip
    text = http.post("/v1/generate/chat", json=fields).json()
    own = sdk.generate("chat", **fields).texts
    assert text["texts"] == own and own[0].endswith(" 5")  # the SDK's text: stop kept
    assert text["finish_reasons"] == ["stop"]
    with http.stream("POST", "/v1/generate/chat", params={"stream": "true"}, json=fields) as r:
        events = list(stream_lines(r))
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e) for e in events[:-1]]
    assert "".join(p["text"] for p in pieces) == own[0] and len(pieces) > 2
    assert pieces[-1]["finish_reason"] == "stop"


@pytest.mark.model
def test_request_mistakes_are_4xx_with_openai_errors(http):
    wrong = http.post("/v1/generate/gan", json={"n": 2, "sede": 1})
    assert wrong.status_code == 400 and "did you mean seed" in error_of(wrong)["message"]
    over = http.post("/v1/generate/gan", json={"n": TEST_LIMITS["n"] + 1})
    assert over.status_code == 400 and "n must be <= 4" in error_of(over)["message"]
    assert http.post("/v1/generate/gan", content=b"{not json").status_code == 400
    assert http.post("/v1/generate/gan", json=[1, 2]).status_code == 400
    tokens = http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10_000})
    assert tokens.status_code == 400 and error_of(tokens)["param"] == "max_tokens"
    long = http.post("/v1/generate/chat", json={"prompt": "x" * 2001})
    assert long.status_code == 400 and "prompt must be at most 2000" in error_of(long)["message"]
    big = http.post("/v1/generate/gan", content=b" " * (64 * 1024 + 1))
    assert big.status_code == 413 and error_of(big)["code"] == "request_too_large"
    assert http.get("/v1/nothing").status_code == 404
    assert http.get("/v1/chat/completions").status_code == 405


@pytest.mark.model
def test_a_failing_generator_is_a_500_with_its_message_and_service_goes_on(http):
    failed = http.post("/v1/generate/boom", json={"prompt": "boom"})
    assert failed.status_code == 500
    error = error_of(failed)
    assert error["type"] == "server_error" and "exploded as asked" in error["message"]
    chat = {"model": "boom", "messages": [{"role": "user", "content": "boom"}]}
    with http.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as r:
        events = list(stream_lines(r))
    assert "exploded as asked" in json.loads(events[-1])["error"]["message"]
    assert http.post("/v1/generate/boom", json={"prompt": "fine"}).json()["texts"] == ["fine"]
    assert http.get("/health").json()["status"] == "ok"
    assert 'aigc_errors_total{generator="boom"} 2.0' in http.get("/metrics").text


def test_a_failing_generator_leaves_the_connection_open(url):
    # Two requests on one kept-alive connection: the 500 is a whole answer, and the
    # server reads the next request from the same socket.
    host, port = url.removeprefix("http://").split(":")
    body = b'{"prompt": "boom"}'
    failing = (
        b"POST /v1/generate/boom HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        reader = sock.makefile("rb")

        def answer() -> tuple[bytes, bytes]:
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            return status, reader.read(length)

        sock.sendall(failing)
        status, content = answer()
        assert status.startswith(b"HTTP/1.1 500") and b"exploded as asked" in content
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, content = answer()
        assert status.startswith(b"HTTP/1.1 200") and json.loads(content)["status"] == "ok"


@pytest.mark.model
def test_a_client_leaving_frees_its_slot_at_once(http, app):
    engine = app.state.server.lanes["chat"].engine
    body = {**CHAT, "max_tokens": 32, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = stream_lines(response)
        for _ in range(3):
            next(lines)
        assert engine.stats().slots_used == 1
    deadline = time.monotonic() + 10
    while (engine.stats().slots_used or app.state.server.lanes["chat"].in_flight) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert engine.stats().slots_used == 0 and app.state.server.lanes["chat"].in_flight == 0
    assert (
        'aigc_generations_total{generator="chat",outcome="cancelled"}' in http.get("/metrics").text
    )


@pytest.mark.model
def test_metrics_count_requests_tokens_queues_and_latency(http, app, sdk):
    before = http.get("/metrics").text
    answer = http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 4}).json()
    text = http.get("/metrics").text
    assert 'aigc_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    completion = 'aigc_tokens_total{generator="chat",kind="completion"}'

    def value(metrics: str, name: str) -> float:
        line = next((li for li in metrics.splitlines() if li.startswith(name + " ")), None)
        return float(line.split()[-1]) if line else 0.0

    grown = value(text, completion) - value(before, completion)
    assert grown == answer["usage"]["completion_tokens"]
    for family in ("aigc_queue_length", "aigc_running_requests"):
        assert f'{family}{{generator="chat"}} 0.0' in text
    assert 'aigc_time_to_first_token_seconds_count{generator="chat"}' in text
    assert 'aigc_request_duration_seconds_bucket{endpoint="/v1/chat/completions"' in text
    # Each app counts its own: a second app over the same SDK starts from nothing.
    other = create_app(sdk, generators=["gan"])
    assert "aigc_requests_total{" not in other.state.server.metrics.exposition().decode()


# -- the API key --------------------------------------------------------------------------


def test_with_an_api_key_every_endpoint_but_health_needs_it(sdk):
    app = create_app(sdk, generators=["gan"], api_key="s3cret-key")
    with serving(app) as url:
        for path in ("/v1/models", "/v1/generators/gan", "/metrics", "/openapi.json"):
            missing = httpx.get(url + path)
            assert missing.status_code == 401, path
            assert error_of(missing)["code"] == "invalid_api_key"
            assert missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(
            url + "/v1/generate/gan", json={"n": 1}, headers={"Authorization": "Bearer s3cret"}
        )
        assert wrong.status_code == 401
        basic = httpx.get(url + "/v1/models", headers={"Authorization": "Basic s3cret-key"})
        assert basic.status_code == 401
        good = {"Authorization": "Bearer s3cret-key"}
        assert httpx.get(url + "/v1/models", headers=good).status_code == 200
        assert httpx.post(url + "/v1/generate/gan", json={"n": 1}, headers=good).status_code == 200
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/").status_code == 200  # the page itself holds no data


# -- the bounded queue --------------------------------------------------------------------


@pytest.mark.model
def test_a_full_queue_answers_429_at_once_and_serves_again_after(sdk):
    app = create_app(sdk, generators=["chat", "slow"], max_batch=1, max_queue=1, context=256)
    with serving(app) as url, httpx.Client(base_url=url, timeout=300) as http:
        # A slow image holds the one place of its lane, a second waits: a third is refused.
        results: list = []

        def slow(seed: int) -> None:
            results.append(http.post("/v1/generate/slow", json={"seed": seed}).status_code)

        holders = [
            threading.Thread(target=slow, args=(300,)),
            threading.Thread(target=slow, args=(1,)),
        ]
        holders[0].start()
        deadline = time.monotonic() + 10
        while app.state.server.lanes["slow"].in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        holders[1].start()
        while app.state.server.lanes["slow"].in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        refused = http.post("/v1/generate/slow", json={"seed": 0})
        assert time.monotonic() - start < 1  # never a hang
        assert refused.status_code == 429
        assert error_of(refused)["code"] == "queue_full" and refused.headers["retry-after"]
        for t in holders:
            t.join(60)
        assert results == [200, 200]
        assert http.post("/v1/generate/slow", json={"seed": 0}).status_code == 200

        # The chat lane: one slot, one queued; a streaming answer keeps its place to the end.
        body = {**CHAT, "max_tokens": 64, "stream": True, "temperature": 0}
        with http.stream("POST", "/v1/chat/completions", json=body) as first:
            lines = stream_lines(first)
            next(lines)
            waiting = threading.Thread(
                target=lambda: results.append(
                    http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2}).status_code
                )
            )
            waiting.start()
            while app.state.server.lanes["chat"].in_flight < 2 and time.monotonic() < deadline + 60:
                time.sleep(0.01)
            busy = http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2})
            assert busy.status_code == 429
            assert list(lines)[-1] == "[DONE]"
        waiting.join(120)
        assert results[-1] == 200
        metrics = http.get("/metrics").text
        assert 'aigc_generations_total{generator="chat",outcome="rejected"} 1.0' in metrics


# -- aigc serve and SIGTERM -----------------------------------------------------------------


def readme_serving() -> tuple[list[str], str, str]:
    """The README's serving section: (aigc serve's arguments, the curl command, the
    Python snippet), as a reader would copy them."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("## Serving over HTTP", 1)[1].split("\n## ", 1)[0]
    bash, python = re.findall(r"```(?:bash|python)\n(.*?)```", section, re.S)[:2]
    serve, curl = bash.split("\n", 1)
    serve_args = shlex.split(serve.split("#")[0])[2:]
    return serve_args, curl.replace("\\\n", " "), python


@pytest.mark.cli
@pytest.mark.model
def test_aigc_serve_works_as_the_readme_shows_and_drains_on_sigterm(tmp_path):
    serve_args, curl, python = readme_serving()
    with aigc_serve(*serve_args) as (url, process):
        port = url.rsplit(":", 1)[1]
        out = subprocess.run(
            curl.replace(":8000", f":{port}"), shell=True, capture_output=True, text=True
        )
        answer = json.loads(out.stdout)
        assert answer["choices"][0]["message"]["content"], out.stdout
        script = tmp_path / "client.py"
        script.write_text(python.replace(":8000", f":{port}"))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        assert out.returncode == 0 and len(out.stdout) > 10, out.stderr

        body = {**CHAT, "max_tokens": 24, "stream": True, "temperature": 0}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
            lines = stream_lines(r)
            first = next(lines)
            process.send_signal(signal.SIGTERM)
            rest = list(lines)
        chunks = [json.loads(line) for line in [first, *rest[:-1]]]
        assert rest[-1] == "[DONE]"
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text
        assert process.wait(60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
        log = process.stdout.read()
        assert "Traceback" not in log
