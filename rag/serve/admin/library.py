"""The documents staff manage: uploads checked by content, posted updates, title and date edits
(the sidecars ingest reads), and removal to a trash folder they can be restored from.

Nothing here writes a file half-way into a corpus folder: a file is written in full beside the
folder (``data/incoming``), then linked in under a name no one else holds, in one step
(``os.link`` fails rather than replace another staff member's file). Sidecars are changed under
a lock, read-modify-write, and replaced atomically, so two staff editing at once lose nothing.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from ...config import Settings
from ...errors import UploadError
from ...ingest.dates import SIDECAR, parse_date
from ...ingest.titles import MAX_TITLE, TITLES

MAX_NAME = 100
MAX_UPDATE_CHARS = 200_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Kind:
    name: str  # what staff read: "PDF", "Word", "HTML", "Markdown", "text"
    suffix: str


PDF, HTML, MARKDOWN, TEXT = Kind("PDF", ".pdf"), Kind("HTML", ".html"), Kind("Markdown", ".md"), Kind("text", ".txt")
WORD = Kind("Word", ".docx")
_BY_SUFFIX = {".pdf": PDF, ".docx": WORD, ".html": HTML, ".htm": HTML, ".md": MARKDOWN, ".markdown": MARKDOWN,
              ".txt": TEXT}
_ZIP = b"PK\x03\x04"  # a .docx is a zip archive holding word/document.xml
# A Word file's parts unzipped: a union's longest contract is a few MB; more is a zip bomb.
MAX_DOCX_UNZIPPED = 200 * 2**20
MAX_DOCX_PARTS = 5_000
# Signatures of what a union office might send by mistake, named so the message says what it was.
_OTHER = ((b"PK\x03\x04", "a zip archive (or a Word/Excel file, which are zips)"), (b"\x1f\x8b", "a gzip archive"),
          (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"\xd0\xcf\x11\xe0", "an old Office file"),
          (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"\x7fELF", "a program"), (b"MZ", "a Windows program"))
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)


def sniff(head: bytes, name: str) -> Kind:
    """The file's kind from its first bytes; its name must agree. UploadError says what it really is."""
    suffix = Path(name).suffix.lower()
    claimed = _BY_SUFFIX.get(suffix)
    if claimed is None:
        raise UploadError(f"{name}: only PDF, Word (.docx), HTML, Markdown (.md) and text (.txt) files can be added")
    head = head.removeprefix(b"\xef\xbb\xbf")
    if b"%PDF-" in head[:1024]:  # the PDF header may follow up to 1 KB of junk
        found = PDF
    elif claimed is WORD and head.startswith(_ZIP):
        found = WORD  # that it is a Word file and not any zip: _check_docx
    else:
        other = next((what for magic, what in _OTHER if head.startswith(magic)), None)
        if other:
            raise UploadError(f"{name}: this is {other}, not a {claimed.name} file; nothing was added")
        if b"\x00" in head or _undecodable(head):
            raise UploadError(f"{name}: this is not a text file (binary content); nothing was added")
        found = HTML if _HTML_START.match(head) else claimed if claimed in (MARKDOWN, TEXT) else TEXT
    if (found in (PDF, WORD) or claimed in (PDF, WORD)) and found is not claimed:
        raise UploadError(f"{name}: the name says {claimed.name} but the content is {found.name}; "
                          "nothing was added")
    if claimed is HTML and found is not HTML:
        raise UploadError(f"{name}: the name says HTML but the content is not an HTML page; nothing was added")
    return found if found is not TEXT or claimed is not MARKDOWN else MARKDOWN


