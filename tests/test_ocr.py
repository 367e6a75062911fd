"""Scanned PDF pages read by tesseract: real PDFs with pages that are pictures of their text."""
from pathlib import Path

import pytest

from rag.config import Settings
from rag.ingest import ocr
from rag.ingest.loaders import Skipped, load_file, walk_corpus
from rag.ingest.ocr import OcrOptions
from rag.ingest.run import ingest, ocr_options
from rag.serve.ui import sources_markdown

from tests.pdfs import scanned_pdf

_engine = ocr.engine()
pytestmark = pytest.mark.skipif(_engine is None or "eng" not in _engine.languages,
                                reason="tesseract-ocr with English data is not installed (as root: make ocr)")

PAGES = ["Strike Bulletin\nThe union and the district met on Monday.",
         "Strike pay\nStrike pay is $500 a week from the second week of the strike.\nPickets meet at 7 am.",
         "Health benefits\nHealth benefits continue through the end of the month."]
CYRILLIC_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class Counting:
    """The public recognizer hook: tesseract, counting the pages it really reads."""

    def __init__(self):
        self.pages = 0

    def __call__(self, image, languages, timeout_s):
        self.pages += 1
        return ocr.tesseract(image, languages, timeout_s)


def test_a_scanned_page_is_read_with_exact_offsets_and_marked(tmp_path):
    pdf = scanned_pdf(tmp_path / "bulletin.pdf", PAGES, scanned={2})
    loaded = load_file(pdf, "bulletin.pdf", ocr=OcrOptions(tmp_path / "cache"))
    doc = loaded.document
    assert "page 2 of bulletin.pdf has no text layer (scanned?); read by OCR" in loaded.note
    at = doc.text.index("$500 a week")
    assert doc.page_at(at) == 2 and doc.page_at(doc.text.index("Health benefits continue")) == 3
    assert [p.ocr for p in doc.pages] == [False, True, False]
    assert "Pickets meet at 7 am." in doc.text[doc.pages[1].start:doc.pages[1].end]


def test_a_scanned_page_answers_and_is_cited_as_scanned(tmp_path, embedder):
    from rag.pipeline import Pipeline

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    scanned_pdf(corpus / "bulletin.pdf", PAGES, scanned={2})
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    ingest([corpus], settings, lambda: embedder, progress=False)
    answer = Pipeline(settings, embedder).ask("How much is strike pay?")
    cited = next(c for c in answer.citations if "$500" in c.quote)
    assert cited.page == 2 and cited.ocr
    assert any(c["ocr"] is True for c in answer.to_json()["citations"])
    assert ", page 2, scanned page" in sources_markdown(answer.citations, "Sources")
    assert any((tmp_path / "data" / "ocr-cache").rglob("p2.tesseract-*.txt"))  # cached under the data folder


def test_the_cache_means_a_page_is_read_once(tmp_path):
    pdf = scanned_pdf(tmp_path / "bulletin.pdf", PAGES, scanned={1, 2})
    counting = Counting()
    options = OcrOptions(tmp_path / "cache", recognize=counting)
    first = load_file(pdf, "bulletin.pdf", ocr=options).document
    assert counting.pages == 2
    again = load_file(pdf, "bulletin.pdf", ocr=options).document
    assert counting.pages == 2 and again == first
    # Another cache folder (or none) reads again.
    load_file(pdf, "bulletin.pdf", ocr=OcrOptions(None, recognize=counting))
    assert counting.pages == 4


def test_past_the_page_limit_one_warning_and_the_rest_skipped(tmp_path):
    pdf = scanned_pdf(tmp_path / "long.pdf", PAGES, scanned={1, 2, 3})
    settings = Settings(data_dir=tmp_path / "data", ocr_max_pages=1)
    loaded = load_file(pdf, "long.pdf", ocr=ocr_options(settings))
    assert "2 more pages without a text layer past the OCR limit (1 a file, RAG_OCR_MAX_PAGES) were skipped: 2-3" \
        in loaded.note
    assert "Strike Bulletin" in loaded.document.text and "$500" not in loaded.document.text
    assert [p.ocr for p in loaded.document.pages] == [True, False, False]
    with pytest.raises(ValueError, match="RAG_OCR_MAX_PAGES"):
        Settings(ocr_max_pages=-1)


