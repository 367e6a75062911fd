"""What members thought of answers, and what they asked that the documents don't cover.

One SQLite file under ``settings.data_dir``. Every call opens its own connection
(sqlite3 connections must not be shared between threads), writes inside one
transaction, and waits out other writers (WAL + busy timeout) instead of failing,
so concurrent web workers never lose a record. Stored: question, answer,
citations, time. Never stored: who asked (no IPs, no session ids), and never the
text of crisis or medical messages.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .config import Settings
from .types import Answer

SCHEMA_VERSION = 1
SENSITIVE_KINDS = frozenset({"crisis", "medical", "concern"})  # never keep what was said
_NOT_KEPT = "(not stored: {kind} message)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('like', 'dislike')),
    kind TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL  -- JSON list, the Answer.to_json() citation shape
);
CREATE TABLE IF NOT EXISTS unanswered (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL
);
"""


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
    """The feedback database; safe to use from many threads and processes at once."""

    def __init__(self, path: Path, timeout_s: float = 30.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            # WAL lets readers run beside the one writer; the mode is stored in
            # the file, so only the first process ever has to switch it.
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE: take the write lock when the transaction starts. A deferred
        # one upgraded later can fail at once with "database is locked" in WAL
        # mode instead of waiting its turn.
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level="IMMEDIATE")
        with closing(conn):
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            # With WAL, NORMAL still survives a crashed process; only a power cut
            # could drop the last few ratings, and it makes each write ~10x cheaper.
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn

    def record_rating(self, liked: bool, question: str, answer: str, citations: list[dict],
                      kind: str = "answer") -> None:
        if kind in SENSITIVE_KINDS:
            question = answer = _NOT_KEPT.format(kind=kind)
        row = (_now(), "like" if liked else "dislike", kind, question, answer,
               json.dumps(citations, ensure_ascii=False))
        with self._connect() as conn, conn:
            conn.execute("INSERT INTO ratings (created_at, rating, kind, question, answer, citations) "
                         "VALUES (?, ?, ?, ?, ?, ?)", row)

    def record_unanswered(self, question: str) -> None:
        with self._connect() as conn, conn:
            conn.execute("INSERT INTO unanswered (created_at, question) VALUES (?, ?)", (_now(), question))

    def record_answer(self, answer: Answer) -> None:
        """Keep a question the documents could not answer; everything else is not ours to keep."""
        if answer.kind == "not_found" and not answer.notice:  # a distressed message is not ours to keep
            self.record_unanswered(answer.question)

    def ratings(self, rating: str | None = None, limit: int = 20) -> list[Rating]:
        """Newest first; ``rating`` is "like", "dislike" or None for both."""
        where, args = ("WHERE rating = ?", (rating,)) if rating else ("", ())
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT created_at, rating, kind, question, answer, citations FROM ratings {where} "
                "ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Rating(*row[:5], citations=json.loads(row[5])) for row in rows]

    def unanswered(self, limit: int = 20) -> list[Unanswered]:
        with self._connect() as conn:
            rows = conn.execute("SELECT created_at, question FROM unanswered ORDER BY id DESC LIMIT ?",
                                (limit,)).fetchall()
        return [Unanswered(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as conn:
            likes, dislikes = conn.execute(
                "SELECT COALESCE(SUM(rating = 'like'), 0), COALESCE(SUM(rating = 'dislike'), 0) "
                "FROM ratings").fetchone()
            unanswered = conn.execute("SELECT COUNT(*) FROM unanswered").fetchone()[0]
        return {"likes": likes, "dislikes": dislikes, "unanswered": unanswered}


def open_store(settings: Settings) -> FeedbackStore:
    return FeedbackStore(settings.data_dir / "feedback.sqlite")


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
    print(f"{store.path}: {counts['likes']} likes, {counts['dislikes']} dislikes, "
          f"{counts['unanswered']} unanswered questions")
    print(f"\nRecent dislikes ({len(dislikes)}):")
    for r in dislikes:
        cited = ", ".join(sorted({c.get("doc_id", "?") for c in r.citations})) or "no citations"
        print(f"  {r.created_at}  Q: {r.question}\n      A: {_short(r.answer)}\n      cited: {cited}")
    print(f"\nUnanswered questions ({len(unanswered)}):")
    for u in unanswered:
        print(f"  {u.created_at}  {u.question}")


def _short(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
