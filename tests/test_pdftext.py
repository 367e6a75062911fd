"""PDF text read from the glyphs' positions: words a word processor drew in pieces stay whole."""
import re
from pathlib import Path

import pytest

from rag.config import shared_dir
from rag.ingest.chunking import chunk_document
from rag.ingest.embedding import tiktoken_counter
from rag.ingest.loaders import load_file
from rag.ingest import dates
from rag.ingest.pdftext import page_texts, rebuild
from tests.pdfs import text_pdf

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


# ── paragraphs and pages from word-processor PDFs ──────────────────────────

def _contract_pages() -> list[str]:
    body = [
        "ARTICLE 36: SICK LEAVE\n \nSection 1. Accrual. Full time employees shall accrue eight (8) hours of sick\n"
        "leave with pay credits for each full month they are in pay status. Employees who are in pay\n"
        "status for less than a full month shall accrue sick leave on a prorated basis.\n \n"
        "(A) Certification of an attending physician may be required within fifteen (15) calendar\n"
        "days of the request.\n \nSection 2. Use. Sick leave may be used for the employee's illness and the negoti-\n"
        "ations shall not limit the 90-\nday notice. Sick leave may be used for the",
        "illness of a family member, as defined in this Article, and for medical appointments.\n \n"
        "ARTICLE 37: BEREAVEMENT LEAVE\n \nEmployees shall be eligible for a maximum of four (4) work days\n"
        "of paid bereavement leave. Such negotiations shall commence promptly.",
        "ARTICLE 38: HOLIDAYS\n \nSection 1. The following holidays shall be recognized:\n \n(A) New Year's Day;\n \n"
        "(B) Juneteenth on June 19;\n \n(C) Labor Day.",
        "ARTICLE 39: LEAVES WITH PAY\n \nSection 1. Jury duty leave is paid at the regular straight time rate.",
    ]
    # Running header and footer with a page number, as a word processor prints them.
    return [f" \n{n + 1} \n \nOPU/SEIU 2022-2026 Agreement\n{page}\nRevised {2022 + n}-01-01 Collective Bargaining Agreement\n"
            for n, page in enumerate(body)]


def test_pdf_pages_become_paragraphs_without_running_headers():
    result = rebuild(_contract_pages())
    text = result.text
    assert "OPU/SEIU" not in text and "Revised" not in text  # header and footer, on every page
    assert "\n1 \n" not in text and not text.startswith("1")  # page numbers
    # Wrapped lines are one paragraph; the sentence over the page break stays whole.
    assert "accrue eight (8) hours of sick leave with pay credits for each full month" in text
    assert "Sick leave may be used for the illness of a family member" in text
    # Line-end hyphens: rejoined where the document spells the word whole, kept where real.
    assert "negotiations shall not limit" in text and "90-day notice" in text
    # Headings and list items keep their own lines.
    assert "\nARTICLE 37: BEREAVEMENT LEAVE\n" in text
    assert "\n(B) Juneteenth on June 19;\n" in text
    # The page of every character is known.
    starts = result.page_starts
    assert len(starts) == 4 and text[starts[1]:].startswith("illness of a family member")
    assert text[starts[2]:].startswith("ARTICLE 38")


def test_real_pdf_keeps_exact_offsets_pages_and_a_heading_title(tmp_path):
    pdf = text_pdf(tmp_path / "cba.pdf", _contract_pages(), title="Table of Contents_updated.pdf")
    loaded = load_file(pdf, "cba.pdf")
    doc = loaded.document
    assert doc.title != "Table of Contents_updated.pdf" and "Table of Contents" not in doc.title
    assert "OPU/SEIU" not in doc.text
    at = doc.text.index("illness of a family member")
    assert doc.page_at(at) == 2 and doc.page_at(doc.text.index("Juneteenth")) == 3
    assert doc.section_at(doc.text.index("prorated basis")) == "Article 36 Sick Leave > Section 1 Accrual"
    assert doc.section_at(doc.text.index("Juneteenth")) == "Article 38 Holidays > Section 1"
    chunks = chunk_document(doc, tiktoken_counter(), 60, 10)
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text and c.page == doc.page_at(c.start)
    bereavement = next(c for c in chunks if "four (4) work days" in c.text)
    assert bereavement.section == "Article 37 Bereavement Leave"
    assert not any("ARTICLE 37" in c.text and "ARTICLE 36" in c.text for c in chunks)  # never across articles
    # The "Revised" footer went with the running footer; reportlab stamps the file's metadata date.
    assert doc.date_source == "PDF metadata" and dates.parse_date(doc.date)


def test_a_pdf_page_without_text_is_a_warning_naming_file_and_page(tmp_path):
    pdf = text_pdf(tmp_path / "scan.pdf", ["Strike pay starts in week two.", "", "Pickets meet at 7 am."])
    loaded = load_file(pdf, "scan.pdf")
    assert "page 2 of scan.pdf has no text layer" in loaded.note
    assert "Pickets meet at 7 am." in loaded.document.text
