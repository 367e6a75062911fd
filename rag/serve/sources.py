"""Showing a cited passage in its document, read-only, from inside the corpus folder only.

A doc id comes from a URL, so it is trusted only after two checks: it must name a
document in the live index, and its real path (symlinks resolved) must lie inside
one of the corpus folders the index was built from. Anything else is "not found", with no hint of what exists.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

from ..types import Citation, Document


def corpus_file(roots: Path | Iterable[Path], documents: dict[str, Document], doc_id: str) -> Path | None:
    """The indexed file for doc_id, or None if it is unknown or resolves outside every corpus folder.

    ``roots`` are the folders the index was built from (its manifest records them);
    a document is looked up where it was read from, so ids from any folder work.
    """
    if doc_id not in documents or "\x00" in doc_id:
        return None
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    resolved = []
    for root in roots:
        try:
            resolved.append(Path(root).resolve())
        except (OSError, RuntimeError):
            continue
    recorded = documents[doc_id].source
    candidates = [Path(recorded)] if recorded else []
    candidates += [root / doc_id for root in resolved]
    for candidate in candidates:
        try:
            path = candidate.resolve(strict=True)
        except (OSError, RuntimeError):  # missing file, symlink loop
            continue
        if path.is_file() and any(path.is_relative_to(root) for root in resolved):
            return path
    return None


def source_url(c: Citation) -> str:
    """Where a citation's passage is shown highlighted; `#passage` makes the browser scroll to it."""
    return f"/source/{quote(c.doc_id)}?start={c.start}&end={c.end}#passage"


def file_url(c: Citation) -> str | None:
    """The original PDF opened at the cited page; None for other formats."""
    if not c.doc_id.lower().endswith(".pdf"):
        return None
    return f"/files/{quote(c.doc_id)}" + (f"#page={c.page}" if c.page else "")


def document_url(doc_id: str) -> str:
    """Where a member opens a whole document: the PDF itself, else its text on our origin (an HTML
    page served from our origin could run its own scripts)."""
    return f"/files/{quote(doc_id)}" if doc_id.lower().endswith(".pdf") else f"/source/{quote(doc_id)}"


def built_when(stamp: str) -> str:
    """An index manifest's build time for people: "06 Dec 2026, 18:40 UTC"."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%d %b %Y, %H:%M UTC")
    except ValueError:
        return stamp


def render_source(doc: Document, start: int | None, end: int | None) -> str:
    """The document as escaped HTML with [start, end) marked.

    Rendered from the indexed text, not the file: citation offsets point into
    that text, so the highlight is exact even for PDFs and HTML.
    """
    text = doc.text
    lo = max(0, min(start if start is not None else 0, len(text)))
    hi = max(lo, min(end if end is not None else lo, len(text)))
    page = doc.page_at(lo) if hi > lo else None
    where = f" · page {page}" if page else ""
    pdf = (f' · <a href="/files/{escape(quote(doc.doc_id))}#page={page or 1}">open the PDF</a>'
           if doc.doc_id.lower().endswith(".pdf") else "")
    if hi > lo:
        body = f'{escape(text[:lo])}<mark id="passage">{escape(text[lo:hi])}</mark>{escape(text[hi:])}'
    else:
        body = escape(text)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(doc.title)}</title>
<link rel="stylesheet" href="/qa-static/source.css">
</head><body><main>
<header><h1>{escape(doc.title)}</h1>
<p class="meta">{escape(doc.doc_id)}{where}{pdf} · <a href="/">back to the chat</a></p></header>
<div class="doc">{body}</div>
</main></body></html>
"""
