"""Regenerate docs/screenshot-*.png: the chat with an answer, the widget on a sample union page, and
the public list of documents.

    .venv/bin/python scripts/screenshots.py      (needs an index: `make index`)

Runs the real app on a free loopback port and drives Debian's Chromium with Playwright.
A docs tool, not a benchmark, so it lives in scripts/ rather than rag/evaluate/.
"""
from __future__ import annotations

import functools
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rag.config import ROOT, Settings, offline_environment  # rag comes from the venv's editable install

DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
QUESTION = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
UNION_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Mental Health Clinicians United</title>
<style>body{{margin:0;font:18px/1.6 Georgia,serif;background:#f5f0e6;color:#222}}
header{{background:#12355b;color:#fff;padding:28px 32px}} h1{{margin:0;font-size:34px}}
main{{max-width:640px;margin:28px 32px}} button{{background:#12355b;color:#fff;border:0;padding:10px 16px;font-size:16px}}</style>
</head><body><header><h1>Mental Health Clinicians United</h1><p>Fighting for the care our patients deserve</p></header>
<main><h2>Strike updates</h2><p>Our members are voting on a strike authorization. Read the latest news, find a
picket line near you, and ask the Strike Q&amp;A bot anything about the strike: it answers from the union's own
documents and shows you where each answer comes from.</p><button>Sign the petition</button></main>
<script src="{bot}/widget.js" data-title="Strike Q&amp;A" data-greeting="Hi! Ask me anything about the strike."
 data-color="#12355b" data-position="bottom-right" async></script></body></html>"""


def main() -> int:
    offline_environment()
    import uvicorn
    from playwright.sync_api import sync_playwright

    from rag.serve.server import create_app

    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = _static_site(Path(tmp))
        settings = replace(Settings.from_env(), data_dir=Path(tmp) / "data", allowed_origins=(site,))
        bot = _serve(uvicorn, create_app(settings))
        (Path(tmp) / "index.html").write_text(UNION_PAGE.format(bot=bot), encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            _chat(browser, bot, {"width": 1100, "height": 820}, DOCS / "screenshot-chat.png")
            _chat(browser, bot, {"width": 390, "height": 844}, DOCS / "screenshot-phone.png")
            _widget(browser, f"{site}/index.html", DOCS / "screenshot-widget.png")
            _documents(browser, bot, DOCS / "screenshot-documents.png")
            browser.close()
    print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in sorted(DOCS.glob('screenshot-*.png')))}")
    return 0


def _chat(browser, bot: str, viewport: dict, out: Path) -> None:
    page = browser.new_page(viewport=viewport, device_scale_factor=2 if viewport["width"] < 500 else 1)
    page.goto(bot)
    box = page.locator("#question textarea")
    box.fill(QUESTION)
    box.press("Enter")
    page.locator("#chat .bot-row", has_text="Sources").wait_for()
    page.wait_for_timeout(800)
    page.locator("#question textarea").blur()
    page.screenshot(path=str(out))
    page.close()


def _documents(browser, bot: str, out: Path) -> None:
    page = browser.new_page(viewport={"width": 900, "height": 560})
    page.goto(f"{bot}/documents")
    page.locator("table").wait_for()
    page.screenshot(path=str(out), full_page=True)
    page.close()


def _widget(browser, url: str, out: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(url)
    page.locator("strike-qa-widget").locator(".launcher").click()
    frame = page.frame_locator("strike-qa-widget iframe")
    frame.locator("#question").fill(QUESTION)
    frame.locator("#question").press("Enter")
    frame.locator(".msg.bot .sources").wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=str(out))
    page.close()


def _serve(uvicorn, app) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _static_site(folder: Path) -> str:
    handler = functools.partial(_Quiet, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
