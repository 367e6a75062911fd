"""What members thought of answers, and what they asked that the documents don't cover.

Kept in the database of store.py (SQLite in the data folder, or PostgreSQL with RAG_DATABASE_URL).
Every write is one transaction, so concurrent web workers never lose a record and a failure
leaves nothing half-written. Stored: question, answer, citations, time. Never stored: who asked
(no IPs, no session ids), and never the text of crisis or medical messages.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from ..config import Settings
from ..errors import InvalidFeedbackError
from ..types import SENSITIVE, Answer, Kind
from .store import Database, open_database

# What one rating may hold: a member's question and our answer are far shorter;
# anything longer is cut, so no request can grow the database without bound.
MAX_QUESTION_CHARS = 4_000
MAX_ANSWER_CHARS = 8_000
MAX_CITATIONS = 10
MAX_QUOTE_CHARS = 2_000
MAX_NAME_CHARS = 300  # doc ids, titles, chunk ids
# C0/C1 controls (terminal escapes, carriage returns) and bidi overrides:
# stored text is printed to a terminal by `rag feedback`. Newlines and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_CITATION_FIELDS = {"n": int, "doc_id": str, "title": str, "page": int, "chunk_id": str, "quote": str,
                    "start": int, "end": int, "section": str, "date": str, "ocr": bool}
_NOT_KEPT = "(not stored: {kind} message)"


@dataclass(frozen=True)
class Rating:
    created_at: str
    rating: str  # "like" | "dislike"
    kind: str
    question: str
    answer: str
    citations: list[dict]


@dataclass(frozen=True)
class Unanswered:
    created_at: str
    question: str


class FeedbackStore:
    """The feedback tables; safe to use from many threads, processes and machines at once."""

    def __init__(self, db: Database, retention_days: int):
        self.db = db
        self.path = db.path  # the SQLite file, or None on PostgreSQL
        self.retention_days = retention_days  # rows older than this are deleted; 0 stores nothing
        with db.begin() as conn:
            conn.execute(text("INSERT INTO meta (key, value) VALUES ('vote_key', :key) ON CONFLICT (key) DO NOTHING"),
                         {"key": secrets.token_hex(32)})
            key = conn.execute(text("SELECT value FROM meta WHERE key = 'vote_key'")).scalar_one()
        self._key = bytes.fromhex(key)
        self._swept = 0.0
        self.forget_old()

    def forget_old(self) -> int:
        """Delete what is older than the retention period (at most once an hour per process,
        whenever the store is opened or written); the number of rows deleted."""
        if time.monotonic() - self._swept < 3600 and self._swept:
            return 0
        self._swept = time.monotonic()
        cutoff = (datetime.now(timezone.utc) - timedelta(days=self.retention_days)).isoformat(timespec="seconds")
        with self.db.begin() as conn:
            return sum(conn.execute(text(f"DELETE FROM {table} WHERE created_at < :cutoff"),
                                    {"cutoff": cutoff}).rowcount for table in ("ratings", "unanswered"))

    def answer_id(self) -> str:
        """A fresh id for an answer about to be shown; only ids made here can be voted with.

        Signed with a key kept in the database, so every worker process accepts
        every other's ids, and a client cannot invent ids to vote many times.
        """
        nonce = secrets.token_urlsafe(12)
        return f"{nonce}.{self._sign(nonce)}"

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def valid_answer_id(self, answer_id: str) -> bool:
        nonce, _, sig = answer_id.partition(".")
        return bool(nonce) and hmac.compare_digest(sig, self._sign(nonce))

    def record_rating(self, liked: bool, question: str, answer: str, citations: list[dict],
                      kind: Kind = Kind.ANSWER, answer_id: str | None = None) -> None:
        """Store one vote; with an ``answer_id``, a later vote on the same answer replaces it."""
        if answer_id is not None and not self.valid_answer_id(answer_id):
            raise InvalidFeedbackError("That answer can't be rated (unknown answer id); please ask again.")
        if self.retention_days == 0:
            return
        if kind in SENSITIVE:  # the vote is counted; nothing that was said is kept
            question = answer = _NOT_KEPT.format(kind=kind)
            citations = []
        row = {"created_at": _now(), "rating": "like" if liked else "dislike", "kind": clean(kind, 20),
               "question": clean(question, MAX_QUESTION_CHARS), "answer": clean(answer, MAX_ANSWER_CHARS),
               "citations": json.dumps(clean_citations(citations), ensure_ascii=False), "answer_id": answer_id}
        self.forget_old()
        with self.db.begin() as conn:
            conn.execute(text("INSERT INTO ratings (created_at, rating, kind, question, answer, citations, answer_id) "
                              "VALUES (:created_at, :rating, :kind, :question, :answer, :citations, :answer_id) "
                              "ON CONFLICT (answer_id) DO UPDATE SET "
                              "created_at = excluded.created_at, rating = excluded.rating"), row)

    def record_unanswered(self, question: str) -> None:
        if self.retention_days == 0:
            return
        self.forget_old()
        with self.db.begin() as conn:
            conn.execute(text("INSERT INTO unanswered (created_at, question) VALUES (:at, :question)"),
                         {"at": _now(), "question": clean(question, MAX_QUESTION_CHARS)})

    def record_answer(self, answer: Answer) -> None:
        """Keep a question the documents could not answer; everything else is not ours to keep."""
        if answer.kind == Kind.NOT_FOUND and answer.storable:  # the pipeline's safety.storable
            self.record_unanswered(answer.question)

    def ratings(self, rating: str | None = None, limit: int = 20) -> list[Rating]:
        """Newest first; ``rating`` is "like", "dislike" or None for both."""
        where = "WHERE rating = :rating" if rating else ""
        with self.db.read() as conn:
            rows = conn.execute(text(
                f"SELECT created_at, rating, kind, question, answer, citations FROM ratings {where} "
                "ORDER BY id DESC LIMIT :limit"), {"rating": rating, "limit": limit}).fetchall()
        return [Rating(*(clean(v, MAX_ANSWER_CHARS) for v in row[:5]), citations=clean_citations(json.loads(row[5])))
                for row in rows]

    def unanswered(self, limit: int = 20) -> list[Unanswered]:
        with self.db.read() as conn:
            rows = conn.execute(text("SELECT created_at, question FROM unanswered ORDER BY id DESC LIMIT :limit"),
                                {"limit": limit}).fetchall()
        return [Unanswered(*(clean(v, MAX_QUESTION_CHARS) for v in row)) for row in rows]

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            likes, dislikes = conn.execute(text(
                "SELECT COALESCE(SUM(CASE WHEN rating = 'like' THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(CASE WHEN rating = 'dislike' THEN 1 ELSE 0 END), 0) FROM ratings")).one()
            unanswered = conn.execute(text("SELECT COUNT(*) FROM unanswered")).scalar_one()
        return {"likes": int(likes), "dislikes": int(dislikes), "unanswered": int(unanswered)}


def open_store(settings: Settings) -> FeedbackStore:
    return FeedbackStore(open_database(settings, "feedback"), settings.retention_days)


def print_report(settings: Settings, limit: int = 20, as_json: bool = False) -> None:
    """`rag feedback`: recent dislikes and unanswered questions, newest first."""
    if limit <= 0:
        raise ValueError(f"--limit must be > 0, got {limit}")
    store = open_store(settings)
    dislikes, unanswered = store.ratings("dislike", limit), store.unanswered(limit)
    if as_json:
        print(json.dumps({"counts": store.counts(), "dislikes": [asdict(r) for r in dislikes],
                          "unanswered": [asdict(u) for u in unanswered]}, ensure_ascii=False, indent=2))
        return
    counts = store.counts()
    print(f"{store.db.where}: {counts['likes']} likes, {counts['dislikes']} dislikes, "
          f"{counts['unanswered']} unanswered questions")
    print(f"\nRecent dislikes ({len(dislikes)}):")
    for r in dislikes:
        cited = ", ".join(sorted({c.get("doc_id", "?") for c in r.citations})) or "no citations"
        print(f"  {r.created_at}  Q: {_short(r.question)}\n      A: {_short(r.answer)}\n      cited: {cited}")
    print(f"\nUnanswered questions ({len(unanswered)}):")
    for u in unanswered:
        print(f"  {u.created_at}  {_short(u.question)}")


def clean(text: object, limit: int) -> str:
    """Text with control characters removed, cut to ``limit`` characters."""
    text = _CONTROL.sub("", str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_citations(citations: object) -> list[dict]:
    """At most MAX_CITATIONS citations, each with only the known fields, typed and capped."""
    out = []
    for c in citations[:MAX_CITATIONS] if isinstance(citations, list) else ():
        if not isinstance(c, dict):
            continue
        row = {}
        for key, kind in _CITATION_FIELDS.items():
            value = c.get(key)
            if key in ("page", "date") and key in c and value is None:  # not a PDF; no known date
                row[key] = None
            elif kind is bool and isinstance(value, bool):
                row[key] = value
            elif kind is int and isinstance(value, int) and not isinstance(value, bool):
                row[key] = value
            elif kind is str and isinstance(value, str):
                row[key] = clean(value, MAX_QUOTE_CHARS if key == "quote" else MAX_NAME_CHARS)
        out.append(row)
    return out


def _short(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
