"""The real pages in a real browser: Debian's Chromium, driven by Playwright, never a downloaded build.

The app runs on one loopback port; a "union site" on another embeds the widget
(its origin is allowed), and a "foreign site" on a third tries to (it is not).
Every test also checks that nothing was fetched from beyond loopback.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rag.serve.feedback import open_store
from rag.serve.server import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
APPOINTMENTS = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
XSS = ["<img src=x onerror=window.__pwned=1>", "<script>window.__pwned=1</script>"]
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"Debian Chromium not found at {CHROMIUM} (`make browser` installs it)")

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mental Health Clinicians United</title>
<style>
  body {{ margin: 0; font: 18px/1.6 Georgia, serif; background: #f5f0e6; color: #222; }}
  header {{ background: #12355b; color: #fff; padding: 24px; }}
  h1 {{ margin: 0; font-size: 34px; }}
  main {{ max-width: 720px; margin: 24px auto; padding: 0 16px; }}
  button {{ background: #12355b; color: #fff; border: 0; padding: 10px 16px; font-size: 16px; }}
  div, iframe {{ border: 5px dashed red; }}  /* a careless site rule that must not reach the widget */
</style></head>
<body><header><h1>Mental Health Clinicians United</h1><p>Fighting for the care our patients deserve</p></header>
<main><h2>Strike updates</h2>
<p>Members are voting on a strike authorization. Find a picket line near you, or ask our Strike Q&amp;A bot.</p>
<button id="petition">Sign the petition</button></main>
{script}
</body></html>
"""
GREETING = "Welcome, MHCU member! Ask me about the strike."
SCRIPT_TAG = ('<script src="{bot}/widget.js" data-title="Strike Q&amp;A" data-greeting="' + GREETING + '"'
              ' data-color="#12355b" data-position="bottom-right" async></script>')
# What the host page looks like; none of it may change when the widget arrives.
HOST_STYLE = """() => {
  const pick = (sel, props) => { const s = getComputedStyle(document.querySelector(sel));
    return props.map(p => s.getPropertyValue(p)).join('|'); };
  return { body: pick('body', ['font-family', 'font-size', 'background-color', 'color', 'margin']),
           h1: pick('h1', ['font-size', 'color', 'font-family']),
           main: pick('main', ['max-width', 'margin-left', 'border-top-style']),
           button: pick('#petition', ['background-color', 'color', 'padding-top', 'font-size']),
           globals: Object.keys(window).sort() };
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def requests_seen() -> list[str]:
    return []


@pytest.fixture
def context(browser, requests_seen):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.on("request", lambda r: requests_seen.append(r.url))  # iframes included
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture(scope="module")
def union_page(union_site, live_server) -> dict[str, str]:
    script = SCRIPT_TAG.format(bot=live_server.url)
    return {"with_widget": union_site.page("index.html", HOST_PAGE.format(script=script)),
            "without_widget": union_site.page("plain.html", HOST_PAGE.format(script=""))}


def assert_loopback_only(urls: list[str]) -> None:
    remote = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
              and urlsplit(u).hostname not in ("127.0.0.1", "localhost")]
    assert urls and not remote, f"requests left the machine: {remote}"


def open_chat(page, url: str) -> None:
    page.goto(url)
    page.locator("#question textarea").wait_for()


def ask_in_chat(page, question: str):
    """Type a question in the Gradio chat and wait for its answer (the newest bot message)."""
    before = page.locator("#chat .bot-row").count()
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    answer = page.locator("#chat .bot-row").nth(before)
    answer.wait_for()
    wait_until_settled(answer)
    return answer


def wait_until_settled(locator, quiet_s: float = 0.5, timeout_s: float = 20) -> None:
    """Streaming ends when the message stops changing (and is more than the placeholder)."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = locator.inner_text().strip()
        if text != last:
            last, since = text, time.monotonic()
        elif text not in ("", "…") and time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)
    raise AssertionError(f"the answer never settled; last seen: {last!r}")


def open_widget(page):
    launcher = page.locator("strike-qa-widget").locator(".launcher")
    launcher.click()
    frame = page.frame_locator("strike-qa-widget iframe")
    frame.locator(".msg.bot").first.wait_for()  # the greeting, sent over by the host page
    return launcher, frame


def ask_in_widget(frame, question: str):
    before = frame.locator(".msg.bot").count()
    frame.locator("#question").fill(question)
    frame.locator("#question").press("Enter")
    answer = frame.locator(".msg.bot").nth(before)
    answer.locator(".rate").wait_for(timeout=15_000)  # rating buttons come with a finished answer
    return answer


