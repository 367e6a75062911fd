"""The JSON API: ask, rate an answer, health. Every error is ``{"error": "..."}``, never a traceback."""
from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from ..errors import (
    DatabaseUnavailableError,
    IndexCorruptError,
    IndexNotFoundError,
    InvalidFeedbackError,
    InvalidQuestionError,
    RagError,
    RateLimitedError,
)
from ..types import Kind
from ..types import Turn as ChatTurn
from . import feedback as fb
from .desk import Desk, client_key

log = logging.getLogger(__name__)
MAX_TURNS = 40  # the pipeline only looks back a few turns; this bounds the request
MAX_TURN_CHARS = 20_000


def _encodable(text: str) -> str:
    # JSON may carry a lone UTF-16 surrogate ("\ud800"): a str Python holds
    # but cannot encode, which would fail later, deep in a response.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an invalid character (a lone surrogate)") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]


class Turn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: Text = Field(max_length=MAX_TURN_CHARS)

    def turn(self) -> ChatTurn:
        return ChatTurn(self.role, self.content)


class AskRequest(BaseModel):
    # The pipeline checks the question itself (empty, too long, unencodable)
    # with a message written for people; here only its type is checked.
    question: StrictStr
    history: list[Turn] = Field(default_factory=list, max_length=MAX_TURNS)

    def turns(self) -> tuple[ChatTurn, ...]:
        return tuple(t.turn() for t in self.history)


class CitationIn(BaseModel):
    """A citation as /api/ask returned it; only these fields are kept."""
    model_config = ConfigDict(extra="ignore")
    n: StrictInt = Field(ge=0, le=1000)
    doc_id: Text = Field(max_length=fb.MAX_NAME_CHARS)
    title: Text = Field("", max_length=fb.MAX_NAME_CHARS)
    page: StrictInt | None = Field(None, ge=0)
    chunk_id: Text = Field("", max_length=fb.MAX_NAME_CHARS)
    quote: Text = Field(max_length=fb.MAX_QUOTE_CHARS)
    start: StrictInt = Field(ge=0)
    end: StrictInt = Field(ge=0)
    section: Text = Field("", max_length=fb.MAX_NAME_CHARS)
    date: Text | None = Field(None, max_length=20)
    ocr: StrictBool = False  # the quoted page was read by OCR


class RatingRequest(BaseModel):
    liked: StrictBool
    answer_id: StrictStr = Field(max_length=100)  # from the /api/ask reply: one vote per answer
    question: Text = Field(max_length=fb.MAX_QUESTION_CHARS)
    answer: Text = Field(max_length=fb.MAX_ANSWER_CHARS)
    kind: Kind = Kind.ANSWER
    citations: list[CitationIn] = Field(default_factory=list, max_length=fb.MAX_CITATIONS)


_ERROR = {"content": {"application/json": {"example": {"error": "Please type a question."}}}}
ASK_RESPONSES = {
    200: {"description": "Answer.to_json(): the answer, and for each [n] in it the exact quoted span",
          "content": {"application/json": {"example": {
              "question": "Has a strike date been set?", "answer": "No strike date has been set. [1]",
              "refused": False, "kind": "answer",
              "citations": [{"n": 1, "doc_id": "another-kaiser-strike-vote.txt", "title": "Another Kaiser Strike?",
                             "page": None, "chunk_id": "another-kaiser-strike-vote.txt:0",
                             "quote": "No strike date has been set.", "start": 652, "end": 680}],
              "retrieved": [{"doc_id": "another-kaiser-strike-vote.txt",
                             "chunk_id": "another-kaiser-strike-vote.txt:0", "score": 1.0}],
              "related": [], "latency_ms": 41.2, "mode": "extractive", "dropped": 0}}}},
    400: {"description": "Empty or too long question", **_ERROR},
    422: {"description": "Malformed JSON or wrong field types", **_ERROR},
    429: {"description": "Too many questions from this client in the last minute", **_ERROR},
    503: {"description": "The index is missing or unreadable", **_ERROR},
}


def api_router(desk: Desk) -> APIRouter:
    router = APIRouter()

    # Plain `def` endpoints run in FastAPI's threadpool, so slow questions
    # never block the event loop and requests are answered concurrently.
    @router.post("/api/ask", summary="Answer a question from the strike documents, with citations",
                 responses=ASK_RESPONSES)
    def ask(body: AskRequest, request: Request):
        return desk.ask(body.question, body.turns(), client_key(request)).to_json()

    @router.post("/api/feedback", summary="Record a like or dislike of an answer (one vote per answer_id)")
    def feedback(body: RatingRequest, request: Request):
        desk.rate(client_key(request), body.liked, body.question, body.answer,
                  [c.model_dump() for c in body.citations], body.kind, body.answer_id)
        return {"ok": True}

    @router.get("/api/contact", summary="The person to ask when the documents don't say, or null")
    def contact():
        contact = desk.pipeline.contact
        return {"contact": contact.to_json() if contact else None}

    @router.get("/healthz", summary="Index status")
    def healthz():
        manifest = desk.pipeline.index.manifest
        return {"status": "ok", "documents": len(manifest.documents), "chunks": manifest.chunks,
                "built_at": manifest.built_at}

    return router


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RagError, _rag_error)
    app.add_exception_handler(Exception, _unexpected)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    return JSONResponse({"error": _describe(errors), "detail": _plain(errors)}, status_code=422)


def _describe(errors) -> str:
    """One sentence a person can act on, from pydantic's error list."""
    if not errors:
        return "Invalid request."
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "missing":
        return f"Missing field: {where}." if where else "The request needs a JSON body."
    return f"Invalid {where or 'request'}: {first.get('msg', 'invalid value')}."


def _plain(errors) -> list[dict]:
    # pydantic puts the raw exception in "ctx"; it is not JSON and says nothing new.
    return [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # FastAPI's own refusals (a body that is not UTF-8, JSON nested too deep,
    # a wrong method) in our documented shape rather than {"detail": ...}.
    message = exc.detail if isinstance(exc.detail, str) else "Invalid request."
    if message == "There was an error parsing the body":
        message = "The request body could not be read as JSON (invalid UTF-8, or nested too deeply)."
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
    if isinstance(exc, DatabaseUnavailableError):  # where the database lives is not for members' eyes
        log.warning("%s on %s", exc, request.url.path)
        return JSONResponse({"error": "Your vote could not be saved just now (our database is unavailable); "
                                      "please try again in a few minutes."}, status_code=503,
                            headers={"Retry-After": "60"})
    if isinstance(exc, RateLimitedError):
        return JSONResponse({"error": str(exc)}, status_code=429,
                            headers={"Retry-After": str(max(1, round(exc.wait_s)))})
    if isinstance(exc, (InvalidQuestionError, InvalidFeedbackError)):
        status = 400
    elif isinstance(exc, (IndexNotFoundError, IndexCorruptError)):
        status = 503
    else:
        status = 500
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return JSONResponse({"error": "Something went wrong on our side; please try again."}, status_code=500)
