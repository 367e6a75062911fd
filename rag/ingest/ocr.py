"""Text for PDF pages that have none (scans): PDFium renders the page, tesseract reads it.

pytesseract drives Debian's ``tesseract-ocr`` (English and Spanish data); pypdfium2, which
already reads the PDF's text, renders the page at 300 dpi. A page's OCR text is kept on disk,
keyed by the file's sha256, the page, tesseract's version and the languages, so a re-ingest
never reads the same page twice. Figures (pages, characters, seconds, a hand check): docs/ocr.md.
"""
from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import single_threaded_children

LANGUAGES = ("eng", "spa")
PSM = 4  # tesseract's page segmentation: one column of text lines of any size
DPI = 300  # tesseract's own advice for body text; 200 dpi was 15% faster and no better (docs/ocr.md)
# Below this mean word confidence (0-100, weighted by word length) a page's OCR text is noise: a
# script tesseract has no data for, a photo, a blank page with specks. Measured: docs/ocr.md.
MIN_CONFIDENCE = 70.0
UNRELIABLE = "\x00unreliable"  # what a page whose OCR was noise is cached as (never a page's text)
_NAMES = {"eng": "English", "spa": "Spanish"}
INSTALL_HINT = ("install tesseract-ocr to read them by OCR (as root: make ocr, or apt-get install "
                "tesseract-ocr tesseract-ocr-eng tesseract-ocr-spa), then ingest again")

# (image, tesseract languages "eng+spa", timeout in seconds) -> (text, mean word confidence 0-100)
Recognizer = Callable[[Any, str, float], tuple[str, float]]


@dataclass(frozen=True)
class Engine:
    version: str  # e.g. "5.3.0": part of the cache key, a new tesseract reads pages anew
    languages: tuple[str, ...]  # of LANGUAGES, those tesseract has data for


