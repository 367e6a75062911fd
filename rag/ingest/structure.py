"""Headings and the section path of every offset: contract Articles and Sections, markdown, HTML.

A document's outline is found once, at ingest, as ``Heading`` spans over its
text. From them come each chunk's heading path ("Article 36 Sick Leave >
Section 1 Sick Leave with Pay"), which retrieval searches along with the chunk
text, and the rule that a heading alone is never an answer sentence.

HTML headings come from the h1-h4 tags (the loader records their spans);
plain text, markdown and PDF text are read line by line:

- ``ARTICLE 36: SICK LEAVE``, ``Article 10 - Overtime``, ``ARTICLE 10`` with its
  title on the next line, ``APPENDIX A``, ``LETTER OF AGREEMENT ...``  -> level 1
- ``Section 2(A). Utilization of Sick Leave with Pay.`` (the heading is the
  number and its short title; the text that follows on the line is body)   -> level 2
- a short line in capitals (``OVERTIME``, ``TABLE OF CONTENTS``)            -> level 3
- markdown ``#``..``######``                                               -> its own level
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..types import Heading, section_path

_ARTICLE = re.compile(
    r"(?P<kind>ARTICLE|Article|APPENDIX|Appendix|LETTER OF AGREEMENT|Letter of Agreement|ADDENDUM|Addendum)"
    r"(?:\s+(?P<num>[0-9]{1,3}(?:\.[0-9]+)?[A-Z]?|[IVXLC]{1,6}|[A-Z][0-9]?)\b)?"
    r"\s*[:.\-–—]?\s*(?P<title>.*)$")
_SECTION = re.compile(r"(?P<kind>Section|SECTION|Sec\.)\s+(?P<num>[0-9]{1,3}(?:\.[0-9]+)*(?:\s?\([A-Za-z0-9]{1,4}\))*)"
                      r"\s*[.:]\s*")
_SECTION_TITLE = re.compile(r"(?P<title>[A-Z][^.;:!?]{1,80}?)[.:](?=\s|$)")
_MARKDOWN = re.compile(r"(?P<marks>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_TOC = re.compile(r"(\.\s?){3,}\s*[0-9ivxlc]+\s*$|\s[0-9]{1,3}\s*$")
_SMALL = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "with", "from"}


def text_headings(text: str, markdown: bool = False) -> tuple[Heading, ...]:
    """Headings of plain, markdown or rebuilt PDF text, in text order."""
    out: list[Heading] = []
    lines = list(_lines(text))
    skip_next = False
    for i, (start, line) in enumerate(lines):
        if skip_next:
            skip_next = False
            continue
        end = start + len(line)
        md = _MARKDOWN.match(line) if markdown else None
        if md:
            title = md.group("title")
            article = _ARTICLE.fullmatch(title)
            if _TOC.search(title) and article:
                continue  # a table-of-contents entry, not the article itself
            out.append(Heading(start, end, len(md.group("marks")), _display(title)))
            continue
        article = _ARTICLE.match(line)
        if article and _is_article_line(article, line):
            title = article.group("title").rstrip("*").strip()
            head_end = end
            if not title and i + 1 < len(lines) and _is_caps_line(lines[i + 1][1], min_words=1):
                title = lines[i + 1][1]  # "ARTICLE 10" / "OVERTIME"
                head_end = lines[i + 1][0] + len(lines[i + 1][1])
                skip_next = True
            name = " ".join(p for p in (_display(article.group("kind")), article.group("num") or "", _display(title)) if p)
            out.append(Heading(start, head_end, 1, name))
            continue
        section = _SECTION.match(line)
        if section:
            rest = line[section.end():]
            titled = _SECTION_TITLE.match(rest)
            title = titled.group("title").strip() if titled and is_title_case(titled.group("title")) else ""
            head_end = start + len(line[:section.end() + (titled.end() if title else 0)].rstrip())
            name = f"Section {section.group('num').replace(' ', '')}" + (f" {_display(title)}" if title else "")
            out.append(Heading(start, head_end, 2, name))
            continue
        if _is_caps_line(line):
            out.append(Heading(start, end, 3, _display(line.rstrip("*"))))
    return tuple(out)


def html_headings(spans: Iterable[tuple[int, int, int]], text: str) -> tuple[Heading, ...]:
    """Headings from (start, end, h-level) spans the HTML loader recorded."""
    return tuple(Heading(a, b, level, " ".join(text[a:b].split())) for a, b, level in spans if b > a)


def section_breaks(headings: tuple[Heading, ...]) -> list[int]:
    """Offsets where a chunk must not run across: the start of each top- or second-level heading."""
    if not headings:
        return []
    top = min(h.level for h in headings)
    return [h.start for h in headings if h.level <= top + 1]


def chunk_section(headings: tuple[Heading, ...], text: str, start: int, end: int) -> str:
    """The heading path of a chunk, read after any headings the chunk opens with."""
    offset = start
    for h in headings:
        if h.start < offset:
            continue
        if h.start > offset or h.end >= end:
            break
        offset = h.end
        while offset < end and text[offset].isspace():
            offset += 1
    return section_path(headings, offset if offset < end else start)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    offset = 0
    for raw in text.split("\n"):
        stripped = raw.strip()
        if stripped:
            yield offset + (len(raw) - len(raw.lstrip())), stripped
        offset += len(raw) + 1


def _is_article_line(match: re.Match, line: str) -> bool:
    title = match.group("title").rstrip("*").strip()
    if not match.group("num") and (not match.group("kind").isupper() or any(c.islower() for c in title)):
        return False  # "Article (See Article 25 ...)" is a cross-reference, not a heading
    if title and _TOC.search(title) and not any(c.islower() for c in title):
        return False  # "ARTICLE 6 - HOLIDAYS ....24"
    if not title:
        return bool(match.group("num")) or match.group("kind").isupper()
    if any(c.islower() for c in title):
        # "Article 10 - Overtime" is a heading; "Article 19 - Discrimination grievance which is appealed..." is not.
        return is_title_case(title) and len(title.split()) <= 8
    return len(title.split()) <= 12


def _is_caps_line(line: str, min_words: int = 2) -> bool:
    letters = [c for c in line if c.isalpha()]
    words = line.split()
    return (len(letters) >= 3 * min_words and len(words) >= min_words and not any(c.islower() for c in letters) and len(words) <= 10
            and not re.search(r"[.;,]$", line.rstrip("*")) and not _TOC.search(line)
            and sum(c.isdigit() for c in line) <= 4)


def is_title_case(phrase: str, max_words: int | None = 8) -> bool:
    """Title Case: every word capitalised except the small ones ("Sick Leave with Pay"), in at
    most ``max_words`` words (None: any number)."""
    words = [w for w in re.split(r"[\s/–-]+", phrase.strip()) if w]
    if not words or (max_words is not None and len(words) > max_words):
        return False
    return all(w[0].isupper() or w[0].isdigit() or w[0] in "(“\"'" or w.lower() in _SMALL for w in words)


def _display(text: str) -> str:
    """Capitals to title case for a readable path; mixed case left as written."""
    text = " ".join(text.split()).strip(" :.-–—")
    if any(c.islower() for c in text):
        return text
    parts = re.split(r"([ /])", text.lower())
    return "".join(w if (i and w in _SMALL) or w in " /" else w[:1].upper() + w[1:] for i, w in enumerate(parts))
