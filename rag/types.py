"""The plain records that flow one way through the pipeline.

    Path ─load─▶ Document ─chunk─▶ Chunk ─embed/index─▶ Hit ─answer─▶ Answer[Citation]
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Kind(StrEnum):
    """What an answer is, and why a stored exchange keeps no text: one vocabulary for the
    pipeline, the safety screen, the API, the feedback store and the eval."""

    ANSWER = "answer"  # quoted from the documents
    NOT_FOUND = "not_found"  # the documents don't say
    CRISIS = "crisis"  # the fixed crisis text, never retrieved
    MEDICAL = "medical"  # the fixed medical referral, never retrieved
    INVALID = "invalid"  # the question could not be read (the eval's record of an error)
    CONCERN = "concern"  # a safety verdict: answered, with a resources line under it
    PRIVATE = "private"  # a stored exchange whose text safety.storable refuses to keep


# Kinds whose words are never stored (a vote on them is counted without its text).
SENSITIVE = frozenset({Kind.CRISIS, Kind.MEDICAL, Kind.CONCERN, Kind.PRIVATE})


class Mode(StrEnum):
    """How an answer's text was made."""

    EXTRACTIVE = "extractive"  # quoted sentences
    GENERATED = "generated"  # a language model wrote it, and every sentence was verified


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation, as the pipeline reads it."""

    role: Literal["user", "assistant"]
    content: str

    @classmethod
    def from_json(cls, row: Mapping) -> "Turn":
        """A turn from ``{"role": "user"|"assistant", "content": str}``; ValueError otherwise."""
        role, content = row.get("role"), row.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError('a turn must be {"role": "user"|"assistant", "content": str}')
        return cls(role, content)

    def to_json(self) -> dict:
        return {"role": self.role, "content": self.content}


def turns(rows: Iterable[Mapping] | None) -> tuple[Turn, ...]:
    """A conversation read from JSON rows (an eval file, a request)."""
    return tuple(Turn.from_json(r) for r in rows or ())


@dataclass(frozen=True)
class Page:
    """A page's span in its document's text; PDFs have many, other formats none."""

    number: int  # 1-based, as a reader counts
    start: int
    end: int
    ocr: bool = False  # its text was read from the page's image (a scan), not its text layer


@dataclass(frozen=True)
class Heading:
    """A heading's own span in its document's text and its place in the outline."""

    start: int
    end: int
    level: int  # 1 = top (an Article, an h1/h2), deeper numbers nest under it
    title: str  # as shown in a section path, e.g. "Article 36 Sick Leave"


def section_path(headings: tuple[Heading, ...], offset: int) -> str:
    """The heading path over offset, e.g. "Article 36 Sick Leave > Section 2"; "" before any heading."""
    path: list[Heading] = []
    for h in headings:
        if h.start > offset:
            break
        while path and path[-1].level >= h.level:
            path.pop()
        path.append(h)
    return " > ".join(h.title for h in path)


@dataclass(frozen=True)
class Document:
    doc_id: str  # path relative to the corpus folder, e.g. "strike-faq.pdf"
    title: str
    text: str
    content_hash: str  # sha256 of the source bytes: the key for incremental re-indexing
    pages: tuple[Page, ...] = ()
    source: str = ""  # absolute path it was read from, if any
    headings: tuple[Heading, ...] = ()  # in text order
    date: str | None = None  # ISO date (YYYY-MM-DD) the document states or carries; None when unknown
    date_source: str = ""  # where the date came from, e.g. "<time> tag", "dated line", "file name"
    # What reading it depended on, hashed (its bytes, sidecar date, title, site chrome, how files are
    # read): a re-ingest takes a document whose key is unchanged from the last build without reading
    # it, with what that read warned about, so the warnings are said again.
    read_key: str = ""
    read_note: str = ""  # the read's warnings, e.g. a decoding fallback or pages OCR could not read
    unread_scans: int = 0  # pages without a text layer left unread for want of OCR

    def page_at(self, offset: int) -> int | None:
        for page in self.pages:
            if page.start <= offset < page.end:
                return page.number
        return None

    def section_at(self, offset: int) -> str:
        """The heading path over offset, e.g. "Article 36 Sick Leave > Section 2"; "" when none."""
        return section_path(self.headings, offset)

    def is_heading(self, start: int, end: int) -> bool:
        """Whether text[start:end] lies within one heading (a heading never answers alone)."""
        return any(h.start <= start and end <= h.end for h in self.headings)


@dataclass(frozen=True)
class Chunk:
    """A searchable span: ``document.text[start:end] == text`` always holds."""

    chunk_id: str  # "<doc_id>:<n>"
    doc_id: str
    title: str
    text: str
    start: int
    end: int
    page: int | None
    section: str = ""  # heading path at the chunk's start: searched along with the text


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # fused score; higher is better
    dense: float | None = None  # cosine similarity, when dense retrieval found it
    lexical: float | None = None  # BM25 score, when lexical retrieval found it


@dataclass(frozen=True)
class Citation:
    """Traceable to an exact span: ``document.text[start:end] == quote``."""

    n: int
    doc_id: str
    title: str
    page: int | None
    chunk_id: str
    quote: str
    start: int
    end: int
    section: str = ""  # heading path at the quote, e.g. "Article 36 Sick Leave > Section 2"
    date: str | None = None  # the document's ISO date, when known
    ocr: bool = False  # the quote's page is a scan read by OCR: its words may hold misreadings
    # The same sentence found elsewhere (another document, or the same one again): quoted once,
    # with every place it is found (their n is this citation's).
    also: tuple["Citation", ...] = ()


@dataclass(frozen=True)
class Piece:
    """One stretch of an answer, in order: its text and the number of the citation it quotes.

    Renderers link ``n`` to its Citation; they never look for "[n]" in text,
    which a quote may contain itself.
    """

    text: str
    n: int | None = None  # None: text of ours that quotes nothing


def cited_text(pieces: tuple[Piece, ...]) -> str:
    """Plain text of an answer: each quote followed by its [n]."""
    return " ".join(f"{p.text} [{p.n}]" if p.n is not None else p.text for p in pieces)


@dataclass(frozen=True)
class Fix:
    """A word of the question read as a document word (rag.answer.spelling): question[start:end] == typed."""

    start: int
    end: int
    typed: str
    word: str

    def to_json(self) -> dict:
        return {"typed": self.typed, "word": self.word}


def read_as(fixes: tuple[Fix, ...], escape: Callable[[str], str] = str) -> str:
    """'Read “leve” as “leave”, “acrue” as “accrue”.': what an answer says of its fixes,
    each word passed through ``escape`` (the chat's Markdown escaping)."""
    return "Read " + ", ".join(f"“{escape(f.typed)}” as “{escape(f.word)}”" for f in fixes) + "."


@dataclass(frozen=True)
class Contact:
    """A person members can ask when the documents don't say (Settings.contact_*)."""

    name: str
    url: str = ""  # http(s) only
    phone: str = ""
    email: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "phone": self.phone, "email": self.email}


