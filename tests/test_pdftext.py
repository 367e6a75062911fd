"""PDF text read from the glyphs' positions: words a word processor drew in pieces stay whole."""
import re
from pathlib import Path

import pytest

from rag.config import shared_dir
from rag.ingest.chunking import chunk_document
from rag.ingest.embedding import tiktoken_counter
from rag.ingest.loaders import load_file
from rag.ingest.pdftext import page_texts

SEIU = shared_dir("corpora", "seiu503-higher-ed", "seiu503-osu_seiu_cba_2022-2026.pdf")
needs_seiu = pytest.mark.skipif(not SEIU.exists(), reason="needs ../shared/corpora (the SEIU 503 contract)")


def pieces_pdf(path: Path) -> Path:
    """A page drawn as Word draws a justified line: "...on t", then "he" placed by a text matrix
    of its own where the "t" ends, "uni" at the start of the next line, then a jump back to the
    first line's origin and a Td down to "versity" (SEIU 503 contract, p. 152)."""
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    first = "NOTE: the deadline will be 5p.m. on t"
    text = c.beginText()
    text.setFont("Helvetica", 10)
    text.setTextOrigin(72, 700)
    text.textOut(first)
    text.setTextTransform(1, 0, 0, 1, 72 + stringWidth(first, "Helvetica", 10), 700)
    text.textOut("he")
    text.setTextTransform(1, 0, 0, 1, 72, 688)
    text.textOut("uni")
    text.setTextTransform(1, 0, 0, 1, 72, 700)
    text.moveCursor(stringWidth("uni", "Helvetica", 10), 12)  # Td to just after "uni", one line down
    text.textOut("versity next business day.")
    c.drawText(text)
    c.showPage()
    c.save()
    return path


def test_a_word_drawn_in_pieces_reads_whole(tmp_path):
    pdf = pieces_pdf(tmp_path / "pieces.pdf")
    doc = load_file(pdf, "pieces.pdf").document
    assert "5p.m. on the university next business day." in doc.text
    assert not re.search(r"\bt he\b|\buni versity\b", doc.text)


def test_pypdf_splits_the_same_page(tmp_path):
    """Why PDFium reads the text: pypdf's plain extraction guesses spaces and line breaks from the
    order of the text operators and splits this page's words (if this fails, pypdf has changed)."""
    from pypdf import PdfReader

    pdf = pieces_pdf(tmp_path / "pieces.pdf")
    assert "on the university" not in " ".join(PdfReader(pdf).pages[0].extract_text().split())
    assert "on the\nuniversity" in page_texts(pdf)[0]


def test_page_texts_keep_pages_in_order_and_empty_pages_empty(tmp_path):
    from tests.pdfs import text_pdf

    pdf = text_pdf(tmp_path / "three.pdf", ["Strike pay starts in week two.", "", "Pickets meet at 7 am."])
    assert [t.strip() for t in page_texts(pdf)] == ["Strike pay starts in week two.", "", "Pickets meet at 7 am."]


@pytest.fixture(scope="module")
def seiu():
    return load_file(SEIU, SEIU.name).document


@needs_seiu
def test_real_contract_page_152_reads_whole_words(seiu):
    """The note under the grievance timeline read "5p.m. on t he uni versity next business day"."""
    at = seiu.text.index("5p.m. on the university next business day")
    assert seiu.page_at(at) == 152
    for split in ("t he", "uni versity", "emplo yee", "n otified", "R elations", "y our"):
        assert not re.search(rf"(?<![\w’']){split}\b", seiu.text), split


@needs_seiu
def test_real_contract_chunks_quote_exact_spans_on_their_pages(seiu):
    chunks = chunk_document(seiu, tiktoken_counter(), 170, 40)
    assert len(chunks) > 500
    for c in chunks:
        assert seiu.text[c.start:c.end] == c.text
        page = next(p for p in seiu.pages if p.start <= c.start < p.end)
        assert c.page == page.number
    ends = [p.end for p in seiu.pages]
    assert ends == sorted(ends) and ends[-1] == len(seiu.text) and len(seiu.pages) == 152


def test_a_word_hyphenated_at_a_line_end_is_rejoined_only_where_the_document_spells_it_whole(tmp_path):
    """PDFium joins "part-" and "time" and marks the hyphen "\\x02"; the document's own spelling decides."""
    from tests.pdfs import text_pdf

    pdf = text_pdf(tmp_path / "hyphens.pdf", ["A regular part-\ntime employee joins the negoti-\nations. "
                                              "Negotiations resume Monday."])
    assert "\x02" not in "".join(page_texts(pdf))
    text = load_file(pdf, "hyphens.pdf").document.text
    assert text == "A regular part-time employee joins the negotiations. Negotiations resume Monday."
