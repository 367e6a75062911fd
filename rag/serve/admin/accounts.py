"""Staff accounts, their sessions, sign-in lock-out, one-use form tokens and the audit log.

One SQLite file, ``staff.sqlite`` in the data folder, opened per call (as the feedback store
is), so every worker process sees the same sessions. Passwords are argon2id hashes
(argon2-cffi's defaults, RFC 9106's second recommended profile). A session cookie holds a
random token; only its SHA-256 is stored, so a copy of the database opens no session, and
signing out deletes the row (a cookie signed without server state could not be revoked).
"""
from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...config import Settings
from ...errors import StaffError

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte password would only cost us time
MAX_FAILURES = 5  # wrong passwords for one name within LOCK_S lock it for LOCK_S
LOCK_S = 15 * 60
SESSION_IDLE_S = 2 * 3600  # a console left open over lunch asks again
SESSION_MAX_S = 12 * 3600  # one working day at most
FORM_TOKEN_S = 4 * 3600
_SCHEMA = """
CREATE TABLE IF NOT EXISTS staff (name TEXT PRIMARY KEY, hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL,
                                     seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (name TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS forms (token TEXT PRIMARY KEY, session TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL,
                                  action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS handled (key TEXT PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flashes (id INTEGER PRIMARY KEY, session TEXT NOT NULL, ok INTEGER NOT NULL,
                                    message TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Session:
    name: str
    token: str  # the cookie's value; the database holds only its hash


@dataclass(frozen=True)
class AuditEntry:
    at: str
    who: str
    action: str  # "sign in", "upload", "post", "edit", "remove", "restore", "re-index", ...
    target: str
    detail: str


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise StaffError(f"a staff name is 1-40 lower-case letters, digits, '.', '_' or '-', "
                         f"starting with a letter or digit; got {name!r}")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"the password must be at most {MAX_PASSWORD} characters")
    return password


class StaffStore:
    """Accounts, sessions and the audit log; safe from many threads and processes at once."""

    def __init__(self, path: Path, clock=time.time):
        self.path = Path(path)
        self.clock = clock  # tests move time forward to expire sessions and lock-outs
        self.hasher = PasswordHasher()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        # Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
        self._dummy = self.hasher.hash(secrets.token_hex(16))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level="IMMEDIATE")
        with closing(conn):
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn

    # accounts (the CLI)
    def add(self, name: str, password: str) -> None:
        check_name(name)
        hashed = self.hasher.hash(check_password(password))
        with self._connect() as conn, conn:
            try:
                conn.execute("INSERT INTO staff VALUES (?, ?, ?)", (name, hashed, _now()))
            except sqlite3.IntegrityError:
                raise StaffError(f"there is already a staff account named {name!r}") from None

    def names(self) -> list[tuple[str, str]]:
        with self._connect() as conn:
            return conn.execute("SELECT name, created_at FROM staff ORDER BY name").fetchall()

    def remove(self, name: str) -> None:
        with self._connect() as conn, conn:
            if not conn.execute("DELETE FROM staff WHERE name = ?", (name,)).rowcount:
                raise StaffError(f"no staff account named {name!r} (see `rag staff list`)")
            conn.execute("DELETE FROM sessions WHERE name = ?", (name,))  # signed out everywhere

    # sign-in
    def sign_in(self, name: str, password: str) -> Session:
        """A new session, or StaffError saying the sign-in failed (and never which half was wrong)."""
        name = (name or "").strip().lower()[:64]
        now = self.clock()
        with self._connect() as conn, conn:
            conn.execute("DELETE FROM failures WHERE at < ?", (now - LOCK_S,))
            recent = [at for (at,) in conn.execute("SELECT at FROM failures WHERE name = ? ORDER BY at", (name,))]
        if len(recent) >= MAX_FAILURES:
            minutes = max(1, round((recent[-MAX_FAILURES] + LOCK_S - now) / 60))
            raise StaffError(f"Too many failed sign-ins for this name. Try again in {minutes} minute"
                             f"{'s' if minutes > 1 else ''}.")
        with self._connect() as conn:
            row = conn.execute("SELECT hash FROM staff WHERE name = ?", (name,)).fetchone()
        if not _verify(self.hasher, row[0] if row else self._dummy, password[:MAX_PASSWORD]) or row is None:
            with self._connect() as conn, conn:
                conn.execute("INSERT INTO failures VALUES (?, ?)", (name, now))
            raise StaffError("Wrong name or password.")
        token = secrets.token_urlsafe(32)
        with self._connect() as conn, conn:
            conn.execute("DELETE FROM failures WHERE name = ?", (name,))
            conn.execute("DELETE FROM sessions WHERE seen < ? OR created < ?",
                         (now - SESSION_IDLE_S, now - SESSION_MAX_S))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_hash(token), name, now, now))
            if self.hasher.check_needs_rehash(row[0]):
                conn.execute("UPDATE staff SET hash = ? WHERE name = ?", (self.hasher.hash(password), name))
        self.log(name, "sign in", "", "")
        return Session(name, token)

    def session(self, token: str | None) -> Session | None:
        """The live session a cookie names, its idle clock restarted; None if unknown or expired."""
        if not token or len(token) > 100:
            return None
        now = self.clock()
        with self._connect() as conn, conn:
            row = conn.execute("SELECT name, created, seen FROM sessions WHERE token = ?", (_hash(token),)).fetchone()
            if row is None:
                return None
            name, created, seen = row
            if now - seen > SESSION_IDLE_S or now - created > SESSION_MAX_S:
                conn.execute("DELETE FROM sessions WHERE token = ?", (_hash(token),))
                return None
            conn.execute("UPDATE sessions SET seen = ? WHERE token = ?", (now, _hash(token)))
        return Session(name, token)

    def sign_out(self, session: Session) -> None:
        with self._connect() as conn, conn:
            conn.execute("DELETE FROM sessions WHERE token = ?", (_hash(session.token),))
            conn.execute("DELETE FROM forms WHERE session = ?", (_hash(session.token),))
        self.log(session.name, "sign out", "", "")

    # one-use form tokens: CSRF protection, and a replayed form is refused
    def form_token(self, session: Session) -> str:
        token = secrets.token_urlsafe(24)
        now = self.clock()
        with self._connect() as conn, conn:
            conn.execute("DELETE FROM forms WHERE created < ?", (now - FORM_TOKEN_S,))
            conn.execute("INSERT INTO forms VALUES (?, ?, ?)", (_hash(token), _hash(session.token), now))
        return token

    def use_form_token(self, session: Session, token: str | None) -> bool:
        """True once for a token this session was given; a forged, missing, old or used one is False."""
        if not token or len(token) > 100:
            return False
        with self._connect() as conn, conn:
            return bool(conn.execute("DELETE FROM forms WHERE token = ? AND session = ? AND created >= ?",
                                     (_hash(token), _hash(session.token), self.clock() - FORM_TOKEN_S)).rowcount)

    # what the next page says about the last form (kept here: the next request may reach another worker)
    def flash(self, session: Session, message: str, ok: bool = True) -> None:
        with self._connect() as conn, conn:
            conn.execute("INSERT INTO flashes (session, ok, message) VALUES (?, ?, ?)",
                         (_hash(session.token), int(ok), message[:2000]))

    def flashes(self, session: Session) -> list[tuple[bool, str]]:
        with self._connect() as conn, conn:
            rows = conn.execute("DELETE FROM flashes WHERE session = ? RETURNING id, ok, message",
                                (_hash(session.token),)).fetchall()
        return [(bool(ok), message) for _, ok, message in sorted(rows)]

    # the audit log and handled questions
    def log(self, who: str, action: str, target: str, detail: str = "") -> None:
        with self._connect() as conn, conn:
            conn.execute("INSERT INTO audit (at, who, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                         (_now(), who, action, target[:500], detail[:1000]))

    def audit(self, limit: int = 500) -> list[AuditEntry]:
        with self._connect() as conn:
            rows = conn.execute("SELECT at, who, action, target, detail FROM audit ORDER BY id DESC LIMIT ?",
                                (limit,)).fetchall()
        return [AuditEntry(*row) for row in rows]

    def mark_handled(self, key: str, who: str) -> None:
        with self._connect() as conn, conn:
            conn.execute("INSERT OR REPLACE INTO handled VALUES (?, ?, ?)", (key[:4000], _now(), who))

    def handled(self) -> dict[str, str]:
        """{key: when} of what staff marked handled."""
        with self._connect() as conn:
            return dict(conn.execute("SELECT key, at FROM handled").fetchall())


def open_staff(settings: Settings) -> StaffStore:
    return StaffStore(settings.data_dir / "staff.sqlite")


def _verify(hasher: PasswordHasher, hashed: str, password: str) -> bool:
    try:
        return hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
