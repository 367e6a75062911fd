"""A document's date, found once at ingest and never guessed, and how it is shown.

Where a date may come from, most trusted first:

1. a sidecar ``.dates.json`` in the corpus folder: ``{"path/in/folder.pdf": "2026-08-07"}``
   (for files that carry no date of their own; hidden, so ingest never reads it as a document);
2. HTML metadata: ``<meta property="article:modified_time|article:published_time">``,
   ``<meta name="date|dc.date|last-modified">``, or the first ``<time datetime>`` in the main content;
3. a dated line near the top of the text: "Updated Aug. 7, 2026", "Last updated: October 1, 2025",
   "Published 2026-02-04", "Reviewed: July 20, 2026" (the latest such line wins);
4. a date in the file name: ``news_2026-08-07-impasse.html``;
5. PDF metadata (modification, else creation date).

Anything else leaves the date ``None``: an undated document is never given one. A file
name with only a year ("strike-2022.txt") gives the reduced-precision ISO date "2022".
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_MONTH = r"(?P<month>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
_WRITTEN = re.compile(_MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>(?:19|20)\d\d)\b", re.I)
_ISO = re.compile(r"(?<!\d)(?P<year>(?:19|20)\d\d)-(?P<month>\d\d)-(?P<day>\d\d)(?!\d)")
_DATED_LINE = re.compile(r"\b(?:last\s+)?(?:updated|published|posted|reviewed|revised|dated)\b[^\n.]{0,30}?[:\s]\s*$", re.I)
SIDECAR = ".dates.json"


def parse_date(text: str) -> str | None:
    """The first full date written in text (ISO or "Aug. 7, 2026"), as YYYY-MM-DD; None if none."""
    found = [m for m in (_ISO.search(text), _WRITTEN.search(text)) if m]
    for m in sorted(found, key=lambda m: m.start()):
        iso = _iso(m)
        if iso:
            return iso
    return None


def _iso(m: re.Match) -> str | None:
    month = m.group("month")
    month = int(month) if month.isdigit() else MONTHS[month[:3].lower()]
    try:
        return dt.date(int(m.group("year")), month, int(m.group("day"))).isoformat()
    except ValueError:
        return None


def dated_line(text: str, head: int = 3000) -> str | None:
    """The latest date stated as "Updated/Published/Reviewed ... <date>" in the first `head` chars."""
    dates = []
    window = text[:head]
    for m in list(_WRITTEN.finditer(window)) + list(_ISO.finditer(window)):
        before = window[max(0, m.start() - 40):m.start()]
        if _DATED_LINE.search(before):
            iso = _iso(m)
            if iso:
                dates.append(iso)
    return max(dates) if dates else None


def from_file_name(name: str) -> str | None:
    """A full date in a file name ("news_2026-08-07-x.html"), else a lone year ("strike-2022.txt")
    as a reduced-precision ISO date ("2022"); a range such as "2022-2026" is no date."""
    m = _ISO.search(name) or re.search(r"(?<!\d)(?P<year>(?:19|20)\d\d)[_.](?P<month>\d\d)[_.](?P<day>\d\d)(?!\d)", name)
    if m:
        return _iso(m)
    years = re.findall(r"(?<!\d)(?<!\d-)((?:19|20)\d\d)(?!\d)(?!-\d)", Path(name).stem)
    return years[0] if len(years) == 1 else None


def from_pdf_metadata(raw: object) -> str | None:
    """pypdf's "D:20240502115017-07'00'" metadata dates."""
    m = re.match(r"D?:?(?P<year>(?:19|20)\d\d)(?P<month>\d\d)(?P<day>\d\d)", str(raw or ""))
    return _iso(m) if m else None


def read_sidecar(root: Path) -> dict[str, str]:
    """{doc path: ISO date} from root/.dates.json; bad entries are ignored, never guessed at."""
    path = Path(root) / SIDECAR
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): iso for k, v in data.items() if isinstance(v, str) and (iso := parse_date(v))}


def display(iso: str | None) -> str:
    """"2026-08-07" -> "Aug 7, 2026", "2022" -> "2022"; "" when unknown."""
    if not iso:
        return ""
    if re.fullmatch(r"\d{4}", iso):
        return iso
    try:
        d = dt.date.fromisoformat(iso)
    except ValueError:
        return ""
    return f"{d:%b} {d.day}, {d.year}"
