"""A per-client sliding-window limit on asking, shared by the chat UI, the JSON API and every
server process (`rag serve --workers N`, and replicas on other machines with RAG_DATABASE_URL):
the window lives in the database of store.py, so N processes do not make the limit N times larger."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import text

from ..config import Settings
from ..errors import DatabaseUnavailableError, RateLimitedError
from .store import Database, open_database

log = logging.getLogger(__name__)
SWEEP_EVERY = 500  # events between deletions of every expired row (clients that went away)


class RateLimiter:
    """At most ``per_minute`` events per key in any 60-second window; ``per_minute <= 0`` means no limit.

    ``db`` is the database every process of the site shares (None when there is no limit). The
    clock is wall-clock time (``time.time``): the processes must agree on it, and monotonic clocks
    are per process.
    """

    def __init__(self, per_minute: int, db: Database | None, window_s: float = 60.0,
                 clock: Callable[[], float] = time.time):
        if per_minute > 0 and db is None:
            raise ValueError("a rate limit needs a database to count in")
        self.per_minute = per_minute
        self.window_s = window_s
        self.clock = clock
        self.db = db
        self._count = 0

    def wait_time(self, key: str) -> float:
        """0.0 and counts the event if allowed; else seconds until the next one would be.

        With the database down the limit is not applied (and a warning logged): members' answers
        matter more than the limit while it is away, and a vote fails on its own write anyway."""
        if self.per_minute <= 0:
            return 0.0
        try:
            return self._wait_time(key)
        except DatabaseUnavailableError as exc:
            log.warning("rate limit not applied: %s", exc)
            return 0.0

    def _wait_time(self, key: str) -> float:
        now = self.clock()
        since = now - self.window_s
        with self.db.begin() as conn:
            # The count and the insert are one step: two processes cannot both see the last free slot.
            self.db.lock(conn, "ratelimit:" + key)
            self._count += 1
            if self._count % SWEEP_EVERY == 0:
                conn.execute(text("DELETE FROM events WHERE at <= :since"), {"since": since})
            else:
                conn.execute(text("DELETE FROM events WHERE key = :key AND at <= :since"),
                             {"key": key, "since": since})
            count, oldest = conn.execute(text("SELECT COUNT(*), MIN(at) FROM events WHERE key = :key"),
                                         {"key": key}).one()
            if count >= self.per_minute:
                return round(oldest + self.window_s - now, 1) or 0.1
            conn.execute(text("INSERT INTO events (key, at) VALUES (:key, :at)"), {"key": key, "at": now})
            return 0.0

    def check(self, key: str) -> None:
        """Count one event for key, or raise RateLimitedError if its window is full."""
        if (wait := self.wait_time(key)) > 0:
            raise RateLimitedError(wait)


def open_limiter(settings: Settings) -> RateLimiter:
    per_minute = settings.rate_limit_per_minute
    return RateLimiter(per_minute, open_database(settings, "ratelimit") if per_minute > 0 else None)
