"""PDF text as a reader sees it: paragraphs, not the lines a page happened to wrap at.

``page_texts`` reads each page with PDFium (pypdfium2), which places every glyph and
joins the ones that touch into words and lines. pypdf's ``extract_text`` builds lines
from the order of the text operators and guesses a space from the jump between two of
them; where a word processor draws a line's last letters with a text matrix of their
own (Word's justified lines), pypdf reads "5p.m. on t he uni versity next"
(SEIU 503 contract, p. 152). Figures: docs/libraries.md.

PDFium gives one string per page with a newline at every wrapped line, the running
header/footer and the page number inline. From those page strings this module
rebuilds the document text:

- running headers, footers and page numbers (lines at the top or bottom of a
  page whose shape, digits aside, repeats on many pages) are dropped;
- wrapped lines are joined into paragraphs; a word hyphenated at a line end is
  rejoined when the document itself spells it unhyphenated elsewhere, otherwise
  the hyphen is kept ("90-day", "non-bargaining");
- headings, list items, table rows and table-of-contents lines keep their own line;
- a sentence that runs over a page break is joined like any other wrap.

The result is one string plus the offset where each page's text starts, so the
page of every character is known and quotes stay ``text[start:end]``.
"""
from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# A line ends a sentence or clause: . ! ? : ; with closing quotes/brackets after.
_TERMINAL = re.compile(r"[.!?:;][\"'”’)\]*]*$")
# A new block: "(A) ...", "(1) ...", "1. ...", "a) ...", bullets.
_LIST_ITEM = re.compile(r"^(\([A-Za-z0-9]{1,4}\)|[0-9]{1,2}[.)]|[a-zA-Z][.)]|[•▪●◦■□➢✓\-–*])\s")
_HEADING_START = re.compile(r"^(ARTICLE|Article|SECTION|APPENDIX|Appendix|LETTER OF AGREEMENT|Letter of Agreement)\b[\s\d:.A-Z–-]")
_SECTION_START = re.compile(r"^(Section|SECTION|Sec\.)\s+\d+[A-Za-z()0-9]*[.:]")
_TOC_LINE = re.compile(r"(\.\s?){4,}\s*[ivxlc\d]+\s*$|\s{3,}\d+\s*$")
_PAGE_NUMBER = re.compile(r"^(page\s+)?[-–—]?\s*([0-9]{1,4}|[ivxlc]{1,6})\s*[-–—]?(\s+of\s+\d+)?$", re.I)
_WS = re.compile(r"\s+")
_NUMERIC = re.compile(r"^[$]?[0-9][0-9.,%/:$-]*[A-Z]?$")
_DIGITS = re.compile(r"\d+")
_WORD_HYPHEN = re.compile(r"([A-Za-z]+)-$")
_WORD_START = re.compile(r"^([a-z]+)")
EDGE_LINES = 3  # lines at each end of a page that may be running header/footer


@dataclass(frozen=True)
class PdfText:
    text: str
    page_starts: tuple[int, ...]  # offset in text where each page's text starts (len == pages)
    dropped: tuple[str, ...]  # the running header/footer shapes removed, for tests and notes


def page_texts(path: Path) -> list[str]:
    """Each page's text, lines as PDFium finds them ("" for a page with no text layer).

    Raises pypdfium2's PdfiumError for a file PDFium cannot open (the caller names the cause).
    PDFium is not thread-safe: one document is read by one thread at a time.
    """
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)
    try:
        texts = []
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            # get_text_bounded: the page's visible area in full Unicode (get_text_range is UCS-2).
            texts.append(_lines(textpage.get_text_bounded()))
            textpage.close()
            page.close()
        return texts
    finally:
        document.close()


