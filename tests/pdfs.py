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
        _draw_lines(c, text)
        c.showPage()
    c.save()
    return path


def _draw_lines(c, text: str) -> None:
    """A text page as a word processor draws it: one line of text per line, 16 points apart."""
    y = 720
    for line in text.split("\n"):
        c.drawString(72, y, line)
        y -= 16


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


def scanned_pdf(path: Path, pages: list[str], scanned: set[int], font: str | None = None) -> Path:
    """A PDF whose pages numbered in ``scanned`` (1-based) are pictures of their text, as a
    scanner makes them (no text layer); the others are ordinary text pages. ``font``: a TrueType
    file for scripts PIL's default font lacks."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    face = ImageFont.truetype(font, 40) if font else ImageFont.load_default(size=40)
    c = canvas.Canvas(str(path), pagesize=letter)
    for number, text in enumerate(pages, start=1):
        if number in scanned:
            image = Image.new("L", (2550, 3300), 255)  # a letter page at 300 dpi
            draw = ImageDraw.Draw(image)
            for i, line in enumerate(text.split("\n")):
                draw.text((300, 300 + 60 * i), line, fill=0, font=face)
            c.drawImage(ImageReader(image), 0, 0, *letter)
        else:
            _draw_lines(c, text)
        c.showPage()
    c.save()
    return path
