"""The staff console in a real browser (Debian's Chromium, as tests/test_browser.py drives it): sign in,
upload a PDF, post an update, see both answered in the chat with their date, edit a date, remove a
document and see the chat stop citing it, see an unanswered question grouped with its count, sign out.
Screenshots of each page go to a temporary folder, or to docs/admin-*.png with
SCREENSHOTS=docs (how the ones in docs/ were made), so a test run leaves the checkout as it was."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pdfs import text_pdf
from tests.test_admin import PASSWORD, server, settings  # noqa: F401 (fixtures)
from tests.test_browser import (CHROMIUM, ask_in_chat, assert_loopback_only, browser, context,  # noqa: F401
                                open_chat, page, requests_seen)

DOCS = Path(__file__).resolve().parent.parent / "docs"
RALLY = "When does the picket rally at the Oakridge hall start?"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian Chromium not found at {CHROMIUM}")


@pytest.fixture
def shots(tmp_path) -> Path:
    return DOCS if os.environ.get("SCREENSHOTS") == "docs" else tmp_path


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"admin-{name}.png"), full_page=True)


def wait_up_to_date(page) -> None:
    """The page polls the re-index and reloads when it ends; then the chat's build is the new one."""
    page.locator("#reindex[data-state=done]").wait_for(timeout=240_000)
    page.wait_for_timeout(1200)  # the pipeline looks for a new build once a second


def test_the_whole_console_flow_in_a_browser(page, server, requests_seen, shots, tmp_path):  # noqa: F811
    page.goto(server.url + "/admin")
    assert page.url.endswith("/admin/sign-in")
    shot(page, shots, "sign-in")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "Wrong name or password." in page.inner_text("main")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.locator("#documents").wait_for()

    pdf = text_pdf(tmp_path / "Oakridge rally.pdf", [
        "Oakridge Rally Notice\n\nThe picket rally at the Oakridge hall starts on Thursday at 6 pm.\n"
        "Bring signs, water and a friend.\nParking is on Main Street."])
    page.set_input_files("#upload input[type=file]", str(pdf))
    page.click("#upload button[type=submit]")
    assert "Added Oakridge-rally.pdf." in page.inner_text("main")
    page.fill("#post input[name=title]", "Strike update: picket schedule")
    page.fill("#post input[name=date]", "2026-09-14")
    page.fill("#post textarea[name=text]", "Picket shifts at the library now start at 7 am.\nNight shifts are cancelled.")
    page.click("#post button[type=submit]")
    assert "Posted 2026-09-14-strike-update-picket-schedule.md." in page.inner_text("main")
    wait_up_to_date(page)
    table = page.inner_text("#documents")
    assert "Oakridge Rally Notice" in table and "Strike update: picket schedule" in table and "Sep 14, 2026" in table
    shot(page, shots, "documents")

    chat = page.context.new_page()
    open_chat(chat, server.url)
    answer = ask_in_chat(chat, RALLY).inner_text()
    assert "Thursday at 6 pm" in answer and "Oakridge Rally Notice" in answer
    answer = ask_in_chat(chat, "When do picket shifts at the library start?").inner_text()
    assert "7 am" in answer and "Sep 14, 2026" in answer

    row = page.locator("#documents tr", has_text="Oakridge Rally Notice")
    row.locator("summary").click()
    row.locator("input[name=date]").fill("2026-09-11")
    row.locator("button", has_text="Save").click()
    wait_up_to_date(page)
    assert "Sep 11, 2026" in page.locator("#documents tr", has_text="Oakridge Rally Notice").inner_text()
    open_chat(chat, server.url)
    assert "Sep 11, 2026" in ask_in_chat(chat, RALLY).inner_text()

    row = page.locator("#documents tr", has_text="Oakridge Rally Notice")
    row.locator("summary").click()
    row.locator("button", has_text="Remove").click()
    wait_up_to_date(page)
    assert "Oakridge Rally Notice" not in page.inner_text("#documents")
    assert "Oakridge Rally Notice" in page.inner_text("ul.trash")
    open_chat(chat, server.url)
    gone = ask_in_chat(chat, RALLY).inner_text()
    assert "Thursday at 6 pm" not in gone and "Oakridge Rally Notice" not in gone

    for q in ("Do retirees keep their vision plan?", "do retirees keep their VISION plan"):
        ask_in_chat(chat, q)
    page.click("text=What members ask")
    row = page.locator("#questions tr", has_text="vision plan")
    assert row.count() == 1 and row.locator(".count").inner_text() == "2"
    shot(page, shots, "questions")
    page.click("text=Audit log")
    log = page.inner_text("#audit")
    assert all(w in log for w in ("upload", "post", "edit", "remove", "re-index"))
    shot(page, shots, "audit")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.click("text=Documents")
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => !e.closest('.table'))
        .filter(e => e.getBoundingClientRect().right > innerWidth + 1).map(e => e.tagName + '.' + e.className)""")
    assert not wide and page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), wide
    shot(page, shots, "documents-phone")
    page.click("button:has-text('Sign out')")
    assert page.url.endswith("/admin/sign-in")
    page.goto(server.url + "/admin/documents")
    assert page.url.endswith("/admin/sign-in")
    assert_loopback_only(requests_seen)
