"""rag.ingest.dates: a document's date is found, never guessed."""
from __future__ import annotations

import json

from rag.ingest import dates
from rag.ingest.loaders import walk_corpus


def test_dates_are_found_never_guessed(tmp_path):
    assert dates.parse_date("Updated Aug. 7, 2026") == "2026-08-07"
    assert dates.dated_line("Strike hub\nLast updated: October 1, 2025\nThe vote on Aug. 15, 2022.") == "2025-10-01"
    assert dates.dated_line("Workers marched on Monday, Aug. 15, 2022.") is None  # a date, but not the page's
    assert dates.from_file_name("news_2026-08-07-impasse.html") == "2026-08-07"
    assert dates.from_file_name("kaiser-strike-2022.txt") == "2022"
    assert dates.from_file_name("cba_2022-2026.pdf") is None  # a range dates nothing
    assert dates.from_pdf_metadata("D:20240502115017-07'00'") == "2024-05-02"
    assert dates.display("2026-08-07") == "Aug 7, 2026" and dates.display(None) == ""
    (tmp_path / "notes.txt").write_text("Strike notes\nNothing dated here.\n")
    (tmp_path / "faq.txt").write_text("Strike FAQ\nPickets start at 7 am.\n")
    (tmp_path / dates.SIDECAR).write_text(json.dumps({"faq.txt": "2026-03-01"}))
    docs = {r.document.doc_id: r.document for r in walk_corpus(tmp_path)}
    assert docs["notes.txt"].date is None and docs["notes.txt"].date_source == ""
    assert (docs["faq.txt"].date, docs["faq.txt"].date_source) == ("2026-03-01", "sidecar .dates.json")
