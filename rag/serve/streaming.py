"""POST /api/ask/stream: the answer as NDJSON events, each generated sentence as soon as it is verified.

    {"type": "sentence", "text": "...", "citations": [{n, doc_id, ..., quote, start, end}]}   zero or more
    {"type": "answer", "answer": Answer.to_json() + answer_id}                                 always last

The final answer is the truth: it may differ from the sentences streamed before
it (the model failed half way and the extractive answer stands instead).
Errors a member can fix (empty question, too fast) are plain JSON errors with
their status, as on /api/ask, because the first event is computed before replying.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .api import AskRequest
from .desk import Answered, Desk, client_key


def stream_router(desk: Desk) -> APIRouter:
    router = APIRouter()

    @router.post("/api/ask/stream", summary="Answer a question, streaming verified sentences as NDJSON",
                 response_class=StreamingResponse,
                 responses={200: {"content": {"application/x-ndjson": {}},
                                  "description": "sentence events, then one answer event"}})
    def ask_stream(body: AskRequest, request: Request):
        events = desk.stream(body.question, body.turns(), client_key(request))
        first = next(events)  # raises InvalidQuestionError etc. here, while a status can still be set
        return StreamingResponse(_lines(first, events), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router


def _lines(first, events: Iterator) -> Iterator[str]:
    for event in _chain(first, events):
        if isinstance(event, Answered):
            yield json.dumps({"type": "answer", "answer": event.to_json()}, ensure_ascii=False) + "\n"
        else:
            yield json.dumps({"type": "sentence", "text": event.text,
                              "citations": [asdict(c) for c in event.citations]}, ensure_ascii=False) + "\n"


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest
