"""The serving flows every front end shares, written once: the JSON API, the streaming API and
the chat page all ask and rate through a Desk.

    ask:  rate limit ─▶ pipeline ─▶ record (an unanswered question) ─▶ a fresh answer_id
    rate: rate limit ─▶ the server's own privacy check ─▶ one vote per answer_id
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import DatabaseUnavailableError
from ..pipeline import Pipeline
from ..types import Answer, Kind, Turn
from .feedback import FeedbackStore
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)


class _Peer(Protocol):
    host: str


class _Request(Protocol):  # Starlette's and Gradio's requests alike
    client: _Peer | None


def client_key(request: _Request | None) -> str:
    """Who is asking, for the rate limit: the socket's peer, never X-Forwarded-For, which anyone
    can set to wear many faces. Behind a proxy listed in RAG_TRUSTED_PROXIES, uvicorn puts the real
    client here (see server.uvicorn_options)."""
    return request.client.host if request is not None and request.client else "unknown"


@dataclass(frozen=True)
class Answered:
    """An answer as shown to a member, with the id a like or dislike of it must carry."""

    answer: Answer
    answer_id: str

    def to_json(self) -> dict:
        return {**self.answer.to_json(), "answer_id": self.answer_id}


class Desk:
    def __init__(self, pipeline: Pipeline, store: FeedbackStore, limiter: RateLimiter):
        self.pipeline = pipeline
        self.store = store
        self.limiter = limiter

    def ask(self, question: str, history: Sequence[Turn], client: str) -> Answered:
        self.limiter.check(client)
        return self._answered(self.pipeline.ask(question, history))

    def stream(self, question: str, history: Sequence[Turn], client: str) -> Iterator:
        """As ask(), but each generated sentence (generation.Sentence) as soon as it is verified,
        the Answered last. The rate limit and the question's own checks raise at the first next()."""
        self.limiter.check(client)
        for event in self.pipeline.stream(question, history):
            yield self._answered(event) if isinstance(event, Answer) else event

    def rate(self, client: str, liked: bool, question: str, answer: str, citations: list[dict],
             kind: str, answer_id: str) -> None:
        self.limiter.check("feedback:" + client)
        # The server reads the text itself: a client's "kind" is not trusted to keep crisis text out.
        kind = self.pipeline.private_kind(question, answer) or Kind(kind)
        self.store.record_rating(liked, question, answer, citations, kind=kind, answer_id=answer_id)

    def _answered(self, answer: Answer) -> Answered:
        try:
            self.store.record_answer(answer)
        except DatabaseUnavailableError as exc:  # the member still gets the answer; one question goes unkept
            log.warning("an unanswered question was not kept: %s", exc)
        return Answered(answer, self.store.answer_id())
