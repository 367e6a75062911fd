"""What members ask that the bot could not answer well: unanswered questions and disliked
answers, the same question asked many times shown once with its count, newest first.

Read from the feedback store, which never holds what the crisis screen flagged (it refuses
those rows before they are written), so nothing here can show them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass

from ..feedback import FeedbackStore

MAX_ROWS = 20_000  # read at most this many of each kind (the retention period bounds them anyway)


@dataclass(frozen=True)
class Group:
    key: str  # what "mark handled" stores
    kind: str  # "unanswered" | "disliked"
    question: str  # the newest wording
    count: int
    last_asked: str
    answer: str = ""  # disliked: the answer given
    sources: tuple[str, ...] = ()  # disliked: titles the answer cited
    handled: bool = False


def normalise(question: str) -> str:
    """Lower case, accents folded, punctuation dropped, spaces collapsed: "Strike pay?" == "strike  pay"."""
    text = unicodedata.normalize("NFKD", question.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def groups(store: FeedbackStore, handled: dict[str, str]) -> list[Group]:
    """Unanswered and disliked groups, newest first; a group marked handled stays handled
    until the question is asked again after the mark."""
    found: dict[str, dict] = {}
    for row in store.unanswered(MAX_ROWS):
        _add(found, "u:" + normalise(row.question), "unanswered", row.question, row.created_at)
    for row in store.ratings("dislike", MAX_ROWS):
        if row.question.startswith("(not stored"):  # a crisis or medical message: counted, never shown
            continue
        answer_key = hashlib.sha256(" ".join(row.answer.split()).encode()).hexdigest()[:12]
        sources = tuple(dict.fromkeys(c.get("title") or c.get("doc_id", "") for c in row.citations))
        _add(found, f"d:{normalise(row.question)}|{answer_key}", "disliked", row.question, row.created_at,
             row.answer, sources)
    out = [Group(key, g["kind"], g["question"], g["count"], g["last"], g["answer"], g["sources"],
                 handled=key in handled and handled[key] >= g["last"]) for key, g in found.items()]
    return sorted(out, key=lambda g: g.last_asked, reverse=True)


def _add(found: dict, key: str, kind: str, question: str, at: str, answer: str = "",
         sources: tuple[str, ...] = ()) -> None:
    group = found.get(key)
    if group is None:  # rows come newest first: the first one seen holds the newest wording
        found[key] = {"kind": kind, "question": question, "count": 1, "last": at, "answer": answer,
                      "sources": sources}
    else:
        group["count"] += 1


def to_csv(rows: list[Group]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["kind", "question", "count", "last asked", "answer given", "sources", "handled"])
    for g in rows:
        writer.writerow([_cell(v) for v in (g.kind, g.question, g.count, g.last_asked, g.answer,
                                            "; ".join(g.sources), "yes" if g.handled else "no")])
    return out.getvalue()


def _cell(value: object) -> str:
    """A spreadsheet cell that is never a formula: members' text starting with = + - @ gets a quote."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