def test_chat_answers_with_numbered_citations_and_sources(page, live_server, requests_seen):
    open_chat(page, live_server.url)
    assert page.locator("#chat button.example").count() == 4
    assert "call or text 988" in page.locator("#intro").inner_text()
    listed = page.locator("#documents a", has_text="documents")  # a count linking to the list, not every title
    assert "Another Kaiser Strike?" not in page.locator("#documents").inner_text()
    documents = page.context.new_page()
    documents.goto(live_server.url + listed.get_attribute("href"))
    assert "Another Kaiser Strike?" in documents.locator("table").inner_text()
    documents.close()
    # Watch the answer arrive: a placeholder first, then the text.
    page.evaluate("""() => { window.__seen = new Set(); new MutationObserver(() => {
        const rows = document.querySelectorAll('#chat .bot-row');
        if (rows.length) window.__seen.add(rows[rows.length - 1].innerText.trim()); })
      .observe(document.querySelector('#chat'), {subtree: true, childList: true, characterData: true}); }""")

    answer = ask_in_chat(page, APPOINTMENTS)
    text = answer.inner_text()
    assert "111,803" in text and "Sources" in text and "Open passage" in text
    assert page.evaluate("window.__seen.size") >= 2  # it streamed in, not all at once
    cite = answer.locator("a", has_text="1").first
    href = cite.get_attribute("href")
    assert href.startswith("/source/another-kaiser-strike-vote.txt?start=")

    page.goto(live_server.url + href)
    passage = page.locator("mark#passage")
    assert "111,803" in passage.inner_text()
    assert passage.evaluate("m => { const r = m.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }")
    assert_loopback_only(requests_seen)


def test_chat_follow_up_and_dislike_is_stored(page, live_server, corpus_settings, requests_seen):
    open_chat(page, live_server.url)
    page.locator("#chat button.example", has_text="Molly Parsons").click()
    wait_until_settled(page.locator("#chat .bot-row", has_text="Sources"))
    follow_up = ask_in_chat(page, "What did she say?")
    assert "inappropriate bookings" in follow_up.inner_text()

    page.locator("#chat button[aria-label='Dislike']").last.click()
    store = open_store(corpus_settings)
    for _ in range(50):
        if any(r.question == "What did she say?" for r in store.ratings("dislike")):
            break
        time.sleep(0.1)
    disliked = next(r for r in store.ratings("dislike") if r.question == "What did she say?")
    assert "inappropriate bookings" in disliked.answer and disliked.citations
    assert_loopback_only(requests_seen)


def test_chat_shows_typed_html_as_text_and_never_runs_it(page, live_server, requests_seen):
    open_chat(page, live_server.url)
    for attack in XSS:
        ask_in_chat(page, attack)
    shown = page.locator("#chat .user-row").all_inner_texts()
    assert [s.strip() for s in shown] == XSS
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#chat .message-content img, #chat .message-content script").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 1200
    assert_loopback_only(requests_seen)


def test_chat_says_so_when_asking_too_fast(page, serve_app, corpus_settings, pipeline, tmp_path, requests_seen):
    settings = replace(corpus_settings, rate_limit_per_minute=1, data_dir=tmp_path)
    with serve_app(create_app(settings, pipeline)) as server:
        open_chat(page, server.url)
        assert "Molly Parsons" in ask_in_chat(page, "Who is Molly Parsons?").inner_text()
        assert "too quickly" in ask_in_chat(page, "Who is Shay Loftus?").inner_text()
        page.goto("about:blank")  # hang up before the server stops
    assert_loopback_only(requests_seen)


def test_widget_on_the_union_site_answers_without_touching_the_page(page, union_page, requests_seen):
    page.goto(union_page["without_widget"])
    plain = page.evaluate(HOST_STYLE)
    page.goto(union_page["with_widget"])
    page.locator("strike-qa-widget").wait_for(state="attached")

    launcher, frame = open_widget(page)
    assert launcher.get_attribute("aria-expanded") == "true"
    assert frame.locator(".msg.bot").first.inner_text() == GREETING  # the host page's data-greeting
    src = page.evaluate("document.querySelector('strike-qa-widget').shadowRoot.querySelector('iframe').src")
    assert "greeting" not in src  # not in the URL: a link could not set it
    answer = ask_in_widget(frame, APPOINTMENTS)
    assert "111,803" in answer.locator(".text").inner_text()
    # one [n] link per citation, drawn from the answer's pieces
    assert answer.locator(".text a.cite").count() == answer.locator(".sources li").count() >= 1
    source = answer.locator(".sources a").first
    assert source.inner_text() == "Another Kaiser Strike?"
    assert source.get_attribute("href").startswith("/source/another-kaiser-strike-vote.txt?start=")
    assert source.get_attribute("target") == "_blank"

    after = page.evaluate(HOST_STYLE)
    assert set(after.pop("globals")) - set(plain.pop("globals")) == {"StrikeQA"}
    assert after == plain
    border = page.evaluate("""() => getComputedStyle(document.querySelector('strike-qa-widget')
        .shadowRoot.querySelector('iframe')).borderTopStyle""")
    assert border == "none"  # the site's `iframe { border: dashed }` did not get in

    page.keyboard.press("Escape")  # focus is inside the chat frame: it asks the widget to close
    panel = page.locator("strike-qa-widget").locator(".panel")
    panel.wait_for(state="hidden")
    assert launcher.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.querySelector('strike-qa-widget').shadowRoot.activeElement.className") == "launcher"
    page.keyboard.press("Enter")  # the focused launcher opens it again from the keyboard
    panel.wait_for(state="visible")
    assert_loopback_only(requests_seen)


