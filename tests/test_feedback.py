"""The feedback database: what is kept, what never is, and that concurrent writers lose nothing;
each test on SQLite and on PostgreSQL (the ``database_url`` fixture)."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from rag.config import Settings
from rag.errors import InvalidFeedbackError, SchemaVersionError
from rag.serve.feedback import MAX_CITATIONS, MAX_QUOTE_CHARS, FeedbackStore, open_store, print_report
from rag.types import Answer, Citation

ROOT = Path(__file__).resolve().parent.parent
CITE = Citation(1, "strike.txt", "Strike update", None, "strike.txt:0", "No strike date has been set.", 10, 38)


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


def execute(store: FeedbackStore, sql: str, **params) -> list[tuple]:
    """Raw SQL, as an older version or another tool would have written it."""
    with store.db.begin() as conn:
        result = conn.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def test_ratings_and_unanswered_round_trip_newest_first(settings):
    store = open_store(settings)
    citations = [{"n": 1, "doc_id": "strike.txt", "quote": "No strike date has been set."}]
    store.record_rating(True, "Has a strike date been set?", "No strike date has been set. [1]", citations)
    store.record_rating(False, "When is the vote?", "The strike vote began this week. [1]", citations)
    store.record_unanswered("Where do I park?")
    store.record_unanswered("What is the capital of France?")

    dislikes = store.ratings("dislike")
    assert [r.question for r in dislikes] == ["When is the vote?"]
    assert dislikes[0].citations == citations and dislikes[0].rating == "dislike"
    assert [r.rating for r in store.ratings()] == ["dislike", "like"]
    assert [u.question for u in store.unanswered()] == ["What is the capital of France?", "Where do I park?"]
    assert store.counts() == {"likes": 1, "dislikes": 1, "unanswered": 2}


def test_only_not_found_answers_are_kept_as_unanswered(settings):
    store = open_store(settings)
    for kind in ("answer", "not_found", "crisis", "medical", "invalid"):
        store.record_answer(Answer(f"question of kind {kind}", "text", refused=kind != "answer", kind=kind,
                                   citations=(CITE,) if kind == "answer" else (), storable=True))
    store.record_answer(Answer("not storable", "text", refused=True, kind="not_found", storable=False))
    assert [u.question for u in store.unanswered()] == ["question of kind not_found"]


def test_old_rows_are_deleted_after_the_retention_period_and_zero_keeps_nothing(settings, tmp_path):
    store = open_store(settings)
    store.record_unanswered("Where do I park?")
    execute(store, "UPDATE unanswered SET created_at = '2020-01-01T00:00:00+00:00'")
    store.record_unanswered("What time is the rally?")
    reopened = FeedbackStore(store.db, 90)  # opening sweeps
    assert [u.question for u in reopened.unanswered()] == ["What time is the rally?"]
    nothing = FeedbackStore(store.db, 0)  # opening sweeps everything older than this second
    before = nothing.counts()
    nothing.record_unanswered("Where do I park?")
    nothing.record_rating(True, "q", "a", [])
    assert nothing.counts() == before and before["likes"] == before["dislikes"] == 0


def test_a_rating_of_a_crisis_reply_does_not_keep_the_message(settings):
    store = open_store(settings)
    store.record_rating(False, "I want to end my life", "Call or text 988", [], kind="crisis")
    assert store.ratings()[0].question == "(not stored: crisis message)"


def test_the_database_holds_no_personal_data_and_uses_wal(settings):
    store = open_store(settings)
    with store.db.read() as conn:
        columns = {table: {c["name"] for c in inspect(conn).get_columns(table)}
                   for table in ("ratings", "unanswered", "meta")}
    if not settings.database_url:
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # answer_id is a random token per answer shown, not per person
    assert columns == {"ratings": {"id", "created_at", "rating", "kind", "question", "answer", "citations",
                                   "answer_id"},
                       "unanswered": {"id", "created_at", "question"}, "meta": {"key", "value"}}


def test_parallel_threads_lose_no_record(settings):
    store = open_store(settings)

    def write(worker: int) -> None:
        for i in range(50):
            store.record_rating(i % 2 == 0, f"q{worker}-{i}", "a", [{"n": 1}])
            store.record_unanswered(f"u{worker}-{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert store.counts() == {"likes": 200, "dislikes": 200, "unanswered": 400}
    assert len({r.question for r in store.ratings(limit=1000)}) == 400


def test_parallel_processes_lose_no_record(settings):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from rag.config import Settings
        from rag.serve.feedback import open_store
        store = open_store(Settings(data_dir=Path({str(settings.data_dir)!r}),
                                    database_url={settings.database_url!r}))
        for i in range(50):
            store.record_rating(False, f"p{{sys.argv[1]}}-{{i}}", "a", [])
            store.record_unanswered(f"p{{sys.argv[1]}}-{{i}}")
    """)
    workers = [subprocess.Popen([sys.executable, "-c", code, str(n)], cwd=ROOT) for n in range(6)]
    assert [w.wait(timeout=120) for w in workers] == [0] * 6
    assert open_store(settings).counts() == {"likes": 0, "dislikes": 300, "unanswered": 300}


