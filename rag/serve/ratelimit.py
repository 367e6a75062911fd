"""A per-client sliding-window limit on asking, shared by the chat UI, the JSON API and every
worker process (`rag serve --workers N`): the window lives in a small SQLite file in the data
folder, so N workers do not make the limit N times larger."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from ..errors import RateLimitedError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_key_at ON events(key, at);
"""
SWEEP_EVERY = 500  # events between deletions of every expired row (clients that went away)


class RateLimiter:
    """At most ``per_minute`` events per key in any 60-second window; ``per_minute <= 0`` means no limit.

    ``path`` is the SQLite file every process of one server shares. The clock is wall-clock
    time (``time.time``): the processes must agree on it, and monotonic clocks are per process.
    """

    def __init__(self, per_minute: int, path: Path, window_s: float = 60.0,
                 clock: Callable[[], float] = time.time):
        self.per_minute = per_minute
        self.window_s = window_s
        self.clock = clock
        self.path = Path(path)
        self._count = 0
        if per_minute > 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)

    def _connect(self) -> closing[sqlite3.Connection]:
        # IMMEDIATE: the count and the insert are one transaction, so two workers cannot both
        # see the last free slot. NORMAL sync: a lost counter after a power cut costs nothing.
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level="IMMEDIATE")
        conn.execute("PRAGMA synchronous=NORMAL")
        return closing(conn)

    def wait_time(self, key: str) -> float:
        """0.0 and counts the event if allowed; else seconds until the next one would be."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        since = now - self.window_s
        with self._connect() as conn, conn:
            self._count += 1
            if self._count % SWEEP_EVERY == 0:
                conn.execute("DELETE FROM events WHERE at <= ?", (since,))
            else:
                conn.execute("DELETE FROM events WHERE key = ? AND at <= ?", (key, since))
            count, oldest = conn.execute("SELECT COUNT(*), MIN(at) FROM events WHERE key = ?", (key,)).fetchone()
            if count >= self.per_minute:
                return round(oldest + self.window_s - now, 1) or 0.1
            conn.execute("INSERT INTO events (key, at) VALUES (?, ?)", (key, now))
            return 0.0

    def check(self, key: str) -> None:
        """Count one event for key, or raise RateLimitedError if its window is full."""
        if (wait := self.wait_time(key)) > 0:
            raise RateLimitedError(wait)


def open_limiter(per_minute: int, data_dir: Path) -> RateLimiter:
    return RateLimiter(per_minute, Path(data_dir) / "ratelimit.sqlite")