def test_widget_and_chat_say_which_misspelt_words_they_read(page, union_page, live_server, requests_seen):
    typo = "How many therapy apointments did Kaiser cancel during the 2022 strke?"
    page.goto(union_page["with_widget"])
    _, frame = open_widget(page)
    answer = ask_in_widget(frame, typo)
    assert answer.locator(".corrected").inner_text() == "Read “apointments” as “appointments”, “strke” as “strike”."
    assert "111,803" in answer.locator(".text").inner_text()

    open_chat(page, live_server.url)
    reply = ask_in_chat(page, typo).inner_text()
    assert "Read “apointments” as “appointments”" in reply and "111,803" in reply
    assert_loopback_only(requests_seen)


def test_widget_is_full_screen_on_a_phone_and_shows_html_as_text(browser, union_page, requests_seen):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.on("request", lambda r: requests_seen.append(r.url))
    page = context.new_page()
    try:
        page.goto(union_page["with_widget"])
        page.locator("strike-qa-widget").wait_for(state="attached")
        _, frame = open_widget(page)
        box = page.locator("strike-qa-widget").locator(".panel").bounding_box()
        assert box == {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
        for attack in XSS:
            ask_in_widget(frame, attack)
        assert frame.locator(".msg.user").all_inner_texts() == XSS
        assert frame.locator(".log img, .log script").count() == 0
        widget_frame = next(f for f in page.frames if f.url.split("?")[0].endswith("/widget"))
        assert widget_frame.evaluate("window.__pwned") is None
        assert page.evaluate("window.__pwned") is None
    finally:
        context.close()
    assert_loopback_only(requests_seen)


def test_other_sites_cannot_frame_the_widget_or_call_the_api(page, foreign_site, union_page, live_server,
                                                             requests_seen):
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.goto(foreign_site.page("index.html", HOST_PAGE.format(script=SCRIPT_TAG.format(bot=live_server.url))))
    page.locator("strike-qa-widget").wait_for(state="attached")
    page.locator("strike-qa-widget").locator(".launcher").click()
    page.wait_for_function("() => document.querySelector('strike-qa-widget').shadowRoot.querySelector('iframe')")
    page.wait_for_timeout(1000)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed and all(f.url.startswith("chrome-error://") for f in framed)  # refused, not loaded
    assert any("frame-ancestors" in line for line in console)

    call_api = f"""async () => {{
      try {{ const r = await fetch('{live_server.url}/api/ask', {{method: 'POST',
               headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{question: 'Who is Molly Parsons?'}})}});
             return (await r.json()).kind; }}
      catch (e) {{ return 'blocked'; }} }}"""
    assert page.evaluate(call_api) == "blocked"  # no CORS allow header for this origin
    page.goto(union_page["without_widget"])
    assert page.evaluate(call_api) == "answer"  # the listed union site may call the API
    assert_loopback_only(requests_seen)


def test_a_link_cannot_set_the_widget_greeting_and_votes_count_once(page, live_server, corpus_settings,
                                                                    requests_seen):
    page.goto(live_server.url + "/widget?greeting=Your+strike+pay+has+been+cancelled.+Call+555-0100.")
    first = page.locator(".msg.bot").first
    first.wait_for()
    assert "cancelled" not in first.inner_text() and "Ask me about the strike" in first.inner_text()

    answer = ask_in_widget(page, APPOINTMENTS)
    answer.locator("button[aria-label='Not helpful']").click()
    answer.locator(".thanks", has_text="Thanks for the feedback.").wait_for()
    assert answer.locator("button[aria-label='Helpful']").is_disabled()
    latest = open_store(corpus_settings).ratings("dislike", limit=1)[0]
    assert latest.question == APPOINTMENTS and "111,803" in latest.answer
    assert_loopback_only(requests_seen)
