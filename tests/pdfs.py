"""Real PDFs for tests, made on the spot: good, encrypted, text-less, corrupt."""
from __future__ import annotations

from pathlib import Path


def text_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    if title:
        c.setTitle(title)
    for text in pages:
        y = 720
        for line in text.split("\n"):
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return path


def encrypted_pdf(path: Path, password: str = "secret", algorithm: str = "RC4-128") -> Path:
    from pypdf import PdfReader, PdfWriter

    plain = text_pdf(path.with_suffix(".plain.pdf"), ["Confidential bargaining notes."])
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt(password, algorithm=algorithm)
    with path.open("wb") as f:
        writer.write(f)
    plain.unlink()
    return path


def imageonly_pdf(path: Path) -> Path:
    """A 'scanned' PDF: drawings, no text layer."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.rect(100, 100, 300, 400, fill=1)
    c.showPage()
    c.save()
    return path


def truncated_pdf(path: Path) -> Path:
    good = text_pdf(path.with_suffix(".full.pdf"), ["A page that will be cut in half."] * 3)
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    good.unlink()
    return path
