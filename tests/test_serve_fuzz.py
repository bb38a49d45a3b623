"""Schemathesis against the server's own OpenAPI document, on a real server: whatever a
request holds, the answer is never a 5xx, and the server serves the next request.

Bounded: few examples per operation, and limits that keep each generation small (the
schema shows them, so valid requests stay cheap; invalid ones must be 4xx).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
httpx = pytest.importorskip("httpx")

from hypothesis import HealthCheck, settings  # noqa: E402
from serve_fixtures import FaultyPlugin, serving  # noqa: E402

from aigc_sdk import SDK  # noqa: E402
from aigc_sdk.serve import create_app  # noqa: E402

# The fuzzed server serves the real chat model (SmolLM2): the model tier.
pytestmark = pytest.mark.model

FUZZ_LIMITS = {"n": 2, "max_new_tokens": 4, "seconds": 0.01, "prompt": 200, "frames": 4}
# The deliberately failing generator answers 500 by design: it stays out of the fuzz.
FUZZED = ["chat", "gan", "vae", "audio", "transformer", "markov", "cppn", "chime"]


# The app is made here (no weights load until a request) so that its OpenAPI document is
# known when the tests are collected; the fixture serves this same app.
SDK_ = SDK(plugins=[FaultyPlugin()], limits=FUZZ_LIMITS)
APP = create_app(SDK_, generators=FUZZED, max_batch=2, max_queue=4, context=256)
CONFIG = schemathesis.config.SchemathesisConfig()
# The coverage phase's boundary values find what random data misses (it found a plugin
# failing on the smallest positive duration); its negative cases and unlisted methods
# would be thousands of quick 4xx, which the fuzzing phase samples instead.
COVERAGE = CONFIG.projects.default.phases.coverage
COVERAGE.generation = schemathesis.config.GenerationConfig(
    modes=[schemathesis.GenerationMode.POSITIVE]
)
COVERAGE.unexpected_methods = set()
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)


@pytest.fixture(scope="module")
def served():
    with SDK_, serving(APP) as url:
        yield url


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_5xx_or_breaks_the_server(case, served):
    response = case.call(base_url=served, timeout=120)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    kind = response.headers.get("content-type") or [""]
    kind = kind[0] if isinstance(kind, list) else kind  # schemathesis keeps every value
    if response.status_code >= 400 and kind.startswith("application/json"):
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert httpx.get(f"{served}/health", timeout=30).status_code == 200


def test_the_server_still_generates_after_the_fuzz(served):
    chat = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    answer = httpx.post(f"{served}/v1/chat/completions", json=chat, timeout=120)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    images = httpx.post(f"{served}/v1/generate/gan", json={"n": 2}, timeout=120)
    assert images.status_code == 200 and len(images.json()["images"]) == 2
