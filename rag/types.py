"""The plain records that flow one way through the pipeline.

    Path ─load─▶ Document ─chunk─▶ Chunk ─embed/index─▶ Hit ─answer─▶ Answer[Citation]
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Page:
    """A page's span in its document's text; PDFs have many, other formats none."""

    number: int  # 1-based, as a reader counts
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    doc_id: str  # path relative to the corpus folder, e.g. "strike-faq.pdf"
    title: str
    text: str
    content_hash: str  # sha256 of the source bytes: the key for incremental re-indexing
    pages: tuple[Page, ...] = ()
    source: str = ""  # absolute path it was read from, if any

    def page_at(self, offset: int) -> int | None:
        for page in self.pages:
            if page.start <= offset < page.end:
                return page.number
        return None


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


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    refused: bool
    kind: str  # "answer" | "not_found" | "crisis" | "medical" | "invalid"
    citations: tuple[Citation, ...] = ()
    retrieved: tuple[Hit, ...] = ()
    related: tuple[Citation, ...] = ()  # closest passages when refusing
    standalone_question: str = ""  # the follow-up rewritten with its history
    timings_ms: dict[str, float] = field(default_factory=dict)
    mode: str = "extractive"  # "generated" when a language model wrote it and every sentence was verified
    dropped: int = 0  # generated sentences left out because no cited passage supports them

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
            "retrieved": [
                {"doc_id": h.chunk.doc_id, "chunk_id": h.chunk.chunk_id, "score": round(h.score, 6)}
                for h in self.retrieved
            ],
            "related": [_citation_json(c) for c in self.related],
            "latency_ms": self.latency_ms,
            "mode": self.mode,
            "dropped": self.dropped,
        }


def _citation_json(c: Citation) -> dict:
    return {
        "n": c.n, "doc_id": c.doc_id, "title": c.title, "page": c.page,
        "chunk_id": c.chunk_id, "quote": c.quote, "start": c.start, "end": c.end,
    }