def _lines(text: str) -> str:
    r"""PDFium's page text with "\n" line ends and its line-end hyphens given back.

    PDFium joins a word hyphenated at a line end and marks the hyphen "\x02" ("part\x02time
    employee", "re\x02ferred"); it goes back to "-" and a line break, and ``rebuild`` decides,
    from the document's own spelling, whether the hyphen stays ("part-time") or goes ("referred").
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "-\n")


def rebuild(pages: list[str]) -> PdfText:
    lines = [[_WS.sub(" ", line).strip() for line in page.splitlines()] for page in pages]
    running = _running_shapes(lines)
    kept: list[list[str]] = []
    for page in lines:
        content = [i for i, line in enumerate(page) if line]
        edges = set(content[:EDGE_LINES] + content[-EDGE_LINES:])
        kept.append([
            "" if i in edges and (_shape(line) in running or _PAGE_NUMBER.match(line)) else line
            for i, line in enumerate(page)
        ])
    vocabulary = _vocabulary(kept)
    width = _typical_width(kept)
    parts: list[str] = []
    page_starts: list[int] = []
    length = 0
    prev = ""  # the previous non-blank line, "" after a paragraph break
    pending_break = False
    for page in kept:
        page_starts.append(length)
        first_on_page = True
        content = [i for i, line in enumerate(page) if line]
        # Blank lines before the first and after the last line of a page are page
        # layout, not paragraph breaks: a sentence that ends a page unfinished goes on.
        page = page[content[0]:content[-1] + 1] if content else []
        if prev and page:
            pending_break = bool(_TERMINAL.search(prev))
        for line in page:
            if not line:
                if prev:
                    pending_break = True
                continue
            drop_hyphen = False
            if not parts:
                sep = ""
            elif pending_break:
                sep = "\n\n"
            elif _starts_block(prev, line, width):
                sep = "\n"
            else:
                sep, drop_hyphen = _joiner(prev, line, vocabulary)
            if drop_hyphen:  # "negoti-" + "ations": take the hyphen back out of the emitted text
                parts[-1] = parts[-1][:-1]
                length -= 1
            if first_on_page:
                page_starts[-1] = length + len(sep)
                first_on_page = False
            parts.append(sep + line)
            length += len(sep) + len(line)
            prev, pending_break = line, False
        if first_on_page:  # a page with no text: it starts (and ends) where the next one would
            page_starts[-1] = length
    return PdfText("".join(parts), tuple(page_starts), tuple(sorted(running)))


def is_heading_line(line: str) -> bool:
    """A contract heading line: "ARTICLE 23 – SICK LEAVE", "ARTICLE 10", "OVERTIME", "APPENDIX A"."""
    if _HEADING_START.match(line) and len(line.split()) <= 14 and not _TOC_LINE.search(line):
        return True
    letters = [c for c in line if c.isalpha()]
    return (len(letters) >= 4 and not any(c.islower() for c in letters) and len(line.split()) <= 10
            and not _TERMINAL.search(line.rstrip("*")) and not _TOC_LINE.search(line))


def is_table_line(line: str) -> bool:
    """A row of figures ("14B 3397 3530 3687 3843"): numbers are at least 3 and 30% of its words."""
    words = line.split()
    numbers = sum(1 for w in words if _NUMERIC.match(w))
    return numbers >= 3 and numbers >= 0.3 * len(words)


def _starts_block(prev: str, line: str, width: float) -> bool:
    if is_heading_line(prev) or is_heading_line(line) or _TOC_LINE.search(line) or _TOC_LINE.search(prev):
        return True
    if is_table_line(prev) or is_table_line(line):
        return True
    ended = bool(_TERMINAL.search(prev))
    if ended and (_LIST_ITEM.match(line) or _SECTION_START.match(line)):
        return True
    # A sentence that stops well short of the margin ends its paragraph; a short line
    # with no punctuation before a capitalised one is a title ("Strike FAQ").
    if not ended and len(prev) < 0.5 * width and line[:1].isupper() and not prev.endswith((",", "-", "–", "—", "(")):
        return True
    return ended and len(prev) < 0.8 * width


def _joiner(prev: str, line: str, vocabulary: set[str]) -> tuple[str, bool]:
    """(separator, drop the line-end hyphen) for two lines of one paragraph."""
    if prev.endswith("-") and line[:1].isalnum():
        hyphen, start = _WORD_HYPHEN.search(prev), _WORD_START.match(line)
        if hyphen and start:
            joined = (hyphen.group(1) + start.group(1)).lower()
            compound = f"{hyphen.group(1)}-{start.group(1)}".lower()
            if joined in vocabulary and compound not in vocabulary:
                return "", True
        return ("" if prev[-2:-1] != " " else " "), False  # a real hyphen: "90-day", "(1-1/2)"
    if prev.endswith(("—", "–")) and prev[-2:-1] != " ":
        return "", False  # "October 15—November 15"
    return " ", False


def _vocabulary(pages: list[list[str]]) -> set[str]:
    words: set[str] = set()
    for page in pages:
        for line in page:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+(?:-[A-Za-z]+)*", line))
    return words


def _typical_width(pages: list[list[str]]) -> float:
    widths = [len(line) for page in pages for line in page if len(line) > 20]
    if not widths:
        return 80.0
    widths.sort()
    return float(widths[int(0.8 * (len(widths) - 1))]) or statistics.mean(widths)


def _shape(line: str) -> str:
    return _DIGITS.sub("#", line).casefold()


def _running_shapes(pages: list[list[str]]) -> set[str]:
    """Shapes of lines repeated at the top (or at the bottom) of at least a third of the pages.

    Counted separately for the top and the bottom edge, and only with 4+ pages of
    text: in a short document a repeated line cannot be told from content.
    """
    with_text = [[line for line in p if line] for p in pages if any(p)]
    if len(with_text) < 4:
        return set()
    top: Counter[str] = Counter()
    bottom: Counter[str] = Counter()
    for content in with_text:
        top.update({_shape(line) for line in content[:EDGE_LINES]})
        bottom.update({_shape(line) for line in content[-EDGE_LINES:]})
    need = max(3, len(with_text) // 3)
    return {shape for counts in (top, bottom) for shape, n in counts.items() if n >= need}
