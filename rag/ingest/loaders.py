"""Turn files into Documents: text, title, and page spans for PDFs.

Each loader raises UnreadableDocumentError with a reason a person can act on;
``walk_corpus`` turns those into skip notes so one bad file never stops an ingest.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UnreadableDocumentError
from ..types import Document, Heading, Page
from . import dates, ocr
from .ocr import OcrOptions, page_ranges
from .pdftext import page_texts, rebuild
from .structure import html_headings, text_headings
from .titles import read_titles
from .word import read_docx

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx"}  # .mdx: Markdown with JSX components (dropped)
TEXT_SUFFIXES = {".txt"} | MARKDOWN_SUFFIXES
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
WORD_SUFFIXES = {".docx"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | WORD_SUFFIXES


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    unread_scans: int = 0  # pages without a text layer left unread: no OCR here (see ocr.INSTALL_HINT)


@dataclass(frozen=True)
class Loaded:
    document: Document
    # False when part of the file went unread for a passing reason (OCR ran out of time on a page):
    # the next ingest reads it again rather than taking this read from the build.
    final: bool = True

    @property
    def note(self) -> str:
        """What the read warned about, e.g. a decoding fallback worth telling the user about."""
        return self.document.read_note

    @property
    def unread_scans(self) -> int:
        """Pages without a text layer left unread: no OCR here (see ocr.INSTALL_HINT)."""
        return self.document.unread_scans


class NoTextLayer(UnreadableDocumentError):
    """A PDF none of whose pages has text (nor any OCR text)."""

    def __init__(self, reason: str, unread_scans: int = 0):
        super().__init__(reason)
        self.unread_scans = unread_scans


def load_file(path: Path, doc_id: str, date: str | None = None,
              repeated: frozenset[str] = frozenset(), ocr: OcrOptions | None = None) -> Loaded:
    """One file as a Document; `date` is a sidecar date that overrides what the file says;
    `repeated` lines of an HTML page are site chrome to leave out; `ocr` reads the PDF pages
    that have no text layer (None: they are skipped with a warning)."""
    data = path.read_bytes()
    if not data.strip():
        raise UnreadableDocumentError("empty file")
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    notes: list[str] = []
    pages: tuple[Page, ...] = ()
    headings: tuple[Heading, ...] = ()
    found: tuple[str | None, str] = (None, "")
    unread = 0
    final = True
    if suffix in PDF_SUFFIXES:
        pdf = _read_pdf(path, digest, ocr)
        text, pages, title, empty, unread, final = pdf.text, pdf.pages, pdf.title, pdf.empty, pdf.unread, pdf.final
        if empty:
            notes.append(f"page{'s' if len(empty) > 1 else ''} {page_ranges(empty)} of {path.name} "
                         "ha{} no text layer (scanned?); {} skipped".format(
                             "ve" if len(empty) > 1 else "s", "they were" if len(empty) > 1 else "it was"))
        notes.extend(pdf.notes)
        headings = text_headings(text)
        title = title or _pdf_title(text) or re.sub(r"[_-]+", " ", path.stem)
        found = _first_date((dates.dated_line(text), "dated line"), (dates.from_file_name(path.name), "file name"),
                            (pdf.meta_date, "PDF metadata"))
    elif suffix in WORD_SUFFIXES:
        word = read_docx(path)
        text, headings = word.text, word.headings
        title = word.title or re.sub(r"[_-]+", " ", path.stem)
        found = _first_date((dates.dated_line(text), "dated line"), (dates.from_file_name(path.name), "file name"),
                            (word.date, "Word document properties"))
    else:
        text, note = _decode(data)
        if note:
            notes.append(note)
        if suffix in HTML_SUFFIXES:
            text, title, spans, meta = _html_text(text, repeated)
            headings = html_headings(spans, text)
            found = _first_date(meta, (dates.dated_line(text), "dated line"),
                                (dates.from_file_name(path.name), "file name"))
        else:
            if suffix == ".mdx":
                text = mdx_text(text)
            headings = text_headings(text, markdown=suffix in MARKDOWN_SUFFIXES)
            title = _first_line(text)
            found = _first_date((dates.dated_line(text), "dated line"), (dates.from_file_name(path.name), "file name"))
    if not text.strip():
        raise UnreadableDocumentError("no text found")
    if date:
        found = (date, "sidecar " + dates.SIDECAR)
    doc = Document(doc_id=doc_id, title=title or doc_id, text=text, content_hash=digest, pages=pages,
                   source=str(path), headings=headings, date=found[0], date_source=found[1] if found[0] else "",
                   read_note="; ".join(notes), unread_scans=unread)
    return Loaded(doc, final)


def _first_date(*candidates: tuple[str | None, str]) -> tuple[str | None, str]:
    for value, source in candidates:
        if value:
            return value, source
    return None, ""


_MDX_STATEMENT = re.compile(r"^(?:import|export)\s.*$", re.M)  # ES module lines of an .mdx page
_MDX_TAG = re.compile(r"</?[A-Za-z][\w.:-]*(?:\s+[^<>]*?)?/?>")  # components and inline HTML: tags go, text stays


def mdx_text(text: str) -> str:
    """An .mdx page as Markdown: its import/export lines and JSX or HTML tags removed (their
    inner text kept), so "<Callout>Strike pay starts Monday</Callout>" reads as its words."""
    return _MDX_TAG.sub("", _MDX_STATEMENT.sub("", text))


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


_FRONT_MATTER_TITLE = re.compile(r"\A(---|\+\+\+)\s*\n(?:.*\n)*?title\s*[:=]\s*[\"']?(.+?)[\"']?\s*\n(?:.*\n)*?\1", re.M)


def _first_line(text: str) -> str:
    """A text or Markdown file's title: its front matter's title (YAML --- or TOML +++, as site
    generators write them), else its first line."""
    if m := _FRONT_MATTER_TITLE.match(text):
        return m.group(2).strip()[:200]
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return ""


# Site chrome: never main content, wherever it sits.
_DROP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "nav", "form", "button", "select",
              "input", "textarea", "dialog", "head", "canvas", "video", "audio", "object", "embed", "menu"}
_CHROME = re.compile(r"(^|[\s_-])(cookie|consent|gdpr|banner|skip|breadcrumbs?|share|social|newsletter|subscribe|"
                     r"sidebar|menu|navbar|site-shell|masthead|pagination|toolbar|sr-only|btn|button|cta)($|[\s_-])", re.I)
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "header", "footer", "aside", "li", "ul", "ol", "table",
               "thead", "tbody", "tr", "blockquote", "pre", "dl", "dt", "dd", "figure", "figcaption", "br", "hr",
               "fieldset", "details", "summary", "address", "h5", "h6", "caption"}
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
_META_DATES = ("article:modified_time", "article:published_time", "og:updated_time", "date", "dc.date",
               "dcterms.modified", "dcterms.date", "last-modified", "pubdate", "publish-date")


def _html_text(html: str, repeated: frozenset[str] = frozenset()
               ) -> tuple[str, str, list[tuple[int, int, int]], tuple[str | None, str]]:
    """Main content as lines, its title, (start, end, level) of its h1-h4 headings, and a date with its source.

    BeautifulSoup over <body>: the site's header and footer (those outside <main>
    and <article>), navigation, menus, forms, scripts, button-styled links and
    anything marked as cookie banner, share bar, sidebar or site shell are dropped
    wherever they sit. ``repeated`` lines (site chrome shared by many pages of a
    folder, see ``walk_corpus``) are left out too.
    """
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag

    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    page_title = title_tag.get_text(" ", strip=True) if title_tag else ""
    meta_date = _html_meta_date(soup)
    for tag in soup.find_all(lambda t: isinstance(t, Tag) and _is_chrome(t)):
        if not tag.decomposed:
            tag.decompose()
    # The body without its chrome: a page's own lead (an event's date and title) may sit
    # before <main>, so <main> alone would lose it.
    root = soup.body or soup
    if meta_date[0] is None:
        time_tag = root.find("time")
        # The date a reader sees first: a datetime attribute can lag the text it marks up
        # ('<time datetime="2025-10-27">November 3, 2025</time>' on a local083.org news page).
        iso = None if time_tag is None else (dates.parse_date(time_tag.get_text(" ", strip=True))
                                             or dates.parse_date(str(time_tag.get("datetime") or "")))
        if iso:
            meta_date = (iso, "<time> tag")

    lines: list[str] = []
    spans: list[tuple[int, int, int]] = []
    buffer: list[str] = []
    length = 0

    def emit(text: str, level: int = 0) -> None:
        nonlocal length
        text = " ".join(text.split())
        if not text or text in repeated:
            return
        if lines:
            length += 1  # the "\n" before it
        if level:
            spans.append((length, length + len(text), level))
        lines.append(text)
        length += len(text)

    def flush() -> None:
        emit("".join(buffer))
        buffer.clear()

    def walk(node) -> None:
        for child in node.children:
            if isinstance(child, Comment) or (isinstance(child, NavigableString) and type(child) is not NavigableString):
                continue
            if isinstance(child, NavigableString):
                buffer.append(str(child))
            elif child.name in _HEADING_TAGS:
                flush()
                emit(child.get_text(" "), _HEADING_TAGS[child.name])
            elif child.name in ("td", "th"):
                # A table row reads as one line: "Up to 10 weeks — Oregon is in tax schedule III ..."
                buffer.append(" — " if child.find_previous_sibling(["td", "th"]) else " ")
                walk(child)
            elif child.name == "a":
                walk(child)
                buffer.append(" ")  # adjacent links ("guide</a><a>Find") are separate words
            elif child.name in _BLOCK_TAGS:
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(root)
    flush()
    text = "\n".join(lines)
    first_h1 = next((text[a:b] for a, b, level in spans if level == 1), "")
    return text, _site_title(page_title) or first_h1 or _first_line(text), spans, meta_date


def _site_title(title: str) -> str:
    """"Impasse declared - SEIU Local 503, OSU" -> "Impasse declared": the page's name without the site's."""
    parts = re.split(r"\s+[|–—-]\s+", " ".join(title.split()))
    return parts[0] if len(parts) > 1 and len(parts[0]) >= 8 else " ".join(title.split())


def _is_chrome(tag) -> bool:
    if tag.name in _DROP_TAGS or tag.has_attr("hidden") or tag.get("aria-hidden") == "true":
        return True
    if tag.get("role") in ("navigation", "banner", "contentinfo", "search", "dialog", "menu"):
        return True
    if tag.name in ("header", "footer") and tag.find_parent(["article", "main"]) is None:
        return True  # the site's header and footer; an article's own header (title, date) stays
    marks = " ".join([*tag.get("class", []), tag.get("id", ""), tag.get("aria-label", "")])
    return bool(marks.strip()) and bool(_CHROME.search(marks))


def _html_meta_date(soup) -> tuple[str | None, str]:
    found = []
    for meta in soup.find_all("meta"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").lower()
        if key in _META_DATES and (iso := dates.parse_date(str(meta.get("content", "")))):
            found.append((_META_DATES.index(key), iso, key))
    if not found:
        return None, ""
    _, iso, key = min(found)
    return iso, f"<meta {key}>"


@dataclass(frozen=True)
class PdfRead:
    text: str  # rebuilt (see pdftext)
    pages: tuple[Page, ...]
    title: str  # the metadata title, unless it is a file name
    meta_date: str | None
    empty: list[int]  # pages left without text
    notes: list[str]  # OCR's warnings
    unread: int  # pages left unread for want of OCR
    final: bool  # False when OCR ran out of time on a page (see Loaded.final)


def _read_pdf(path: Path, digest: str, options: OcrOptions | None) -> PdfRead:
    """A PDF's text and what reading it found. Pages without a text layer are read by OCR when
    ``options`` is given and tesseract is installed.

    pypdf opens the file (its errors say what is wrong: a password, a damaged file) and reads
    the metadata; PDFium reads the text, which pypdf splits inside words (see pdftext)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError
    from pypdfium2 import PdfiumError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns on every repairable glitch
            reader = PdfReader(path, strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise UnreadableDocumentError("encrypted PDF (needs a password)")
            meta = reader.metadata or {}
            meta_title = str(meta.get("/Title") or "").strip()
            meta_date = dates.from_pdf_metadata(meta.get("/ModDate") or meta.get("/CreationDate"))
        texts = page_texts(path)
    except UnreadableDocumentError:
        raise
    except (PdfReadError, PdfiumError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise UnreadableDocumentError(f"corrupt PDF ({exc})") from None
    except Exception as exc:  # pypdf raises many ad-hoc types on damaged files
        raise UnreadableDocumentError(f"corrupt PDF ({type(exc).__name__}: {exc})") from None
    empty = [n for n, t in enumerate(texts, start=1) if not t.strip()]
    read: dict[int, str] = {}
    notes: list[str] = []
    unread = 0
    timed_out: tuple[int, ...] = ()
    if empty and options is not None and (engine := ocr.engine()) is not None and engine.languages:
        result = ocr.read_pages(path, empty, digest, options)
        read, notes, timed_out = result.texts, list(result.notes), result.timed_out
        texts = [read.get(n, t) for n, t in enumerate(texts, start=1)]
        if read:
            notes.insert(0, f"page{'s' if len(read) > 1 else ''} {page_ranges(sorted(read))} of {path.name} "
                            f"{'have' if len(read) > 1 else 'has'} no text layer (scanned?); read by OCR")
        empty = []  # OCR's notes name every page it could not read, and why
    elif empty and options is not None:
        unread = len(empty)
    if not any(t.strip() for t in texts):
        reason = "; ".join(notes) if notes else "PDF has no extractable text (scanned images?)"
        raise NoTextLayer(reason, unread)
    rebuilt = rebuild(texts)
    bounds = [*rebuilt.page_starts, len(rebuilt.text)]
    pages = tuple(Page(n, bounds[n - 1], bounds[n], ocr=n in read) for n in range(1, len(texts) + 1))
    # Word processors write the source file's name as the title ("Table of Contents_updated.pdf").
    if _FILE_NAME.search(meta_title) or not re.search(r"[A-Za-z]{3}", meta_title):
        meta_title = ""
    return PdfRead(rebuilt.text, pages, meta_title, meta_date, empty, notes, unread, not timed_out)


_TOC_ENTRY = re.compile(r"(\.\s?){4,}\s*[0-9ivxlc]+\s*$", re.I)
_FILE_NAME = re.compile(r"\.(pdf|docx?|odt|rtf|txt|pages|indd|xlsx?|pptx?)\s*$|^microsoft word\b|^untitled\b", re.I)


def _pdf_title(text: str) -> str:
    """The first real heading: the document's opening line(s), joined until they say something."""
    lines = [line.strip().rstrip("*") for line in text[:3000].splitlines()
             if line.strip() and not _TOC_ENTRY.search(line) and line.strip().casefold() != "table of contents"]
    title = ""
    for line in lines[:4]:
        title = f"{title} {line}".strip()
        if len(re.findall(r"[A-Za-z]{3,}", title)) >= 3:
            break
    if re.match(r"(article|section|appendix)\b", title, re.I):
        return ""  # the contents start at once: no cover title to take
    return title[:200]


@dataclass(frozen=True)
class FileTask:
    """One file to read, with what its folder says about it: the sidecar date, the title from the
    titles file, and the site chrome it shares with other pages (see ``_repeated_lines``). Reading
    it needs nothing else, so tasks can be read anywhere the path is (``rag ingest --ray``)."""
    root: Path
    path: Path
    date: str | None = None
    title: str | None = None
    repeated: frozenset[str] = frozenset()

    @property
    def doc_id(self) -> str:
        return self.path.relative_to(self.root).as_posix()


# A map that returns a list, in order: the builtin's by default, a Ray cluster's for `rag ingest --ray`.
Mapper = Callable[[Callable[[Any], Any], list], list]


def local_map(fn: Callable[[Any], Any], items: list) -> list:
    return [fn(item) for item in items]


def list_corpus(root: Path, mapper: Mapper = local_map) -> tuple[list[Skipped], list[FileTask]]:
    """What walking root finds: files refused before reading (links out of the folder, loops) and
    one task per file to read. The folder-wide work happens here, once: sidecar dates, titles, and
    the lines many HTML pages share (their page lines read through ``mapper``)."""
    root = Path(root)
    real_root = root.resolve()
    sidecar = dates.read_sidecar(root)
    titles = read_titles(root)
    seen_dirs: set[tuple[int, int]] = set()
    files: list[Path] = []
    outside: list[Path] = []
    loops: list[Path] = []
    refused: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop: walk it once only
            dirnames[:] = []
            refused.append(Skipped(dirpath, "symlink loop (folder already visited)"))
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                real = path.resolve()
            except (RuntimeError, OSError):  # self.txt -> self.txt, or a link chain that loops
                loops.append(path)
                continue
            # A link out of the corpus (notes.txt -> /etc/passwd) would be quoted to anyone who asks.
            if not real.is_relative_to(real_root):
                outside.append(path)
                continue
            files.append(path)
    refused += [Skipped(path.relative_to(root).as_posix(), "links outside the corpus folder") for path in outside]
    refused += [Skipped(path.relative_to(root).as_posix(), "symlink loop (the link points back to itself)")
                for path in loops]
    chrome = _repeated_lines([f for f in files if f.suffix.lower() in HTML_SUFFIXES], mapper)
    tasks = []
    for path in files:
        doc_id = path.relative_to(root).as_posix()
        tasks.append(FileTask(root, path, sidecar.get(doc_id), titles.get(doc_id), chrome.get(path, frozenset())))
    return refused, tasks


def file_key(task: FileTask, reading: str) -> str | None:
    """What reading this file depends on, hashed: its bytes, what its folder says about it, and
    ``reading`` (how files are read: loader version, libraries, OCR). None when it cannot be read."""
    try:
        digest = hashlib.sha256(task.path.read_bytes()).hexdigest()
    except OSError:
        return None
    parts = [digest, task.date or "", task.title or "", *sorted(task.repeated), reading]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def read_task(task: FileTask, ocr: OcrOptions | None = None) -> Loaded | Skipped:
    """One listed file loaded, or skipped with why; the titles file's title wins over the file's own."""
    item = _load_one(task, ocr)
    if task.title and isinstance(item, Loaded):
        return replace(item, document=replace(item.document, title=task.title))
    return item


def walk_corpus(root: Path, ocr: OcrOptions | None = None) -> Iterator[Loaded | Skipped]:
    """Every supported file under root (a folder; ingest checks it exists), loaded or skipped with why;
    ``ocr`` reads PDF pages without a text layer (None: they are skipped with a warning)."""
    refused, tasks = list_corpus(root)
    yield from refused
    for task in tasks:
        yield read_task(task, ocr)


REPEATED_PAGES = 5  # a line on this many pages of a folder is site chrome there (kept on its first page)


def page_lines(page: Path) -> frozenset[str] | None:
    """An HTML page's lines of text (None when it cannot be read: its own read says why)."""
    try:
        text, _ = _decode(page.read_bytes())
        return frozenset(_html_text(text)[0].splitlines())
    except (OSError, UnreadableDocumentError, ValueError, RecursionError):
        return None


def _repeated_lines(pages: list[Path], mapper: Mapper = local_map) -> dict[Path, frozenset[str]]:
    """For each HTML page, the lines it shares with REPEATED_PAGES+ pages of the folder,
    except on the first page that has them: site chrome is dropped, nothing is lost."""
    if len(pages) < REPEATED_PAGES:
        return {}
    lines_of = {page: lines for page, lines in zip(pages, mapper(page_lines, pages)) if lines is not None}
    seen: dict[str, list[Path]] = {}
    for page, lines in lines_of.items():
        for line in lines:
            seen.setdefault(line, []).append(page)
    common = {line: holders for line, holders in seen.items() if len(holders) >= REPEATED_PAGES}
    return {page: frozenset(line for line, holders in common.items() if page in holders and holders[0] != page)
            for page in lines_of}


def _load_one(task: FileTask, ocr: OcrOptions | None = None) -> Loaded | Skipped:
    doc_id = task.doc_id
    if task.path.suffix.lower() not in SUPPORTED:
        return Skipped(doc_id, f"unsupported file type {task.path.suffix or '(none)'}")
    try:
        return load_file(task.path, doc_id, task.date, task.repeated, ocr)
    except NoTextLayer as exc:
        return Skipped(doc_id, str(exc), exc.unread_scans)
    except UnreadableDocumentError as exc:
        return Skipped(doc_id, str(exc))
    except FileNotFoundError:
        return Skipped(doc_id, "file disappeared during ingest")
    except OSError as exc:
        return Skipped(doc_id, f"cannot read ({exc.strerror or exc})")
