"""Where the server keeps what it stores, and the one place that knows how: the database engine and
its schema, versioned.

Two engines, one code path (SQLAlchemy Core, the same SQL for both):

- unset ``RAG_DATABASE_URL``: embedded SQLite files in the data folder, one per part
  (``feedback.sqlite``, ``ratelimit.sqlite``, ``staff.sqlite``), as before; files written by
  older versions are upgraded in place.
- ``RAG_DATABASE_URL=postgresql://user:password@host/db``: every part in one PostgreSQL
  database, shared by any number of server processes on any number of machines.

Each part's schema carries a version (table ``schema_version``). Opening a part upgrades it to
the version this code knows, inside one transaction that other processes wait on, and refuses
a database written by a newer version rather than guessing at it.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (CheckConstraint, Column, Float, Index, Integer, MetaData, Table, Text, create_engine,
                        event, inspect, text)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from ..config import Settings
from ..errors import DatabaseUnavailableError, SchemaVersionError

log = logging.getLogger(__name__)
__all__ = ["Database", "IntegrityError", "open_database"]

metadata = MetaData()
_t = Table  # the tables below, one block per part
ratings = _t("ratings", metadata,
             Column("id", Integer, primary_key=True),
             Column("created_at", Text, nullable=False),
             Column("rating", Text, CheckConstraint("rating IN ('like', 'dislike')"), nullable=False),
             Column("kind", Text, nullable=False),
             Column("question", Text, nullable=False),
             Column("answer", Text, nullable=False),
             Column("citations", Text, nullable=False),  # JSON list, the Answer.to_json() citation shape
             Column("answer_id", Text),  # one vote per answer shown: a second one replaces the first
             Index("ratings_answer", "answer_id", unique=True))
meta = _t("meta", metadata, Column("key", Text, primary_key=True), Column("value", Text, nullable=False))
unanswered = _t("unanswered", metadata, Column("id", Integer, primary_key=True),
                Column("created_at", Text, nullable=False), Column("question", Text, nullable=False))

events = _t("events", metadata, Column("key", Text, nullable=False), Column("at", Float, nullable=False),
            Index("events_key_at", "key", "at"))

staff = _t("staff", metadata, Column("name", Text, primary_key=True), Column("hash", Text, nullable=False),
           Column("created_at", Text, nullable=False))
sessions = _t("sessions", metadata, Column("token", Text, primary_key=True), Column("name", Text, nullable=False),
              Column("created", Float, nullable=False), Column("seen", Float, nullable=False))
failures = _t("failures", metadata, Column("name", Text, nullable=False), Column("at", Float, nullable=False))
forms = _t("forms", metadata, Column("token", Text, primary_key=True), Column("session", Text, nullable=False),
           Column("created", Float, nullable=False))
audit = _t("audit", metadata, Column("id", Integer, primary_key=True), Column("at", Text, nullable=False),
           Column("who", Text, nullable=False), Column("action", Text, nullable=False),
           Column("target", Text, nullable=False), Column("detail", Text, nullable=False))
handled = _t("handled", metadata, Column("key", Text, primary_key=True), Column("at", Text, nullable=False),
             Column("who", Text, nullable=False))
flashes = _t("flashes", metadata, Column("id", Integer, primary_key=True), Column("session", Text, nullable=False),
             Column("ok", Integer, nullable=False), Column("message", Text, nullable=False))

schema_version = _t("schema_version", metadata, Column("part", Text, primary_key=True),
                    Column("version", Integer, nullable=False))

TABLES = {"feedback": (ratings, meta, unanswered), "ratelimit": (events,),
          "staff": (staff, sessions, failures, forms, audit, handled, flashes)}
FILES = {"feedback": "feedback.sqlite", "ratelimit": "ratelimit.sqlite", "staff": "staff.sqlite"}


def _create(part: str) -> Callable[[Connection], None]:
    def step(conn: Connection) -> None:
        # checkfirst: a file from before versioning already holds (some of) these tables
        metadata.create_all(conn, tables=[schema_version, *TABLES[part]], checkfirst=True)
    return step


def _vote_ids(conn: Connection) -> None:
    """Feedback 1 -> 2: one vote per answer shown (files from before it lack the column)."""
    if "answer_id" not in {c["name"] for c in inspect(conn).get_columns("ratings")}:
        conn.execute(text("ALTER TABLE ratings ADD COLUMN answer_id TEXT"))
    next(i for i in ratings.indexes if i.name == "ratings_answer").create(conn, checkfirst=True)


# Step i takes a part from version i to i + 1; every step may meet what it makes already done
# (an unversioned SQLite file of an older release), so each is idempotent.
MIGRATIONS: dict[str, list[Callable[[Connection], None]]] = {
    "feedback": [_create("feedback"), _vote_ids],
    "ratelimit": [_create("ratelimit")],
    "staff": [_create("staff")],
}
_SCHEMA_LOCK = 0x72616753  # the advisory lock every PostgreSQL client takes to upgrade ("ragS")


class Database:
    """One part's tables in one engine; ``begin()`` writes, ``read()`` reads, each a transaction."""

    def __init__(self, engine: Engine, part: str):
        self.engine = engine
        self.part = part
        self.postgres = engine.dialect.name == "postgresql"
        # Where it is, for messages and reports: a SQLite file's path, or the URL without its password.
        self.path = Path(engine.url.database) if not self.postgres else None
        self.where = str(self.path) if self.path else engine.url.render_as_string(hide_password=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on any error, so a
        request that fails half way leaves nothing half-written."""
        with self._translated():
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translated():
            with self.engine.connect() as conn:
                conn = conn.execution_options(rag_read=True)  # SQLite: a plain BEGIN, no write lock
                yield conn

    def lock(self, conn: Connection, name: str) -> None:
        """Hold ``name`` until the transaction ends, so a count and the insert that follows it are
        one step across every process. SQLite's BEGIN IMMEDIATE already holds the whole file."""
        if self.postgres:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def upgrade(self) -> int:
        """Bring this part's schema to the version this code knows; the version."""
        known = len(MIGRATIONS[self.part])
        with self.begin() as conn:
            if self.postgres:  # two servers starting at once: one upgrades, the other waits
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            found = 0
            if inspect(conn).has_table("schema_version"):
                found = conn.execute(text("SELECT version FROM schema_version WHERE part = :part"),
                                     {"part": self.part}).scalar() or 0
            if found > known:
                raise SchemaVersionError(
                    f"the {self.part} tables in {self.where} are schema version {found}, newer than this "
                    f"strike-qa knows ({known}); upgrade strike-qa on this machine (pip install -U), or point "
                    "RAG_DATABASE_URL at another database")
            for step in MIGRATIONS[self.part][found:]:
                step(conn)
            if found < known:
                conn.execute(text("DELETE FROM schema_version WHERE part = :part"), {"part": self.part})
                conn.execute(text("INSERT INTO schema_version (part, version) VALUES (:part, :version)"),
                             {"part": self.part, "version": known})
        return known

    @contextmanager
    def _translated(self) -> Iterator[None]:
        # A server that cannot reach its database says so in one line that names the setting;
        # integrity errors (a duplicate name) and programming errors pass through unchanged.
        try:
            yield
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            if not (exc.connection_invalidated or isinstance(exc, OperationalError)
                    and (self.postgres or any(word in reason.lower() for word in _SQLITE_UNAVAILABLE))):
                raise
            setting = "RAG_DATABASE_URL" if self.postgres else "RAG_DATA_DIR"
            raise DatabaseUnavailableError(
                f"the database is unavailable ({setting}: {self.where}): {reason}") from exc


# SQLite reports a missing table as an OperationalError too: only these mean "cannot be reached".
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "read-only", "disk is full")
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url(settings: Settings, part: str) -> str:
    """The SQLAlchemy URL of ``part``: RAG_DATABASE_URL's server, or its SQLite file in the data folder."""
    if settings.database_url:
        url = settings.database_url
        for scheme in ("postgresql://", "postgres://"):  # the libpq spelling, driven by psycopg 3
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url[len(scheme):]
        return url
    return f"sqlite:///{settings.data_dir / FILES[part]}"