def test_report_lists_dislikes_and_unanswered(settings, capsys):
    store = open_store(settings)
    store.record_rating(False, "Has a strike date been set?", "No strike date has been set. [1]",
                        [{"n": 1, "doc_id": "strike.txt"}])
    store.record_rating(True, "Who is Molly Parsons?", "A therapist. [1]", [])
    store.record_unanswered("Where do I park?")

    print_report(settings, limit=10)
    text = capsys.readouterr().out
    assert "1 likes, 1 dislikes, 1 unanswered" in text
    assert "Has a strike date been set?" in text and "cited: strike.txt" in text
    assert "Who is Molly Parsons?" not in text  # likes are counted, not listed
    assert "Where do I park?" in text

    print_report(settings, limit=10, as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert [d["question"] for d in report["dislikes"]] == ["Has a strike date been set?"]
    assert [u["question"] for u in report["unanswered"]] == ["Where do I park?"]


def test_report_limit_must_be_positive(settings):
    with pytest.raises(ValueError, match="--limit must be > 0"):
        print_report(settings, limit=0)


def test_citations_are_typed_and_capped(settings):
    """20 citations of 1 MB each once grew the database by 21 MB."""
    store = open_store(settings)
    huge = {"n": 1, "doc_id": "strike.txt", "quote": "x" * 1_000_000, "start": 0, "end": 5,
            "extra": "y" * 1_000_000, "page": "not a number"}
    store.record_rating(False, "q", "a", [huge] * 20)
    (kept,) = store.ratings()
    assert len(kept.citations) == MAX_CITATIONS
    assert kept.citations[0] == {"n": 1, "doc_id": "strike.txt", "quote": "x" * (MAX_QUOTE_CHARS - 1) + "…",
                                 "start": 0, "end": 5}
    if store.path:
        assert store.path.stat().st_size < 200_000


ESCAPES = "\x1b[2J\x1b]0;owned\x07Has a \x1b[31mstrike\x1b[0m date\r been set?\u202e\x00"


def test_control_characters_are_stripped_on_the_way_in(settings):
    store = open_store(settings)
    store.record_rating(False, ESCAPES, "No [1]\x1b[5m", [{"n": 1, "doc_id": "a\x1b.txt", "quote": "q\x9b"}])
    store.record_unanswered(ESCAPES)
    stored = " ".join(str(v) for table in ("ratings", "unanswered")
                      for row in execute(store, f"SELECT * FROM {table}") for v in row)
    assert not any(ch in stored for ch in "\x1b\x07\r\x00\x9b\u202e")
    assert "Has a [31mstrike[0m date been set?" in stored  # the text itself is kept


def test_control_characters_are_stripped_on_the_way_out(settings, capsys):
    store = open_store(settings)  # rows written by an older version, raw
    raw = ESCAPES.replace("\x00", "")  # PostgreSQL's text cannot hold NUL at all
    execute(store, "INSERT INTO ratings (created_at, rating, kind, question, answer, citations) "
                   "VALUES ('t', 'dislike', 'answer', :q, :a, :c)",
            q=raw, a=raw, c=json.dumps([{"doc_id": "\x1b[2Jx.txt"}]))
    execute(store, "INSERT INTO unanswered (created_at, question) VALUES ('t', :q)", q=raw)
    for as_json in (False, True):
        print_report(settings, as_json=as_json)
        out = capsys.readouterr().out
        assert "strike" in out and not any(ch in out for ch in "\x1b\x07\r\x00\u202e")


def test_one_vote_per_answer_and_only_for_answers_we_gave(settings):
    store = open_store(settings)
    answer_id = store.answer_id()
    for _ in range(45):
        store.record_rating(False, "q", "a", [], answer_id=answer_id)
    assert store.counts()["dislikes"] == 1
    store.record_rating(True, "q", "a", [], answer_id=answer_id)  # a change of mind replaces the vote
    assert store.counts() == {"likes": 1, "dislikes": 0, "unanswered": 0}
    # Ids are signed with a key in the database: another process's store accepts them, made-up ones fail.
    assert FeedbackStore(store.db, 90).valid_answer_id(answer_id)
    nonce = answer_id.split(".")[0]
    for forged in (nonce + ".0", "abc", "", nonce, nonce + "." + "0" * 32):
        with pytest.raises(InvalidFeedbackError, match="can't be rated"):
            store.record_rating(False, "q", "a", [], answer_id=forged)


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")  # SQLite: the files of older releases
    path = settings.data_dir / "feedback.sqlite"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE ratings (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, rating TEXT NOT NULL,
                kind TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, citations TEXT NOT NULL);
            CREATE TABLE unanswered (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, question TEXT NOT NULL);
            INSERT INTO ratings VALUES (1, 't', 'like', 'answer', 'old q', 'old a', '[]');
            PRAGMA user_version=1;""")
    store = open_store(settings)
    store.record_rating(False, "new q", "a", [], answer_id=store.answer_id())
    assert [r.question for r in store.ratings()] == ["new q", "old q"]


def test_a_database_from_a_newer_version_is_refused(settings):
    store = open_store(settings)
    execute(store, "UPDATE schema_version SET version = 99 WHERE part = 'feedback'")
    with pytest.raises(SchemaVersionError, match=r"schema version 99, newer than this strike-qa knows \(2\)"):
        open_store(settings)
    execute(store, "UPDATE schema_version SET version = 2 WHERE part = 'feedback'")
    assert open_store(settings).counts()["likes"] == 0


def test_the_schema_version_is_recorded_and_reopening_changes_nothing(settings):
    store = open_store(settings)
    store.record_unanswered("Where do I park?")
    assert execute(store, "SELECT part, version FROM schema_version") == [("feedback", 2)]
    assert [u.question for u in open_store(settings).unanswered()] == ["Where do I park?"]
