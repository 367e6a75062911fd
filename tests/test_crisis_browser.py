"""The safety net in a real browser: a crisis verdict on a question the documents answer shows the
crisis response first and the documents' answer under it, in the widget and in the chat."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_browser import (CHROMIUM, ask_in_chat, ask_in_widget, assert_loopback_only, browser,  # noqa: F401
                                context, open_chat, open_widget, page, requests_seen, union_page)
from tests.test_crisis import CRISIS_AND_QUESTION

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


def test_widget_and_chat_show_the_crisis_response_then_the_answer(page, union_page, live_server, requests_seen):
    page.goto(union_page["with_widget"])
    _, frame = open_widget(page)
    answer = ask_in_widget(frame, CRISIS_AND_QUESTION)
    shown = answer.locator(".text").inner_text()
    assert "988" in shown and shown.index("988") < shown.index("strike vote")  # the answer under it
    assert answer.locator(".under a.cite").count() == answer.locator(".sources li").count() >= 1

    open_chat(page, live_server.url)
    reply = ask_in_chat(page, CRISIS_AND_QUESTION).inner_text()
    assert "988" in reply and reply.index("988") < reply.index("strike vote")
    assert_loopback_only(requests_seen)
