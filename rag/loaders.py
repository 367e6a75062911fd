"""Turn files into Documents: text, title, and page spans for PDFs.

Each loader raises UnreadableDocumentError with a reason a person can act on;
``walk_corpus`` turns those into skip notes so one bad file never stops an ingest.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import UnreadableDocumentError
from .types import Document, Page

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    document: Document
    note: str = ""  # e.g. a decoding fallback worth telling the user about


def load_file(path: Path, doc_id: str) -> Loaded:
    data = path.read_bytes()
    if not data.strip():
        raise UnreadableDocumentError("empty file")
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        text, pages, title = _read_pdf(path)
        note = ""
    else:
        text, note = _decode(data)
        if suffix in HTML_SUFFIXES:
            text, title = _html_text(text)
        else:
            title = _first_line(text)
    if not text.strip():
        raise UnreadableDocumentError("no text found")
    if suffix not in PDF_SUFFIXES:
        pages = ()
    doc = Document(doc_id=doc_id, title=title or doc_id, text=text,
                   content_hash=digest, pages=pages, source=str(path))
    return Loaded(doc, note)


def _decode(data: bytes) -> tuple[str, str]:
    # NUL bytes never occur in real text files; they mark a binary file that
    # merely has a text extension.
    if b"\x00" in data[:8192]:
        raise UnreadableDocumentError("binary data, not text")
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        # Windows-1252 is what non-UTF-8 office text almost always is; the
        # replacement handler keeps the few bytes it cannot map visible.
        return data.decode("cp1252", errors="replace"), "not valid UTF-8; decoded as Windows-1252"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return ""


def _html_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe"]):
        title_tag = tag.find("title") if tag.name == "head" else None
        title = title_tag.get_text(strip=True) if title_tag else ""
        tag.decompose()
        if title:
            soup.attrs["data-title"] = title
    title = soup.attrs.get("data-title", "")
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    text = "\n".join(line for line in lines if line)
    return text, title or _first_line(text)


def _read_pdf(path: Path) -> tuple[str, tuple[Page, ...], str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns on every repairable glitch
            reader = PdfReader(path, strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise UnreadableDocumentError("encrypted PDF (needs a password)")
            texts = [(page.extract_text() or "").strip() for page in reader.pages]
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except UnreadableDocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise UnreadableDocumentError(f"corrupt PDF ({exc})") from None
    except Exception as exc:  # pypdf raises many ad-hoc types on damaged files
        raise UnreadableDocumentError(f"corrupt PDF ({type(exc).__name__}: {exc})") from None
    if not any(texts):
        raise UnreadableDocumentError("PDF has no extractable text (scanned images?)")
    parts, pages, offset = [], [], 0
    for number, page_text in enumerate(texts, start=1):
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(page_text)
        pages.append(Page(number, offset, offset + len(page_text)))
        offset += len(page_text)
    text = "".join(parts)
    return text, tuple(pages), str(meta_title).strip() or _first_line(text)


def walk_corpus(root: Path) -> Iterator[Loaded | Skipped]:
    """Every supported file under root (a folder; ingest checks it exists), loaded or skipped with why."""
    root = Path(root)
    real_root = root.resolve()
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop: walk it once only
            dirnames[:] = []
            yield Skipped(dirpath, "symlink loop (folder already visited)")
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            # A link out of the corpus (notes.txt -> /etc/passwd) would be quoted to anyone who asks.
            if not path.resolve().is_relative_to(real_root):
                yield Skipped(path.relative_to(root).as_posix(), "links outside the corpus folder")
                continue
            yield _load_one(root, path)


def _load_one(root: Path, path: Path) -> Loaded | Skipped:
    doc_id = path.relative_to(root).as_posix()
    if path.suffix.lower() not in SUPPORTED:
        return Skipped(doc_id, f"unsupported file type {path.suffix or '(none)'}")
    try:
        return load_file(path, doc_id)
    except UnreadableDocumentError as exc:
        return Skipped(doc_id, str(exc))
    except FileNotFoundError:
        return Skipped(doc_id, "file disappeared during ingest")
    except OSError as exc:
        return Skipped(doc_id, f"cannot read ({exc.strerror or exc})")