@dataclass(frozen=True)
class Answer:
    """What the member is shown. A crisis or medical answer's ``text`` is the fixed response; a
    crisis answer may also hold the documents' answer to what the message asked (``pieces``,
    ``citations``, ``refused`` False), shown under the crisis response."""

    question: str
    text: str
    refused: bool
    kind: Kind
    citations: tuple[Citation, ...] = ()
    retrieved: tuple[Hit, ...] = ()
    related: tuple[Citation, ...] = ()  # closest passages when refusing
    standalone_question: str = ""  # the follow-up rewritten with its history
    timings_ms: dict[str, float] = field(default_factory=dict)
    pieces: tuple[Piece, ...] = ()  # the cited answer, piece by piece; empty for refusals
    # Fixed resources line shown under an answer when the question sounds distressed
    # (the safety screen's "concern"); Markdown with **bold** only, in the question's language.
    notice: str = ""
    contact: Contact | None = None  # shown under a refusal: someone who may know
    mode: Mode = Mode.EXTRACTIVE
    dropped: int = 0  # generated sentences left out because no cited passage supports them
    corrected: tuple[Fix, ...] = ()  # words of the question read as document words (rag.answer.spelling)
    storable: bool = False  # the question may be kept (safety.storable); only the pipeline says so

    @property
    def latency_ms(self) -> float:
        return round(sum(self.timings_ms.values()), 2)

    def to_json(self) -> dict:
        """The ``rag ask --json`` object other programs and the eval rely on."""
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "kind": self.kind,
            "citations": [_citation_json(c) for c in self.citations],
            "pieces": [{"text": p.text, "n": p.n} for p in self.pieces],
            "retrieved": [
                {"doc_id": h.chunk.doc_id, "chunk_id": h.chunk.chunk_id, "score": round(h.score, 6)}
                for h in self.retrieved
            ],
            "related": [_citation_json(c) for c in self.related],
            "notice": self.notice,
            "contact": self.contact.to_json() if self.contact else None,
            "latency_ms": self.latency_ms,
            "mode": self.mode,
            "dropped": self.dropped,
            "corrected": [f.to_json() for f in self.corrected],
        }


def _citation_json(c: Citation) -> dict:
    return {
        "n": c.n, "doc_id": c.doc_id, "title": c.title, "page": c.page,
        "chunk_id": c.chunk_id, "quote": c.quote, "start": c.start, "end": c.end,
        "section": c.section, "date": c.date, "ocr": c.ocr, "also": [_citation_json(a) for a in c.also],
    }
