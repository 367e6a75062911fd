import random
from pathlib import Path

import pytest

from rag.chunking import chunk_document, split_sentences
from rag.embedding import load_embedder, tiktoken_counter
from rag.loaders import load_file

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


def test_pdf_chunks_never_straddle_pages(tmp_path, embedder):
    from tests.pdfs import text_pdf

    pages = ["\n".join(f"Page {p} line {i} about staffing levels." for i in range(30)) for p in (1, 2, 3)]
    doc = load_file(text_pdf(tmp_path / "c.pdf", pages), "c.pdf").document
    chunks = chunk_document(doc, tiktoken_counter(), 100, 20, hard_limit=embedder.overflow)
    assert {c.page for c in chunks} == {1, 2, 3}
    for c in chunks:
        page = doc.pages[c.page - 1]
        assert page.start <= c.start and c.end <= page.end
        assert f"Page {c.page} " in c.text


def test_bad_chunk_settings_are_refused():
    from rag.types import Document

    with pytest.raises(ValueError, match="overlap"):
        chunk_document(Document("d", "t", "x.", "h"), len, 10, 10)
