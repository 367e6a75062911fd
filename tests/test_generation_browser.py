"""Streaming in a real browser: a generated sentence shows as soon as it is verified.

The scripted model (tests/test_generation.py) writes one sentence, then pauses
before the next; the chat page and the widget must show the first one during
the pause, and the whole answer with its sources after.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_generation import QUESTION, Script, passage_with, scripted_app

from rag.pipeline import Pipeline
from rag.serve.server import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PAUSE_S = 4.0

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"Debian Chromium not found at {CHROMIUM} (`make browser` installs it)")


def two_parts(passages):
    n, m = passage_with(passages, "2,400"), passage_with(passages, "No strike date")
    return (f"About 2,400 therapists are voting on a one-day strike [{n}]. No ",
            f"strike date has been set [{m}].")


@pytest.fixture(scope="module")
def site(corpus_settings, embedder, serve_app):
    script = Script()
    script.reply, script.pause_s = two_parts, PAUSE_S
    with serve_app(scripted_app(script)) as model:
        settings = replace(corpus_settings, llm_url=model.url + "/v1", llm_timeout_s=30, rate_limit_per_minute=1000)
        with serve_app(create_app(settings, Pipeline(settings, embedder=embedder))) as app:
            yield app


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser.new_page(viewport={"width": 1200, "height": 860})
        browser.close()


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_widget_shows_each_verified_sentence_before_the_answer_is_done(page, site):
    page.goto(site.url + "/widget")
    page.locator("#question").fill(QUESTION)
    page.locator("#question").press("Enter")
    bot = page.locator(".msg.bot").nth(1)
    streaming = bot.locator(".text.streaming")
    first = wait_for(lambda: streaming.count() and streaming.inner_text(), PAUSE_S + 20, "the first sentence")
    assert "2,400" in first and "No strike date" not in first
    assert bot.locator(".rate").count() == 0  # the answer is not finished yet
    assert streaming.locator("a.cite").first.get_attribute("href").startswith("/source/")
    bot.locator(".rate").wait_for(timeout=(PAUSE_S + 20) * 1000)
    text = bot.locator(".text").inner_text()
    assert "2,400" in text and "No strike date has been set." in text
    assert bot.locator(".sources li").count() == 2


def test_chat_page_shows_each_verified_sentence_before_the_answer_is_done(page, site):
    page.goto(site.url)
    page.locator("#question textarea").wait_for()
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#question textarea").press("Enter")
    row = page.locator("#chat .bot-row").first
    first = wait_for(lambda: row.count() and "2,400" in row.inner_text() and row.inner_text(),
                     PAUSE_S + 20, "the first sentence")
    assert "No strike date" not in first and "Sources" not in first
    wait_for(lambda: "Sources" in row.inner_text(), PAUSE_S + 20, "the finished answer")
    assert "No strike date has been set." in row.inner_text()