def open_database(settings: Settings, part: str) -> Database:
    """``part`` ("feedback", "ratelimit" or "staff"), its schema upgraded; DatabaseUnavailableError
    (naming the setting) when it cannot be reached, SchemaVersionError when it is too new."""
    if part not in TABLES:
        raise ValueError(f"unknown part {part!r}; one of {', '.join(TABLES)}")
    db = Database(engine(database_url(settings, part)), part)
    db.upgrade()
    return db


def engine(url: str) -> Engine:
    """One engine (one connection pool) per database in this process."""
    with _engines_lock:
        if url not in _engines:
            _engines[url] = _new_engine(url)
        return _engines[url]


def dispose(url: str) -> None:
    """Close the pool of one database (tests drop their databases)."""
    with _engines_lock:
        found = _engines.pop(url, None)
    if found is not None:
        found.dispose()


def _new_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("RAG_DATABASE_URL must look like postgresql://user:password@host:5432/dbname") from None
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # No pool: a connection per transaction, as before (opening a local file costs microseconds),
        # so no file stays open between requests and no pool size caps the threads that wait their turn.
        made = create_engine(parsed, poolclass=NullPool, connect_args={"timeout": 30})
        event.listen(made, "connect", _sqlite_connect)
        event.listen(made, "begin", _sqlite_begin)
        return made
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"RAG_DATABASE_URL must be a postgresql:// URL, got a {parsed.get_backend_name()} one")
    # pre_ping: a connection the server dropped (a restart, a failover) is replaced, not handed out.
    # connect_timeout: an unreachable host fails a request in seconds, not minutes.
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args={"connect_timeout": 5})


def _sqlite_connect(dbapi_conn, _record) -> None:
    # SQLAlchemy's documented recipe: the driver's own transaction handling off, our BEGIN below.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL lets readers run beside the one writer; the mode is stored in the file.
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL still survives a crashed process; only a power cut could drop the last
    # few writes, and it makes each write ~10x cheaper.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: a write transaction takes the write lock when it starts. A deferred one upgraded
    # later can fail at once with "database is locked" in WAL mode instead of waiting its turn.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("rag_read") else "BEGIN IMMEDIATE")
