"""Staff accounts, their sessions, sign-in lock-out, one-use form tokens and the audit log.

Kept in the database of store.py (``staff.sqlite`` in the data folder, or PostgreSQL with
RAG_DATABASE_URL), one transaction per call, so every worker process and replica sees the same
sessions. Passwords are argon2id hashes
(argon2-cffi's defaults, RFC 9106's second recommended profile). A session cookie holds a
random token; only its SHA-256 is stored, so a copy of the database opens no session, and
signing out deletes the row (a cookie signed without server state could not be revoked).
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import text

from ...config import Settings
from ...errors import StaffError
from ..store import Database, IntegrityError, open_database

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte password would only cost us time
MAX_FAILURES = 5  # wrong passwords for one name within LOCK_S lock it for LOCK_S
LOCK_S = 15 * 60
SESSION_IDLE_S = 2 * 3600  # a console left open over lunch asks again
SESSION_MAX_S = 12 * 3600  # one working day at most
FORM_TOKEN_S = 4 * 3600


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

    def __init__(self, db: Database, clock=time.time):
        self.db = db
        self.clock = clock  # tests move time forward to expire sessions and lock-outs
        self.hasher = PasswordHasher()
        # Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
        self._dummy = self.hasher.hash(secrets.token_hex(16))

    # accounts (the CLI)
    def add(self, name: str, password: str) -> None:
        check_name(name)
        hashed = self.hasher.hash(check_password(password))
        try:
            with self.db.begin() as conn:
                conn.execute(text("INSERT INTO staff (name, hash, created_at) VALUES (:name, :hash, :at)"),
                             {"name": name, "hash": hashed, "at": _now()})
        except IntegrityError:
            raise StaffError(f"there is already a staff account named {name!r}") from None

    def names(self) -> list[tuple[str, str]]:
        with self.db.read() as conn:
            return [tuple(row) for row in conn.execute(text("SELECT name, created_at FROM staff ORDER BY name"))]

    def remove(self, name: str) -> None:
        with self.db.begin() as conn:
            if not conn.execute(text("DELETE FROM staff WHERE name = :name"), {"name": name}).rowcount:
                raise StaffError(f"no staff account named {name!r} (see `rag staff list`)")
            conn.execute(text("DELETE FROM sessions WHERE name = :name"), {"name": name})  # signed out everywhere

    # sign-in
    def sign_in(self, name: str, password: str) -> Session:
        """A new session, or StaffError saying the sign-in failed (and never which half was wrong)."""
        name = (name or "").strip().lower()[:64]
        now = self.clock()
        with self.db.begin() as conn:
            conn.execute(text("DELETE FROM failures WHERE at < :since"), {"since": now - LOCK_S})
            recent = list(conn.execute(text("SELECT at FROM failures WHERE name = :name ORDER BY at"),
                                       {"name": name}).scalars())
        if len(recent) >= MAX_FAILURES:
            minutes = max(1, round((recent[-MAX_FAILURES] + LOCK_S - now) / 60))
            raise StaffError(f"Too many failed sign-ins for this name. Try again in {minutes} minute"
                             f"{'s' if minutes > 1 else ''}.")
        with self.db.read() as conn:
            hashed = conn.execute(text("SELECT hash FROM staff WHERE name = :name"), {"name": name}).scalar()
        if not _verify(self.hasher, hashed or self._dummy, password[:MAX_PASSWORD]) or hashed is None:
            with self.db.begin() as conn:
                conn.execute(text("INSERT INTO failures (name, at) VALUES (:name, :at)"), {"name": name, "at": now})
            raise StaffError("Wrong name or password.")
        token = secrets.token_urlsafe(32)
        with self.db.begin() as conn:
            conn.execute(text("DELETE FROM failures WHERE name = :name"), {"name": name})
            conn.execute(text("DELETE FROM sessions WHERE seen < :idle OR created < :old"),
                         {"idle": now - SESSION_IDLE_S, "old": now - SESSION_MAX_S})
            conn.execute(text("INSERT INTO sessions (token, name, created, seen) VALUES (:token, :name, :now, :now)"),
                         {"token": _hash(token), "name": name, "now": now})
            if self.hasher.check_needs_rehash(hashed):
                conn.execute(text("UPDATE staff SET hash = :hash WHERE name = :name"),
                             {"hash": self.hasher.hash(password), "name": name})
        self.log(name, "sign in", "", "")
        return Session(name, token)

    def session(self, token: str | None) -> Session | None:
        """The live session a cookie names, its idle clock restarted; None if unknown or expired."""
        if not token or len(token) > 100:
            return None
        now = self.clock()
        key = {"token": _hash(token)}
        with self.db.begin() as conn:
            row = conn.execute(text("SELECT name, created, seen FROM sessions WHERE token = :token"), key).first()
            if row is None:
                return None
            name, created, seen = row
            if now - seen > SESSION_IDLE_S or now - created > SESSION_MAX_S:
                conn.execute(text("DELETE FROM sessions WHERE token = :token"), key)
                return None
            conn.execute(text("UPDATE sessions SET seen = :now WHERE token = :token"), {**key, "now": now})
        return Session(name, token)

    def sign_out(self, session: Session) -> None:
        key = {"token": _hash(session.token)}
        with self.db.begin() as conn:
            conn.execute(text("DELETE FROM sessions WHERE token = :token"), key)
            conn.execute(text("DELETE FROM forms WHERE session = :token"), key)
        self.log(session.name, "sign out", "", "")

    # one-use form tokens: CSRF protection, and a replayed form is refused
    def form_token(self, session: Session) -> str:
        token = secrets.token_urlsafe(24)
        now = self.clock()
        with self.db.begin() as conn:
            conn.execute(text("DELETE FROM forms WHERE created < :old"), {"old": now - FORM_TOKEN_S})
            conn.execute(text("INSERT INTO forms (token, session, created) VALUES (:token, :session, :now)"),
                         {"token": _hash(token), "session": _hash(session.token), "now": now})
        return token

    def use_form_token(self, session: Session, token: str | None) -> bool:
        """True once for a token this session was given; a forged, missing, old or used one is False."""
        if not token or len(token) > 100:
            return False
        with self.db.begin() as conn:
            return bool(conn.execute(
                text("DELETE FROM forms WHERE token = :token AND session = :session AND created >= :since"),
                {"token": _hash(token), "session": _hash(session.token),
                 "since": self.clock() - FORM_TOKEN_S}).rowcount)

    # what the next page says about the last form (kept here: the next request may reach another worker)
    def flash(self, session: Session, message: str, ok: bool = True) -> None:
        with self.db.begin() as conn:
            conn.execute(text("INSERT INTO flashes (session, ok, message) VALUES (:session, :ok, :message)"),
                         {"session": _hash(session.token), "ok": int(ok), "message": message[:2000]})

    def flashes(self, session: Session) -> list[tuple[bool, str]]:
        with self.db.begin() as conn:
            rows = conn.execute(text("DELETE FROM flashes WHERE session = :session RETURNING id, ok, message"),
                                {"session": _hash(session.token)}).fetchall()
        return [(bool(ok), message) for _, ok, message in sorted(rows)]

    # the audit log and handled questions
    def log(self, who: str, action: str, target: str, detail: str = "") -> None:
        with self.db.begin() as conn:
            conn.execute(text("INSERT INTO audit (at, who, action, target, detail) "
                              "VALUES (:at, :who, :action, :target, :detail)"),
                         {"at": _now(), "who": who, "action": action, "target": target[:500],
                          "detail": detail[:1000]})

    def audit(self, limit: int = 500) -> list[AuditEntry]:
        with self.db.read() as conn:
            rows = conn.execute(text("SELECT at, who, action, target, detail FROM audit ORDER BY id DESC "
                                     "LIMIT :limit"), {"limit": limit}).fetchall()
        return [AuditEntry(*row) for row in rows]

    def mark_handled(self, key: str, who: str) -> None:
        with self.db.begin() as conn:
            conn.execute(text("INSERT INTO handled (key, at, who) VALUES (:key, :at, :who) "
                              "ON CONFLICT (key) DO UPDATE SET at = excluded.at, who = excluded.who"),
                         {"key": key[:4000], "at": _now(), "who": who})

    def handled(self) -> dict[str, str]:
        """{key: when} of what staff marked handled."""
        with self.db.read() as conn:
            return {key: at for key, at in conn.execute(text("SELECT key, at FROM handled"))}


def open_staff(settings: Settings) -> StaffStore:
    return StaffStore(open_database(settings, "staff"))


def _verify(hasher: PasswordHasher, hashed: str, password: str) -> bool:
    try:
        return hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