@dataclass(frozen=True)
class OcrOptions:
    """How an ingest reads scanned pages (Settings.ocr, ocr_max_pages, ocr_timeout_s)."""

    cache_dir: Path | None = None  # where page texts are kept; None: not kept
    max_pages: int = 200  # per file; past it one warning and the rest are skipped
    timeout_s: float = 60.0  # per page: a damaged or huge image never holds the ingest for long
    # The reader of one page image: tesseract by default. A public hook, so a caller (a test,
    # a benchmark) can count or time the pages really read, or plug in another engine.
    recognize: Recognizer | None = None

    def __post_init__(self):
        if self.max_pages < 0:
            raise ValueError(f"RAG_OCR_MAX_PAGES must be >= 0, got {self.max_pages}")
        if self.timeout_s <= 0:
            raise ValueError(f"RAG_OCR_TIMEOUT_S must be > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class OcrPages:
    texts: dict[int, str]  # page number (1-based) -> its OCR text, for the pages it could read
    notes: tuple[str, ...]  # warnings: pages over the limit, timeouts, unreadable pages
    timed_out: tuple[int, ...] = ()  # pages OCR ran out of time on: not cached, tried again next ingest


@functools.cache
def engine() -> Engine | None:
    """The installed tesseract, or None when it (or pytesseract) is missing."""
    try:
        import pytesseract

        version = str(pytesseract.get_tesseract_version())
        have = set(pytesseract.get_languages(config=""))
    except Exception:  # not installed, not on PATH, or a broken install: all mean "no OCR"
        return None
    return Engine(version, tuple(lang for lang in LANGUAGES if lang in have))


def tesseract(image, languages: str, timeout_s: float) -> tuple[str, float]:
    """One page image read by tesseract: its text and the mean confidence of its words."""
    import pytesseract

    # --psm 4 (one column of lines): the default (3) made a column of a contract's section numbers
    # ("11.2.7.1") apart from their paragraphs; same speed (docs/ocr.md).
    with single_threaded_children():
        tsv = pytesseract.image_to_data(image, lang=languages, config=f"--psm {PSM}", timeout=timeout_s)
    return _text_and_confidence(tsv)


def _text_and_confidence(tsv: str) -> tuple[str, float]:
    """tesseract's words (TSV) as lines, a blank line between paragraphs, and their mean
    confidence weighted by length: one run gives both."""
    paragraphs: dict[tuple[str, str], dict[str, list[str]]] = {}
    total = weight = 0.0
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        word, conf = (row.get("text") or "").strip(), float(row.get("conf") or -1)
        if word and conf >= 0:
            total += conf * len(word)
            weight += len(word)
            lines = paragraphs.setdefault((row["block_num"], row["par_num"]), {})
            lines.setdefault(row["line_num"], []).append(word)
    text = "\n\n".join("\n".join(" ".join(words) for words in lines.values()) for lines in paragraphs.values())
    return text, (total / weight if weight else 0.0)


def read_pages(path: Path, numbers: list[int], digest: str, options: OcrOptions) -> OcrPages:
    """OCR text for the given pages of a PDF (the caller checked ``engine()``)."""
    found = engine()
    if found is None or not found.languages:
        raise RuntimeError("read_pages needs tesseract with English or Spanish data (see engine())")
    languages = "+".join(found.languages)
    todo, over = numbers[:options.max_pages], numbers[options.max_pages:]
    notes: list[str] = []
    if over:
        notes.append(f"{len(over)} more page{'s' if len(over) > 1 else ''} without a text layer past the "
                     f"OCR limit ({options.max_pages} a file, RAG_OCR_MAX_PAGES) {'were' if len(over) > 1 else 'was'} "
                     f"skipped: {page_ranges(over)}")
    recognize = options.recognize or tesseract
    texts: dict[int, str] = {}
    timed_out: list[int] = []
    blank: list[int] = []
    unreadable: list[int] = []
    document = None
    try:
        for number in todo:
            cached = _cache_file(options.cache_dir, digest, number, found, languages)
            if cached and cached.is_file():
                text = cached.read_text(encoding="utf-8")  # "" blank, UNRELIABLE: read but noise
            else:
                if document is None:
                    import pypdfium2 as pdfium

                    document = pdfium.PdfDocument(path)
                text = _read_one(document, number, recognize, languages, options.timeout_s)
                if text is None:
                    timed_out.append(number)
                    continue
                if cached:
                    _write(cached, text)
            if text == UNRELIABLE:
                unreadable.append(number)
            elif text.strip():
                texts[number] = text
            else:
                blank.append(number)
    finally:
        if document is not None:
            document.close()
    if timed_out:
        notes.append(f"OCR took over {options.timeout_s:g}s (RAG_OCR_TIMEOUT_S) on page"
                     f"{'s' if len(timed_out) > 1 else ''} {page_ranges(timed_out)}; skipped")
    if blank:
        notes.append(f"page{'s' if len(blank) > 1 else ''} {page_ranges(blank)} without a text layer "
                     f"{'are' if len(blank) > 1 else 'is'} blank (OCR found no words)")
    if unreadable:
        langs = ", ".join(_NAMES.get(lang, lang) for lang in found.languages)
        notes.append(f"OCR could not read page{'s' if len(unreadable) > 1 else ''} {page_ranges(unreadable)} "
                     f"(its words came out as noise: a language tesseract has no data for here, which reads "
                     f"{langs}, or a picture or a poor scan); skipped")
    return OcrPages(texts, tuple(notes), tuple(timed_out))


def _read_one(document, number: int, recognize: Recognizer, languages: str, timeout_s: float) -> str | None:
    """A page's text; "" when blank; UNRELIABLE when what tesseract read is noise; None when it timed out."""
    page = document[number - 1]
    try:
        image = page.render(scale=DPI / 72, grayscale=True).to_pil()
    finally:
        page.close()
    try:
        text, confidence = recognize(image, languages, timeout_s)
    except RuntimeError as exc:  # pytesseract's timeout; other tesseract failures name themselves
        if "timeout" in str(exc).lower():
            return None
        raise
    if not text.strip():
        return ""
    return text if confidence >= MIN_CONFIDENCE else UNRELIABLE


def _cache_file(cache_dir: Path | None, digest: str, number: int, found: Engine, languages: str) -> Path | None:
    if cache_dir is None:
        return None
    return cache_dir / digest[:2] / digest / f"p{number}.tesseract-{found.version}.{languages}.dpi{DPI}.psm{PSM}.txt"


def _write(path: Path, text: str) -> None:
    """Written whole or not at all: a killed ingest leaves no half page in the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def page_ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out, run = [], [numbers[0]]
    for n in numbers[1:]:
        if n == run[-1] + 1:
            run.append(n)
        else:
            out.append(run)
            run = [n]
    out.append(run)
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in out)