def _undecodable(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 3  # a character cut at the end of the sample is fine
    return False


def safe_name(name: str, kind: Kind) -> str:
    """A file name that is only a name: no folders, no control or odd characters, no leading dot,
    the suffix its content earned ("../../etc/passwd.pdf" -> "etc-passwd.pdf")."""
    name = unicodedata.normalize("NFKD", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = name.encode("ascii", "ignore").decode()
    stem = _UNSAFE.sub("-", Path(name).stem)
    stem = re.sub(r"[-. ]{2,}", "-", stem).strip("-. ")[: MAX_NAME - 10] or "document"
    return stem + kind.suffix


def _reserve(folder: Path, name: str, source: Path) -> Path:
    """Link source into folder under name, or name-2, name-3 ... if taken; never replaces a file."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(1, 1000):
        target = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            continue
    raise UploadError(f"too many files named like {name}; rename it and try again")


def incoming(settings: Settings) -> Path:
    """Where files are written in full before they enter the documents folder (same disk)."""
    folder = settings.data_dir / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def add_file(settings: Settings, written: Path, name: str) -> Path:
    """A fully written upload (a file in incoming()), checked, moved into the documents folder."""
    try:
        with open(written, "rb") as f:
            head = f.read(4096)
        kind = sniff(head, name)
        if kind is PDF:
            _check_pdf(written, name, settings.max_upload_pages)
        elif kind is WORD:
            _check_docx(written, name)
        return _reserve(settings.documents_dir, safe_name(name, kind), written)
    finally:
        written.unlink(missing_ok=True)


def _check_pdf(path: Path, name: str, max_pages: int) -> None:
    """Refuse a PDF that cannot be opened or holds more pages than a union document does."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UploadError(f"{name}: the PDF is locked with a password; save an unlocked copy")
        pages = len(reader.pages)
    except UploadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError, OSError, MemoryError) as exc:
        raise UploadError(f"{name}: the PDF cannot be read ({type(exc).__name__}); nothing was added") from None
    if pages > max_pages:
        raise UploadError(f"{name}: {pages:,} pages is more than the {max_pages:,} allowed "
                          "(RAG_MAX_UPLOAD_PAGES); nothing was added")
    if pages == 0:
        raise UploadError(f"{name}: the PDF has no pages; nothing was added")


def _check_docx(path: Path, name: str) -> None:
    """Refuse a zip that is not a Word document, or one that would unzip to far more than any."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"{name}: the Word file cannot be read ({type(exc).__name__}); nothing was added") from None
    if not any(p.filename == "word/document.xml" for p in parts):
        raise UploadError(f"{name}: this is a zip archive, not a Word document; nothing was added")
    if len(parts) > MAX_DOCX_PARTS or sum(p.file_size for p in parts) > MAX_DOCX_UNZIPPED:
        raise UploadError(f"{name}: the Word file would unzip to more than {MAX_DOCX_UNZIPPED // 2**20} MB; "
                          "nothing was added")


def post_update(settings: Settings, title: str, day: str, text: str) -> Path:
    """A dated Markdown document from the page's form: "# title", the date line, the text."""
    title = clean_title(title)
    iso = check_date(day)
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise UploadError("the update has no text; write it in the box")
    if len(text) > MAX_UPDATE_CHARS:
        raise UploadError(f"the update is {len(text):,} characters; keep it under {MAX_UPDATE_CHARS:,}")
    shown = Date.fromisoformat(iso)
    body = f"# {title}\n\nPosted {shown:%B} {shown.day}, {shown.year}\n\n{text}\n"
    written = incoming(settings) / f".{secrets.token_hex(8)}.md"
    written.write_text(body, encoding="utf-8")
    try:
        path = _reserve(settings.documents_dir, f"{iso}-{safe_name(title.lower(), MARKDOWN)}", written)
    finally:
        written.unlink(missing_ok=True)
    set_labels(settings.documents_dir, path.name, title=None, day=iso)
    return path


def clean_title(title: str) -> str:
    title = " ".join(unicodedata.normalize("NFC", title or "").split())
    title = "".join(c for c in title if unicodedata.category(c)[0] != "C")  # controls, bidi overrides
    if not title:
        raise UploadError("a title is needed")
    if len(title) > MAX_TITLE:
        raise UploadError(f"the title is {len(title)} characters; keep it under {MAX_TITLE}")
    return title


def check_date(day: str) -> str:
    iso = parse_date((day or "").strip())
    if not iso or iso != (day or "").strip():
        raise UploadError(f"the date must be a day written YYYY-MM-DD, got {day!r}")
    return iso


def set_labels(root: Path, relative: str, title: str | None, day: str | None) -> None:
    """Write a document's title and/or date into root's sidecars (None leaves one as it is,
    "" removes it), under one lock, each sidecar replaced atomically."""
    with FileLock(root / ".sidecars.lock"):
        for sidecar, value in ((TITLES, title), (SIDECAR, day)):
            if value is None:
                continue
            path = root / sidecar
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            data = data if isinstance(data, dict) else {}
            if value:
                data[relative] = value
            else:
                data.pop(relative, None)
            tmp = root / f".{sidecar}.{secrets.token_hex(4)}"
            tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)


@dataclass(frozen=True)
class Trashed:
    key: str  # the trash entry's folder name
    title: str
    doc_id: str
    root: str  # the folder it was removed from
    relative: str  # its path there
    removed_at: str
    removed_by: str


def remove(settings: Settings, roots: Iterable[Path], path: Path, doc_id: str, title: str, who: str) -> Trashed:
    """Move a document's file (and its sidecar labels) to the trash, with a note of where it came from."""
    root = next((Path(r) for r in roots if path.is_relative_to(Path(r).resolve())), None)
    if root is None:
        raise UploadError("that document is not in a corpus folder; nothing was removed")
    relative = path.relative_to(root.resolve()).as_posix()
    key = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    entry = settings.trash_dir / key
    entry.mkdir(parents=True)
    item = Trashed(key, title, doc_id, str(root.resolve()), relative, _now(), who)
    (entry / "removed.json").write_text(json.dumps(item.__dict__, ensure_ascii=False), encoding="utf-8")
    shutil.move(str(path), entry / "file")
    set_labels(root.resolve(), relative, title="", day="")
    return item


def trash(settings: Settings) -> list[Trashed]:
    """What was removed, newest first."""
    out = []
    for entry in sorted(settings.trash_dir.glob("*/removed.json"), reverse=True):
        try:
            out.append(Trashed(**json.loads(entry.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return out


def restore(settings: Settings, key: str) -> Trashed:
    """Put a removed document back where it was (refused if a file now has its name)."""
    item = next((t for t in trash(settings) if t.key == key), None)
    if item is None:
        raise UploadError("that removed document is not in the trash")
    entry = settings.trash_dir / item.key
    target = Path(item.root) / item.relative
    if not target.resolve().is_relative_to(Path(item.root).resolve()):
        raise UploadError("that removed document's place is outside its folder; restore it by hand")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(entry / "file", target)
    except FileExistsError:
        raise UploadError(f"a file named {item.relative} is there now; remove or rename it first") from None
    shutil.rmtree(entry)
    return item


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
