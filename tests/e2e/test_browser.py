"""The chat page in a real browser: Playwright driving Debian's Chromium (never a
downloaded browser) against a real uvicorn server and Celery worker with the real model,
a local fake SerpApi and local result pages."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shared.cli import web_command
from tests.conftest import ROOT, TEST_DATA_DIR
from tests.e2e.conftest import Stack, running_stack, wait_until
from tests.e2e.conftest import _answers as answers
from tests.e2e.test_internet import (
    HARBOUR,
    INTERNET_ENV,
    LIGHTHOUSE,
    QUESTION,
    Result,
    SerpApi,
)
from tests.worker.internet.internet_fakes import LocalServer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = TEST_DATA_DIR / "artifacts"
LONG_QUESTION = "Write a long story about a dragon who learns to fly, in ten paragraphs."
# Wide bounds against hangs, not speed goals (a busy 2-core machine runs several suites).
ANSWER_TIMEOUT_MS = 120_000
KEY = "browser-key"
expect.set_options(timeout=ANSWER_TIMEOUT_MS)


@pytest.fixture(scope="module")
def serpapi() -> Iterator[SerpApi]:
    server = SerpApi()
    yield server
    server.close()


@pytest.fixture(scope="module")
def pages(serpapi: SerpApi) -> Iterator[LocalServer]:
    server = LocalServer()
    serpapi.results = [
        Result("Zorvath harbour guide", server.page("/harbour", HARBOUR), "A visitor's guide."),
        Result("The Zorvath lighthouse", server.page("/lighthouse", LIGHTHOUSE), "The tower."),
    ]
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(
    stack_env: dict[str, str],
    serpapi: SerpApi,
    pages: LocalServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    env = {
        **stack_env,
        **INTERNET_ENV,
        "SERPAPI_BASE_URL": serpapi.url(""),
        "MAX_NEW_TOKENS": "400",  # long enough to stop and to reload mid-answer
        "STREAM_GRACE_S": "15",  # a reload must not cancel the answer
        "THREADS": "1",  # ggml threads spin-wait: on a busy machine, fewer is faster
    }
    with running_stack(env, tmp_path_factory.mktemp("browser-logs")) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(ANSWER_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], f"the page threw: {errors}"


def ask(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")  # the keyboard sends


def answer(page: Page) -> str:
    return page.locator(".message.assistant .text").last.inner_text()


def wait_for_tokens(page: Page, at_least: int = 20, *, streaming: bool = True) -> None:
    """Text is on the page while the answer still streams (not only after it ends);
    ``streaming=False``: the text, whether or not the answer has ended since."""
    page.wait_for_function(
        """([n, streaming]) => {
            const bubble = [...document.querySelectorAll('.message.assistant')].pop();
            return bubble && (!streaming || bubble.classList.contains('streaming'))
                && bubble.querySelector('.text').textContent.length >= n;
        }""",
        arg=[at_least, streaming],
    )


def test_ask_stream_and_stop(page: Page, stack: Stack) -> None:
    page.goto(stack.url())
    expect(page).to_have_title("chatbot")
    page.get_by_role("button", name="New chat").click()
    ask(page, LONG_QUESTION)

    expect(page.locator(".message.human .text")).to_have_text(LONG_QUESTION)
    chat_button = page.locator("#chat-list button").first
    expect(chat_button).to_have_text(re.compile("Write a long story"))
    expect(chat_button).to_have_attribute("aria-current", "true")
    wait_for_tokens(page)
    seen_streaming = answer(page)
    assert seen_streaming.strip()

    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".message.assistant .note").last).to_have_text("stopped: partial answer")
    expect(page.locator("#status")).to_have_text("Stopped.")
    stopped = answer(page)
    assert stopped.startswith(seen_streaming)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "stopped.png"))

    # Regenerate answers the same question again, below the stopped answer.
    page.get_by_role("button", name="Regenerate").click()
    wait_for_tokens(page, at_least=5)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".message.assistant")).to_have_count(2)
    expect(page.locator("#status")).to_have_text("Stopped.")


def test_reload_mid_answer_resumes(page: Page, stack: Stack) -> None:
    page.goto(stack.url())
    page.get_by_role("button", name="New chat").click()
    ask(page, LONG_QUESTION)
    wait_for_tokens(page)
    before = answer(page)
    assert re.search(r"#[0-9a-f-]{36}$", page.url), "the chat is in the address"

    page.reload()
    # The page re-attaches to the running answer: it replays from the start, then follows.
    expect(page.locator(".message.human .text")).to_have_text(LONG_QUESTION)
    wait_for_tokens(page, at_least=len(before) + 5)
    resumed = answer(page)
    assert resumed.startswith(before)
    assert page.locator(".message.assistant").count() == 1

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_text("Stopped.")
    # One answer, saved once, holding what was streamed before and after the reload.
    assert answer(page).startswith(resumed)
    page.reload()
    expect(page.locator(".message.assistant")).to_have_count(1)
    assert answer(page).startswith(resumed)


def test_network_drop_resumes_with_last_event_id(page: Page, stack: Stack) -> None:
    """The web server goes away mid-answer and comes back on the same address: the
    EventSource reconnects with Last-Event-ID and gets exactly what it missed."""
    page.goto(stack.url())
    page.get_by_role("button", name="New chat").click()
    ask(page, LONG_QUESTION)
    wait_for_tokens(page)
    port = stack.ports["web"]
    stack.stop("web")
    expect(page.locator("#status")).to_have_text("Connection lost: reconnecting…")
    before = answer(page)
    stack.processes["web"] = spawn_web(stack, port)
    wait_until(lambda: answers(f"{stack.url()}/healthz"), "the web server to come back")

    # On a fast day the answer ends while the server is away: the reconnect then brings
    # the rest and the `done` event together, and there is nothing left to stop.
    wait_for_tokens(page, at_least=len(before) + 5, streaming=False)
    resumed = answer(page)
    assert resumed.startswith(before)
    expect(page.locator("#error")).to_be_hidden()
    # Forced: the button is disabled once the answer has ended (a click then does nothing),
    # which it may have by now, or while the stop is on its way.
    page.get_by_role("button", name="Stop").click(force=True)
    expect(page.locator("#status")).to_have_text(re.compile(r"Stopped\.|Done \(\d+ tokens\)\."))
    # Nothing was lost or sent twice: what streamed is the start of the saved answer.
    page.reload()
    expect(page.locator(".message.assistant")).to_have_count(1)
    assert answer(page).startswith(resumed)


def spawn_web(stack: Stack, port: int) -> subprocess.Popen[bytes]:
    with open(stack.logs / "web.log", "ab") as log:
        return subprocess.Popen(
            web_command(host="127.0.0.1", port=port),
            cwd=ROOT,
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_internet_answer_shows_numbered_sources(page: Page, stack: Stack) -> None:
    page.goto(stack.url())
    page.get_by_role("button", name="New chat").click()
    page.get_by_label("Search the web (cited sources)").check()
    ask(page, QUESTION)
    # The sources come before the first token.
    sources = page.get_by_role("list", name="Sources").last
    expect(sources.locator("li").first).to_contain_text("[1]")
    links = sources.get_by_role("link")
    expect(links.first).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:\d+/"))
    titles = links.all_inner_texts()
    assert any("Zorvath" in title for title in titles), titles
    wait_for_tokens(page, at_least=10)
    page.screenshot(path=str(ARTIFACTS / "internet.png"))
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_text(re.compile(r"^(Stopped|Done)"))

    # The sources are saved with the answer: they are there after a reload too.
    page.reload()
    saved = page.get_by_role("list", name="Sources").last.get_by_role("link")
    expect(saved.first).to_be_visible()
    assert saved.all_inner_texts() == titles


def test_api_key_prompt(page: Page, stack: Stack) -> None:
    base = stack.start_web("web-keys", API_KEYS=KEY)
    try:
        page.goto(base)
        dialog = page.get_by_role("dialog", name="API key needed")
        expect(dialog).to_be_visible()
        dialog.get_by_label("API key").fill(KEY)
        dialog.get_by_label("API key").press("Enter")
        expect(dialog).to_be_hidden()
        # The key is a tenant of its own: it starts with no chats, makes one, and the
        # answer stream carries the key (?api_key=).
        page.get_by_role("button", name="New chat").click()
        ask(page, "Say hello.")
        expect(page.locator("#chat-list button").first).to_be_visible()
        expect(page.locator(".message.assistant .text").last).not_to_be_empty()
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#status")).to_have_text(re.compile(r"^Done"))  # a short answer
    finally:
        stack.stop("web-keys")
