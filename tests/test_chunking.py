import random
from pathlib import Path

import pytest

from rag.ingest.chunking import chunk_document, split_sentences
from rag.ingest.embedding import load_embedder, tiktoken_counter
from rag.ingest.loaders import load_file

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_sentence_spans_respect_abbreviations_and_lines():
    text = "Workers march in Sacramento, CA, Monday, Aug. 15, 2022.\nDr. Lee spoke. Then they voted!"
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == ["Workers march in Sacramento, CA, Monday, Aug. 15, 2022.", "Dr. Lee spoke.", "Then they voted!"]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir()))
def test_offsets_reproduce_text_and_fit_the_model(embedder, name):
    doc = load_file(CORPUS / name, name).document
    count = tiktoken_counter()
    chunks = chunk_document(doc, count, 120, 30, hard_limit=embedder.overflow)
    assert len(chunks) > 1
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
        assert count(c.text) <= 120
        assert embedder.overflow(c.text) <= 0
    # Consecutive chunks overlap or touch: no text falls between the cracks.
    for a, b in zip(chunks, chunks[1:]):
        assert b.start <= a.end + 2


def test_long_unbroken_text_is_split_to_the_embedders_limit(embedder):
    """A 'sentence' far over 256 word pieces (a pasted table, say) must still be fully searchable."""
    from rag.types import Document

    rng = random.Random(7)
    text = " ".join(f"item{rng.randrange(10**6)}-{rng.randrange(999)}" for _ in range(900))
    doc = Document("table.txt", "table", text, "h")
    chunks = chunk_document(doc, tiktoken_counter(), 10_000, 0, hard_limit=embedder.overflow)
    assert len(chunks) > 1
    assert all(embedder.overflow(c.text) <= 0 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_pdf_chunks_carry_the_page_they_start_on_and_keep_sentences_whole(tmp_path, embedder):
    from tests.pdfs import text_pdf

    # Each page ends mid-sentence: the sentence goes on at the top of the next page.
    pages = ["\n".join(f"Page {p} line {i} about staffing levels." for i in range(30)) + "\nThe staffing plan for"
             for p in (1, 2, 3)]
    pages = [page if p == 0 else "continues here.\n" + page for p, page in enumerate(pages)]
    doc = load_file(text_pdf(tmp_path / "c.pdf", pages), "c.pdf").document
    chunks = chunk_document(doc, tiktoken_counter(), 100, 20, hard_limit=embedder.overflow)
    assert {c.page for c in chunks} == {1, 2, 3}
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
        assert c.page == doc.page_at(c.start)
    wrapped = doc.text.index("The staffing plan for continues here.")
    assert doc.page_at(wrapped) == 1 and doc.page_at(doc.text.index("continues here.", wrapped)) == 2
    assert any("The staffing plan for continues here." in c.text for c in chunks)



def test_bad_chunk_settings_are_refused():
    from rag.types import Document

    with pytest.raises(ValueError, match="overlap"):
        chunk_document(Document("d", "t", "x.", "h"), len, 10, 10)
