"""Real union documents end to end: headings and section paths, HTML main content, citations
with section and date, several corpus folders served, the real contract read as paragraphs."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.ingest.chunking import chunk_document
from rag.config import Settings
from rag.config import shared_dir
from rag.ingest.embedding import tiktoken_counter
from rag.ingest.run import ingest
from rag.ingest.loaders import Loaded, Skipped, load_file, walk_corpus
from rag.ingest.structure import text_headings
from tests.pdfs import text_pdf

ROOT = Path(__file__).resolve().parent.parent
SEIU = shared_dir("corpora", "seiu503-higher-ed")
needs_shared = pytest.mark.skipif(not SEIU.is_dir(), reason=f"{SEIU} not found (the shared corpora)")


# ── headings ────────────────────────────────────────────────────────────────

def test_contract_and_markdown_headings():
    text = ("ARTICLE 10\nOVERTIME\nSection 1. Emergency Call Back Overtime. Paid at time and one half.\n"
            "Section 2(A). Regular overtime is paid weekly.\n"
            "Article 19 - Discrimination grievance which is appealed to BOLI the appeal, if pursued, is heard.\n")
    heads = text_headings(text)
    assert [(h.level, h.title) for h in heads] == [
        (1, "Article 10 Overtime"), (2, "Section 1 Emergency Call Back Overtime"), (2, "Section 2(A)")]
    assert text[heads[1].start:heads[1].end] == "Section 1. Emergency Call Back Overtime."
    md = "# Strike FAQ\n\nIntro.\n\n## Pay\n\nStrike pay is $300 a week.\n"
    assert [(h.level, h.title) for h in text_headings(md, markdown=True)] == [(1, "Strike FAQ"), (2, "Pay")]


# ── HTML ────────────────────────────────────────────────────────────────────

PAGE = """<!doctype html><html><head><title>Impasse declared - SEIU Local 503</title>
<meta property="article:published_time" content="2026-08-07T09:00:00-07:00"><script>var x = "strike";</script></head>
<body><header class="site"><nav><a href="/">Home</a><a href="/strike">Strike info</a></nav></header>
<div class="cookie-banner">We use cookies. Accept strike cookies?</div>
<main><article><header><h1>Bargaining team declares impasse</h1><time datetime="2026-08-07">Aug 7</time></header>
<p>Our team declared impasse after mediation on August 5 and 6.</p>
<h2>What it means</h2><p>Impasse preserves our right to strike.</p>
<table><tr><td>Up to 10 weeks</td><td>of unemployment benefits</td></tr></table>
<aside class="share-bar">Share on Facebook</aside></article></main>
<footer>© 2026 SEIU Local 503 · Strike resources · Privacy</footer></body></html>"""


def test_html_keeps_main_content_headings_and_date(tmp_path):
    path = tmp_path / "impasse.html"
    path.write_text(PAGE)
    doc = load_file(path, "impasse.html").document
    for chrome in ("Home", "cookies", "Facebook", "Privacy", "var x"):
        assert chrome not in doc.text
    assert doc.text.splitlines()[0] == "Bargaining team declares impasse"
    assert "Up to 10 weeks — of unemployment benefits" in doc.text
    assert doc.title == "Impasse declared"
    assert doc.date == "2026-08-07" and doc.date_source == "<meta article:published_time>"
    assert [(h.level, h.title) for h in doc.headings] == [(1, "Bargaining team declares impasse"), (2, "What it means")]
    assert doc.section_at(doc.text.index("preserves")) == "Bargaining team declares impasse > What it means"
    assert doc.is_heading(doc.text.index("What it means"), doc.text.index("What it means") + 13)


def test_a_broken_html_page_is_skipped_with_a_reason(tmp_path):
    (tmp_path / "good.html").write_text(PAGE)
    (tmp_path / "broken.html").write_bytes(b"<html>\x00\x01\x02 not really html")
    (tmp_path / "chrome-only.html").write_text("<html><body><nav>Home Strike</nav></body></html>")
    results = {getattr(r, "path", None) or r.document.doc_id: r for r in walk_corpus(tmp_path)}
    assert isinstance(results["good.html"], Loaded)
    assert isinstance(results["broken.html"], Skipped) and "binary" in results["broken.html"].reason
    assert isinstance(results["chrome-only.html"], Skipped) and "no text" in results["chrome-only.html"].reason


def test_citations_carry_section_and_date_in_json(pipeline):
    answer = pipeline.ask("How much was Kaiser fined?")
    cited = answer.to_json()["citations"]
    assert all({"section", "date"} <= set(c) for c in cited)
    assert any(c["date"] == "2022" for c in cited)


# ── several corpus folders ──────────────────────────────────────────────────

def test_several_folders_are_served_end_to_end(tmp_path, embedder):
    from rag.pipeline import Pipeline
    from rag.serve.server import create_app

    first, second = tmp_path / "union-a", tmp_path / "union-b"
    first.mkdir(), second.mkdir()
    (first / "faq.txt").write_text("Strike FAQ\nPicket shifts at Local A are four hours long.\n")
    (second / "faq.txt").write_text("Strike FAQ\nPicket captains at Local B carry the first aid kits.\n")
    text_pdf(second / "contract.pdf", ["ARTICLE 5: OVERTIME", "Overtime is paid at time and one-half."])
    settings = Settings(corpus_dir=first, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    report = ingest([first, second], settings, embedder_factory=lambda: embedder, progress=False)
    pipeline = Pipeline(settings, embedder=embedder)
    documents = pipeline.index.documents
    assert set(documents) == {"faq.txt", "union-b/faq.txt", "contract.pdf"}  # unique, nothing lost
    assert pipeline.index.manifest.corpus_roots == [str(first.resolve()), str(second.resolve())]
    assert pipeline.index.manifest.dates["faq.txt"] == {"date": None, "source": ""}
    assert pipeline.index.manifest.dates["contract.pdf"]["source"] == "PDF metadata"
    assert any("union-b/faq.txt" in note for _, note in report.notes)
    again = ingest([first, second], settings, embedder_factory=lambda: embedder, progress=False)
    assert sorted(again.unchanged) == sorted(documents)  # ids are stable: nothing re-embedded
    client = TestClient(create_app(settings, pipeline))
    assert "first aid kits" in client.get("/source/union-b/faq.txt").text
    assert "four hours" in client.get("/source/faq.txt").text
    pdf = client.get("/files/contract.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert client.get("/source/../union-a/faq.txt").status_code == 404


# ── the real corpus ─────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def seiu_contract():
    return load_file(SEIU / "seiu503-osu_seiu_cba_2022-2026.pdf", "seiu503-osu_seiu_cba_2022-2026.pdf")


@needs_shared
def test_real_contract_reads_as_paragraphs_with_sections(seiu_contract):
    from rag.evaluate.bench_ingest_real import fragment_rates

    doc = seiu_contract.document
    assert doc.title.startswith("2022 – 2026 COLLECTIVE BARGAINING AGREEMENT")
    assert "time and one-half (1-1/2), or to effect a “pyramiding”" in doc.text
    assert "pages 2-3 of seiu503-osu_seiu_cba_2022-2026.pdf have no text layer" in seiu_contract.note
    accrual = doc.text.index("Accrual Rate of Sick Leave with Pay Credits")
    assert doc.section_at(accrual).startswith("Article 36 Sick Leave > Section 1")
    chunks = chunk_document(doc, tiktoken_counter(), 170, 40)
    mid_sentence, _ = fragment_rates(chunks, {doc.doc_id: doc})
    assert mid_sentence < 0.02
    trial = next(c for c in chunks if "Trial service is six (6) full months" in c.text)
    assert trial.section.startswith("Article 31 Trial Service")


def test_a_question_in_a_document_is_never_quoted_as_an_answer(tmp_path, embedder):
    from rag.pipeline import Pipeline

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pledge.txt").write_text(
        "Strike pledge\nHaven't signed the strike pledge yet? Sign it at the union office.\n"
        "More than 1,200 workers have signed the strike pledge so far.\n")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    answer = Pipeline(settings, embedder=embedder).ask("Have many workers signed the strike pledge yet?")
    assert not answer.refused and "1,200 workers" in answer.text
    assert answer.citations and all(not c.quote.rstrip().endswith("?") for c in answer.citations)
