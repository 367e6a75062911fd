"""Word .docx files (python-docx): paragraphs, headings, list items and tables, in document order.

Paragraphs are separated by a blank line, as in Markdown; a list item starts "- "; a table row
is its cells joined with " | ", one row a line. Headings come from Word's own styles ("Title",
"Heading 1".."Heading 9"), the way a leaflet's author marked them, so section paths work as
for the other formats.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import UnreadableDocumentError
from ..types import Heading

_HEADING_STYLE = re.compile(r"^heading (\d)$", re.I)
_LIST_STYLE = re.compile(r"^list", re.I)  # "List Bullet", "List Number 2", "List Paragraph"
TITLE = -1  # _block's level for a paragraph in Word's "Title" style: the document's title, not a section


@dataclass(frozen=True)
class WordText:
    text: str
    headings: tuple[Heading, ...]
    title: str  # the core properties' title, else the first heading; "" when neither
    date: str | None  # ISO date the file was last saved (or created), from its core properties


def read_docx(path: Path) -> WordText:
    """A .docx file's text; UnreadableDocumentError (with why) when it is not a Word file."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile):  # python-docx says "not found" of a file that is no zip
        raise UnreadableDocumentError("corrupt .docx (not a zip package, as every Word file is)") from None
    except KeyError:  # a zip without a Word document part: another zip renamed .docx
        raise UnreadableDocumentError("not a Word file: a zip without Word's parts ([Content_Types].xml)") from None
    except Exception as exc:  # damaged XML inside a real zip: lxml and python-docx raise many types
        raise UnreadableDocumentError(f"corrupt .docx ({type(exc).__name__}: {exc})") from None
    blocks: list[str] = []  # paragraphs and tables, joined by blank lines
    headings: list[Heading] = []
    titled = ""  # the first paragraph in Word's "Title" style
    length = 0
    for block in document.iter_inner_content():
        text, level = _block(block)
        if not text:
            continue
        start = length + (2 if blocks else 0)
        if level == TITLE:
            titled = titled or text
        elif level:
            headings.append(Heading(start, start + len(text), level, text))
        blocks.append(text)
        length = start + len(text)
    props = document.core_properties
    title = (props.title or "").strip()
    if not re.search(r"[A-Za-z]{3}", title) or title.lower().endswith((".docx", ".doc")):
        title = titled or (headings[0].title if headings else "")
    when = props.modified or props.created
    return WordText("\n\n".join(blocks), tuple(headings), title[:200],
                    when.date().isoformat() if isinstance(when, datetime) else None)


def _block(block) -> tuple[str, int]:
    """A paragraph's or a table's text and its heading level (0: not a heading; TITLE: the document's title)."""
    from docx.table import Table

    if isinstance(block, Table):
        return "\n".join(row for row in map(_row, block.rows) if row), 0
    text = " ".join(block.text.split())
    style = (block.style.name if block.style is not None else "") or ""
    if style.lower() == "title":
        return text, TITLE
    if m := _HEADING_STYLE.match(style):
        return text, int(m.group(1))
    # python-docx has no public numbering API; a list item in the "Normal" style carries <w:numPr>.
    if text and (_LIST_STYLE.match(style) or block._p.pPr is not None and block._p.pPr.numPr is not None):
        return "- " + text, 0
    return text, 0


def _row(row) -> str:
    """A table row as "cell | cell": a merged cell (python-docx repeats it) once."""
    cells: list[str] = []
    for cell in row.cells:
        text = " ".join(cell.text.split())
        if not cells or text != cells[-1]:
            cells.append(text)
    return " | ".join(cells) if any(cells) else ""
