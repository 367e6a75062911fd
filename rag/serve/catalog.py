"""The public list of the documents the bot answers from: newest first, searchable by title, each
with a link to open it. The chat shows only their count and the newest date, linking here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..types import Document
from .sources import document_url

MAX_QUERY = 200  # characters of a title search; longer is cut, never an error


@dataclass(frozen=True)
class Listing:
    title: str
    date: str | None  # ISO, None when the document carries none
    href: str  # where a member opens it: the PDF itself, else its text on our origin


def matches(query: str, title: str, doc_id: str) -> bool:
    """The title search, here and in the staff console: every word of ``query`` is in the
    title or the file name, in any order and case."""
    words = query[:MAX_QUERY].casefold().split()
    return all(w in f"{title} {doc_id}".casefold() for w in words)


def listings(documents: Mapping[str, Document], query: str = "") -> list[Listing]:
    """Documents that ``matches`` the query, newest first; undated ones last, by title."""
    found = [d for d in documents.values() if matches(query, d.title, d.doc_id)]
    dated = sorted((d for d in found if d.date), key=lambda d: (d.date, d.title), reverse=True)
    undated = sorted((d for d in found if not d.date), key=lambda d: d.title.casefold())
    return [Listing(d.title, d.date, document_url(d.doc_id)) for d in dated + undated]


def newest_date(documents: Mapping[str, Document]) -> str | None:
    return max((d.date for d in documents.values() if d.date), default=None)
