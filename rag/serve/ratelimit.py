"""A per-client sliding-window limit on asking, shared by the chat UI and the JSON API."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import RateLimitedError


class RateLimiter:
    """At most ``per_minute`` events per key in any 60-second window; ``per_minute <= 0`` means no limit.

    In memory and per process: enough for one server, and it forgets clients
    whose window has emptied so the table cannot grow without bound.
    """

    def __init__(self, per_minute: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.window_s = window_s
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_time(self, key: str) -> float:
        """0.0 and counts the event if allowed; else seconds until the next one would be."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            if len(self._events) > 10_000:
                self._forget_idle(now)
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) >= self.per_minute:
                return round(events[0] + self.window_s - now, 1) or 0.1
            events.append(now)
            return 0.0

    def check(self, key: str) -> None:
        """Count one event for key, or raise RateLimitedError if its window is full."""
        if (wait := self.wait_time(key)) > 0:
            raise RateLimitedError(wait)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window_s]
        for key in idle:
            del self._events[key]
