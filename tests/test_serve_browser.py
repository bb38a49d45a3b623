"""The playground page in a real browser: Debian's chromium driven by playwright.

Skipped where chromium or playwright is missing, unless AIGC_REQUIRE_BROWSER=1 (CI sets
it), which makes a missing browser a failure.
"""

from __future__ import annotations

import base64
import os
import shutil

import pytest
from serve_fixtures import TEST_LIMITS, serving

from aigc_sdk import SDK
from aigc_sdk.media import png_bytes
from aigc_sdk.serve import create_app

# Every test here drives a browser, a process of its own: the cli tier.
pytestmark = pytest.mark.cli

CHROMIUM_ARGS = [
    "--no-sandbox",  # as root
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    required = os.environ.get("AIGC_REQUIRE_BROWSER") == "1"
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        missing = "chromium (apt-get install chromium)" if chromium is None else "playwright"
        message = f"no browser to test the playground with: {missing} is not installed"
        if required:
            pytest.fail(f"{message}, and AIGC_REQUIRE_BROWSER=1")
        pytest.skip(message)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def sdk():
    with SDK(limits=TEST_LIMITS) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def url(sdk, browser):
    app = create_app(sdk, generators=["chat", "gan"], max_batch=2, context=512, preload=True)
    with serving(app) as url:
        yield url


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert errors == []  # no uncaught script error on the way


@pytest.mark.model  # the page's server runs the real chat model
def test_the_page_generates_a_gan_grid(page, url, sdk, tmp_path):
    page.goto(f"{url}/#gan")
    page.wait_for_selector("#fields input[name=n]")
    assert page.input_value("#generator") == "gan"
    page.fill("#fields input[name=n]", "4")
    page.fill("#fields input[name=seed]", "3")
    page.click("#generate")
    page.wait_for_function(
        """() => {
            const images = [...document.querySelectorAll('#result .grid img')];
            return images.length === 4 && images.every((i) => i.complete && i.naturalWidth > 0);
        }""",
        timeout=120_000,
    )
    sources = page.eval_on_selector_all("#result .grid img", "imgs => imgs.map(i => i.src)")
    shown = [base64.b64decode(src.split(",", 1)[1]) for src in sources]
    assert shown == [png_bytes(image) for image in sdk.generate("gan", n=4, seed=3).images]
    assert "done in" in page.text_content("#status")
    shot = tmp_path / "playground-gan.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.model  # the page's server runs the real chat model
def test_the_page_streams_a_chat_answer_token_by_token(page, url, sdk, tmp_path):
    page.goto(f"{url}/#chat")
    page.wait_for_selector("#chat-input", state="visible")
    assert page.is_hidden("#generate")
    page.fill("#fields input[name=max_new_tokens]", "24")
    page.fill("#fields input[name=seed]", "5")
    page.fill("#fields input[name=temperature]", "0.7")
    # Record the answer's length at every change the page makes to it.
    page.evaluate(
        """() => {
            window.lengths = [];
            new MutationObserver(() => {
                const reply = document.querySelector('.message.assistant');
                if (reply && reply.textContent) window.lengths.push(reply.textContent.length);
            }).observe(document.getElementById('chat-log'),
                       {subtree: true, childList: true, characterData: true});
        }"""
    )
    question = "Write a haiku about the sea."
    page.fill("#chat-input", question)
    page.click("#send")
    page.wait_for_selector(".message.assistant:not(.streaming)", timeout=120_000)
    lengths = page.evaluate("window.lengths")
    assert len(set(lengths)) >= 5 and lengths == sorted(lengths)  # it grew in view
    answer = page.text_content(".message.assistant")
    messages = [{"role": "user", "content": question}]
    own = sdk.generate("chat", messages=messages, max_new_tokens=24, seed=5, temperature=0.7)
    assert answer == own.texts[0]
    assert "tokens/s" in page.text_content("#status")
    shot = tmp_path / "playground-chat.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000

    # A second turn sees the first.
    page.fill("#chat-input", "Another one, please.")
    page.press("#chat-input", "Enter")
    page.wait_for_function(
        "document.querySelectorAll('.message.assistant:not(.streaming)').length === 2",
        timeout=120_000,
    )
    assert page.locator(".message.user").count() == 2


def test_the_page_asks_for_the_api_key_of_a_guarded_server(browser, sdk):
    app = create_app(sdk, generators=["gan"], api_key="page-key")
    with serving(app) as url:
        page = browser.new_page()
        try:
            page.goto(url)
            page.wait_for_selector("#status.error")
            assert "401" in page.text_content("#status")
            page.fill("#api-key", "page-key")
            page.dispatch_event("#api-key", "change")
            page.wait_for_selector("#fields input[name=n]")
            assert page.input_value("#generator") == "gan"
        finally:
            page.close()