def test_a_page_over_the_time_limit_is_skipped_with_a_warning(tmp_path):
    pdf = scanned_pdf(tmp_path / "slow.pdf", PAGES, scanned={2})
    loaded = load_file(pdf, "slow.pdf", ocr=OcrOptions(None, timeout_s=0.01))
    assert "OCR took over 0.01s (RAG_OCR_TIMEOUT_S) on page 2; skipped" in loaded.note
    assert "Health benefits continue" in loaded.document.text


@pytest.mark.skipif(not CYRILLIC_FONT.exists(), reason="DejaVu Sans (fonts-dejavu-core) draws the Cyrillic page")
def test_a_page_in_a_language_tesseract_lacks_is_a_warning_and_nothing_else_is_lost(tmp_path):
    russian = "Профсоюз и работодатель подписали новый договор.\nОтпуск по болезни составляет десять дней в год."
    mixed = scanned_pdf(tmp_path / "mixed.pdf", [russian, PAGES[1]], scanned={1}, font=str(CYRILLIC_FONT))
    loaded = load_file(mixed, "mixed.pdf", ocr=OcrOptions(None))
    assert "OCR could not read page 1 (its words came out as noise: a language tesseract has no data for" in loaded.note
    assert loaded.document.text.startswith("Strike pay") and not loaded.document.pages[0].ocr
    only = scanned_pdf(tmp_path / "only.pdf", [russian], scanned={1}, font=str(CYRILLIC_FONT))
    (skipped,) = [r for r in walk_corpus(tmp_path, OcrOptions(None)) if isinstance(r, Skipped)]
    assert skipped.path == "only.pdf" and skipped.reason.startswith("OCR could not read page 1")
    assert only.exists()


def test_without_tesseract_pages_are_skipped_and_one_line_says_how_to_read_them(tmp_path, monkeypatch, embedder):
    import pytesseract

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    scanned_pdf(corpus / "a.pdf", PAGES, scanned={2})
    scanned_pdf(corpus / "b.pdf", PAGES, scanned={1, 3})
    scanned_pdf(corpus / "all.pdf", PAGES[:1], scanned={1})
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(tmp_path / "no-tesseract"))
    ocr.engine.cache_clear()
    try:
        report = ingest([corpus], Settings(index_dir=tmp_path / "index", data_dir=tmp_path / "data"),
                        lambda: embedder, progress=False)
    finally:
        ocr.engine.cache_clear()
    notes = dict(report.notes)
    assert notes["a.pdf"] == "page 2 of a.pdf has no text layer (scanned?); it was skipped"
    assert notes["b.pdf"] == "pages 1, 3 of b.pdf have no text layer (scanned?); they were skipped"
    assert [s.path for s in report.skipped] == ["all.pdf"]
    hints = [note for doc_id, note in report.notes if "install tesseract-ocr" in note]
    assert hints == [f"4 scanned pages left unread: {ocr.INSTALL_HINT}"]


def test_a_file_whose_page_timed_out_is_read_again_by_the_next_ingest(tmp_path, request):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    scanned_pdf(corpus / "slow.pdf", PAGES, scanned={2})
    (corpus / "notes.txt").write_text("Pickets meet at the north gate at 7 am.")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", data_dir=tmp_path / "data",
                        ocr_timeout_s=0.01)
    first = ingest([corpus], settings, progress=False)
    assert any("OCR took over 0.01s" in note for _, note in first.notes)
    read = request.getfixturevalue("files_read")  # counted from here on
    ingest([corpus], settings, progress=False)
    assert read == ["slow.pdf"]  # tried again (a busy moment may have cost the page); notes.txt was kept
