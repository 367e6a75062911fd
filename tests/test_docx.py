"""Word .docx files, made with python-docx: headings give sections, tables give rows, bad files a warning."""
import datetime
import zipfile

import docx

from rag.ingest.chunking import chunk_document
from rag.ingest.embedding import tiktoken_counter
from rag.ingest.loaders import Loaded, Skipped, load_file, walk_corpus


def bulletin(path, title: str = ""):
    doc = docx.Document()
    doc.add_paragraph("Strike Bulletin No. 4", style="Title")
    doc.add_heading("Picket schedule", level=1)
    doc.add_paragraph("Pickets meet at 7 am at the main gate.")
    doc.add_heading("Strike pay", level=2)
    doc.add_paragraph("Strike pay is $500 a week from the second week.")
    doc.add_paragraph("Sign in with your picket captain", style="List Bullet")
    doc.add_heading("Health benefits", level=1)
    doc.add_paragraph("Health benefits continue through the end of the month.")
    table = doc.add_table(rows=3, cols=3)
    for i, row in enumerate([["Week", "Pay", "Note"], ["1", "$0", "waiting week"], ["2", "$500", "paid Friday"]]):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    doc.core_properties.title = title
    doc.core_properties.modified = datetime.datetime(2026, 3, 2, 10, 0)
    doc.save(path)
    return path


def test_a_docx_is_read_with_headings_lists_tables_title_and_date(tmp_path):
    doc = load_file(bulletin(tmp_path / "bulletin.docx"), "bulletin.docx").document
    assert doc.title == "Strike Bulletin No. 4"  # no title in the properties: the Title paragraph
    assert doc.section_at(doc.text.index("$500 a week")) == "Picket schedule > Strike pay"
    assert doc.section_at(doc.text.index("end of the month")) == "Health benefits"
    assert "\n- Sign in with your picket captain" in doc.text
    assert "Week | Pay | Note\n1 | $0 | waiting week\n2 | $500 | paid Friday" in doc.text
    assert (doc.date, doc.date_source) == ("2026-03-02", "Word document properties")
    assert [(h.title, h.level) for h in doc.headings] == [("Picket schedule", 1), ("Strike pay", 2),
                                                         ("Health benefits", 1)]
    for h in doc.headings:
        assert doc.text[h.start:h.end] == h.title
    for c in chunk_document(doc, tiktoken_counter(), 30, 5):
        assert doc.text[c.start:c.end] == c.text


def test_the_properties_title_wins_unless_it_is_a_file_name(tmp_path):
    assert load_file(bulletin(tmp_path / "a.docx", "Bargaining update"), "a.docx").document.title == "Bargaining update"
    assert load_file(bulletin(tmp_path / "b.docx", "Document1.docx"), "b.docx").document.title == "Strike Bulletin No. 4"


def test_a_corrupt_docx_and_a_renamed_zip_are_each_one_warning_and_nothing_else_is_lost(tmp_path):
    good = bulletin(tmp_path / "good.docx")
    (tmp_path / "truncated.docx").write_bytes(good.read_bytes()[:2000])
    (tmp_path / "garbage.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(tmp_path / "photos.docx", "w") as z:
        z.writestr("IMG_0001.txt", "a zip of something else")
    results = {(r.path if isinstance(r, Skipped) else r.document.doc_id): r for r in walk_corpus(tmp_path)}
    assert isinstance(results["good.docx"], Loaded)
    assert "Strike pay is $500" in results["good.docx"].document.text
    for name in ("truncated.docx", "garbage.docx"):
        assert isinstance(results[name], Skipped) and results[name].reason.startswith("corrupt .docx")
    assert isinstance(results["photos.docx"], Skipped)
    assert results["photos.docx"].reason.startswith("not a Word file")
