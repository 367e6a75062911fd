"""The web server through HTTP: the JSON API, CORS and CSP, the rate limit, the source pages."""
from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx

import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.errors import IndexCorruptError
from rag.serve.feedback import open_store
from rag.ingest.run import ingest
from rag.pipeline import Pipeline
from rag.serve.ratelimit import RateLimiter
from rag.serve.server import allowed_origins, create_app
from rag.ingest.dates import display
from rag.serve.store import open_database
from rag.serve.ui import answer_markdown, documents_markdown, md_escape
from tests.pdfs import text_pdf

UNION = "https://union.example.org"
KEYS = {"question", "answer", "refused", "kind", "citations", "pieces", "retrieved", "related", "notice", "contact", "latency_ms", "mode", "dropped", "corrected",
        "answer_id"}
CITATION_KEYS = {"n", "doc_id", "title", "page", "chunk_id", "quote", "start", "end", "section", "date", "ocr", "also"}
APPOINTMENTS = "How many therapy appointments did Kaiser cancel during the 2022 strike?"


@pytest.fixture(scope="module")
def settings(corpus_settings, tmp_path_factory):
    return replace(corpus_settings, allowed_origins=(UNION,), rate_limit_per_minute=1000,
                   data_dir=tmp_path_factory.mktemp("server-data"))


@pytest.fixture(scope="module")
def client(settings, pipeline):
    return TestClient(create_app(settings, pipeline), base_url="http://127.0.0.1")


def ask(client, question, **extra):
    return client.post("/api/ask", json={"question": question, **extra})


def test_ask_returns_the_answer_json_with_exact_citations(client, pipeline):
    r = ask(client, APPOINTMENTS)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == KEYS
    assert body["kind"] == "answer" and not body["refused"]
    assert "111,803" in body["answer"] and "[1]" in body["answer"]
    assert body["citations"] and all(set(c) == CITATION_KEYS for c in body["citations"])
    for c in body["citations"]:  # every quote is the exact span it claims to be
        assert pipeline.index.documents[c["doc_id"]].text[c["start"]:c["end"]] == c["quote"]


def test_follow_up_questions_use_the_history(client):
    first = ask(client, "Who is Molly Parsons?").json()
    history = [{"role": "user", "content": "Who is Molly Parsons?"},
               {"role": "assistant", "content": first["answer"]}]
    r = ask(client, "What did she say?", history=history)
    assert r.status_code == 200
    assert "Molly Parsons" in r.json()["answer"] and r.json()["citations"]


@pytest.mark.parametrize("payload, status, message", [
    ({}, 422, "Missing field: question"),
    ({"question": ""}, 400, "Please type a question"),
    ({"question": "   \n "}, 400, "Please type a question"),
    ({"question": "strike " * 400}, 400, "please keep it under 2,000"),
    ({"question": 5}, 422, "Invalid question"),
    ({"question": ["a"]}, 422, "Invalid question"),
    ({"question": "Is there a strike?", "history": "nope"}, 422, "Invalid history"),
    ({"question": "Is there a strike?", "history": [{"role": "system", "content": "x"}]}, 422, "Invalid history"),
])
def test_bad_questions_get_a_clear_4xx(client, payload, status, message):
    r = client.post("/api/ask", json=payload)
    assert r.status_code == status
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize("body", ["{\"question\": ", "not json", ""])
def test_malformed_json_gets_a_clear_4xx(client, body):
    r = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"] in ("The request body is not valid JSON.", "Missing field: question.",
                                 "The request needs a JSON body.")


class _BrokenPipeline:
    """Stands in for a pipeline whose index broke after start-up."""

    def __init__(self, real: Pipeline, error: Exception):
        self.index, self.error = real.index, error

    def ask(self, question, history=None):
        raise self.error


@pytest.mark.parametrize("error, status, message", [
    (IndexCorruptError("index in /x is unreadable; rebuild it with `rag ingest`"), 503, "rebuild it"),
    (RuntimeError("secret internals"), 500, "Something went wrong on our side"),
])
def test_pipeline_errors_become_json_never_a_traceback(settings, pipeline, error, status, message):
    client = TestClient(create_app(settings, _BrokenPipeline(pipeline, error)), raise_server_exceptions=False)
    r = ask(client, "Has a strike date been set?")
    assert r.status_code == status
    assert message in r.json()["error"]
    assert "Traceback" not in r.text and "secret internals" not in r.text


def test_healthz_reports_the_index(client, pipeline):
    r = client.get("/healthz")
    assert r.status_code == 200
    manifest = pipeline.index.manifest
    assert r.json() == {"status": "ok", "documents": 2, "chunks": manifest.chunks, "built_at": manifest.built_at}


def test_openapi_documents_the_api(client):
    assert "/api/ask" in client.get("/openapi.json").json()["paths"]
    # Swagger UI and ReDoc load their code and fonts from public CDNs: off.
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert "cdn.jsdelivr.net" not in r.text and "swagger-ui" not in r.text


def test_cors_allows_only_listed_origins(client):
    allowed = client.post("/api/ask", json={"question": "Who is Molly Parsons?"}, headers={"Origin": UNION})
    assert allowed.headers["access-control-allow-origin"] == UNION
    other = client.post("/api/ask", json={"question": "Who is Molly Parsons?"},
                        headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = client.options("/api/ask", headers={"Origin": UNION, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == UNION
    refused = client.options("/api/ask", headers={"Origin": "https://evil.example.com", **preflight})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_gradio_adds_no_cors_headers_of_its_own(client):
    # Gradio's own CORS middleware would allow any localhost origin.
    r = client.get("/config", headers={"Origin": "http://localhost:9999"})
    assert "access-control-allow-origin" not in r.headers


def test_widget_page_may_be_framed_only_by_listed_sites(client):
    r = client.get("/widget")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert f"frame-ancestors 'self' {UNION}" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


@pytest.mark.parametrize("path", ["/", "/healthz", "/openapi.json", "/widget.js", "/config",
                                  "/source/another-kaiser-strike-vote.txt", "/no-such-page"])
def test_only_the_widget_may_be_framed_by_other_sites(client, path):
    """Listed sites embed the widget, not the full chat or anything else."""
    r = client.get(path)
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]
    assert UNION not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"


def test_origins_are_checked_before_they_reach_a_header(settings):
    with pytest.raises(ValueError, match="must look like https://union.example.org"):
        allowed_origins(replace(settings, allowed_origins=("https://a.org; script-src *",)))
    assert allowed_origins(replace(settings, allowed_origins=("https://a.org/",))) == ("https://a.org",)


def test_widget_js_is_served_as_javascript(client):
    r = client.get("/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert "document.currentScript" in r.text and "attachShadow" in r.text


def test_asking_too_fast_gets_429_with_a_clear_message(settings, pipeline, tmp_path):
    client = TestClient(create_app(replace(settings, rate_limit_per_minute=2, data_dir=tmp_path), pipeline))
    assert [ask(client, "Who is Molly Parsons?").status_code for _ in range(2)] == [200, 200]
    r = ask(client, "Who is Molly Parsons?")
    assert r.status_code == 429
    assert "too quickly" in r.json()["error"]
    assert int(r.headers["retry-after"]) >= 1


def limiter(tmp_path, database_url: str, per_minute: int, **options) -> RateLimiter:
    """A limiter on SQLite or PostgreSQL (the ``database_url`` fixture runs a test on both)."""
    db = open_database(Settings(data_dir=tmp_path, database_url=database_url), "ratelimit")
    return RateLimiter(per_minute, db, **options)


def test_rate_limit_is_a_sliding_window_per_client(tmp_path, database_url):
    now = [0.0]
    window = limiter(tmp_path, database_url, 2, clock=lambda: now[0])

    def asks_at(t: float, n: int = 1, key: str = "a") -> list[float]:
        now[0] = t
        return [window.wait_time(key) for _ in range(n)]

    assert asks_at(0) + asks_at(10) + asks_at(20) == [0.0, 0.0, 40.0]
    assert asks_at(20, key="b") == [0.0]  # another client has its own window
    assert asks_at(60, 2) == [0.0, 10.0]  # the ask at 0 has left the window; the one at 10 has not
    assert RateLimiter(0, None).wait_time("a") == 0.0  # 0 turns the limit off


def test_rate_limit_holds_under_concurrency(tmp_path, database_url):
    shared = limiter(tmp_path, database_url, 25)
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda _: shared.wait_time("same-client"), range(200)))
    assert waits.count(0.0) == 25


def test_concurrent_questions_are_all_answered(live_server):
    questions = ["Who is Molly Parsons?", APPOINTMENTS, "Has a strike date been set?",
                 "What is Kaiser proposing about layoffs?"] * 2
    with httpx.Client(base_url=live_server.url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda q: http.post("/api/ask", json={"question": q}), questions))
    assert [r.status_code for r in replies] == [200] * len(questions)
    assert [r.json()["question"] for r in replies] == questions


def test_unanswered_questions_are_kept_but_crisis_messages_never(client, settings):
    assert ask(client, "What is the capital of France?").json()["kind"] == "not_found"
    assert ask(client, "I want to kill myself").json()["kind"] == "crisis"
    assert ask(client, "Should I stop taking my sertraline?").json()["kind"] == "medical"
    kept = [u.question for u in open_store(settings).unanswered(limit=50)]
    assert "What is the capital of France?" in kept
    assert not any("kill" in q or "sertraline" in q for q in kept)


def test_feedback_is_stored(client, settings):
    answer = ask(client, APPOINTMENTS).json()
    r = client.post("/api/feedback", json={"liked": False, "question": answer["question"], "answer_id": answer["answer_id"],
                                           "answer": answer["answer"], "citations": answer["citations"]})
    assert r.status_code == 200
    latest = open_store(settings).ratings("dislike", limit=1)[0]
    kept = [{k: v for k, v in c.items() if k != "also"} for c in answer["citations"]]  # where else: not kept
    assert latest.question == APPOINTMENTS and latest.citations == kept
    assert client.post("/api/feedback", json={"liked": "yes"}).status_code == 422


def test_source_page_highlights_the_cited_passage(client):
    c = ask(client, APPOINTMENTS).json()["citations"][0]
    r = client.get(f"/source/{c['doc_id']}", params={"start": c["start"], "end": c["end"]})
    assert r.status_code == 200
    assert f'<mark id="passage">{c["quote"]}</mark>' in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("path", [
    "/source/../pyproject.toml",
    "/source/%2e%2e/pyproject.toml",
    "/source/%2e%2e%2fpyproject.toml",
    "/source/..%2F..%2Fetc%2Fpasswd",
    "/source//etc/passwd",
    "/source/%2Fetc%2Fpasswd",
    "/source/corpus/../../pyproject.toml",
    "/files/%2e%2e%2fpyproject.toml",
    "/files//etc/passwd",
    "/source/another-kaiser-strike-vote.txt%00.pdf",
])
def test_source_routes_refuse_paths_outside_the_corpus(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404)
    assert "[build-system]" not in r.text and "root:" not in r.text


def test_symlinks_out_of_the_corpus_are_refused(tmp_path, embedder):
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir(), outside.mkdir()
    (corpus / "strike.txt").write_text("Strike update\nThe strike vote passed with 94 percent.\n")
    (outside / "secret.txt").write_text("Board minutes\nTOP SECRET bargaining plan.\n")
    (corpus / "leak.txt").symlink_to(outside / "secret.txt")
    text_pdf(corpus / "faq.pdf", ["Strike FAQ", "Picket lines start at 7 am."], title="Strike FAQ")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    pipeline = Pipeline(settings, embedder=embedder)
    assert "leak.txt" not in pipeline.index.documents  # ingest skips it (tests/test_ingest.py)
    client = TestClient(create_app(settings, pipeline))

    for path in ("/source/leak.txt", "/files/leak.txt"):
        r = client.get(path)
        assert r.status_code == 404 and "TOP SECRET" not in r.text
    assert "94 percent" in client.get("/source/strike.txt").text
    pdf = client.get("/files/faq.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert client.get("/files/strike.txt").status_code == 404  # only PDFs are served raw


def test_chat_markdown_shows_member_and_document_text_literally(pipeline):
    hostile = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(1))"
    escaped = md_escape(hostile)
    assert "<" not in escaped and "](" not in escaped and "**" not in escaped
    answer = pipeline.ask(APPOINTMENTS)
    shown = answer_markdown(answer)
    assert "111,803" in shown and "/source/another-kaiser-strike-vote.txt?start=" in shown
    assert "**Sources**" in shown


def test_a_missed_crisis_message_is_never_stored(client, settings):
    """Whatever the screen answers, a message about not being alive is not kept (issue #22):
    neither as an unanswered question nor in a rating; an ordinary unanswered question is."""
    from rag.serve.feedback import open_store

    store = open_store(settings)
    before = {u.question for u in store.unanswered(1000)}
    for message in ("I won't be alive to see this contract.",
                    "What's the point of fighting for a contract I won't be alive to see?",
                    "What is the parking policy at the Fresno office?"):
        r = ask(client, message)
        assert r.status_code == 200
        if r.json()["kind"] == "answer":
            continue
        body = {"liked": False, "question": message, "answer": r.json()["answer"],
                "citations": r.json()["related"][:1], "kind": r.json()["kind"], "answer_id": r.json()["answer_id"]}
        assert client.post("/api/feedback", json=body).status_code in (200, 204)
    stored = {u.question for u in store.unanswered(1000)} - before
    assert stored == {"What is the parking policy at the Fresno office?"}
    kept = [r for r in store.ratings(limit=1000) if "alive" in r.question or "alive" in r.answer]
    assert not kept


def test_documents_page_lists_every_document_newest_first_with_search(client, pipeline):
    documents = pipeline.index.documents
    page = client.get("/documents")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    rows = re.findall(r'<tr><td><a href="([^"]+)">([^<]*)</a></td><td>([^<]*)</td></tr>', page.text)
    assert len(rows) == len(documents) and f"{len(documents)} documents" in page.text
    dated = [d for d in documents.values() if d.date]
    newest = max(dated, key=lambda d: d.date)
    assert rows[0][1] == html.escape(newest.title, quote=False) and rows[0][2] == display(newest.date)
    order = [d.date for d in sorted(dated, key=lambda d: d.date, reverse=True)]
    assert [display(x) for x in order] == [r[2] for r in rows[:len(dated)]]
    for href, _, _ in rows:  # every link opens: a PDF as itself, anything else as its text
        assert client.get(href).status_code == 200, href

    found = client.get("/documents", params={"q": "ANOTHER kaiser"}).text
    hits = re.findall(r"<tr><td><a [^>]+>([^<]*)</a>", found)
    wanted = {html.escape(d.title, quote=False) for d in documents.values()
              if all(w in f"{d.title} {d.doc_id}".lower() for w in ("another", "kaiser"))}  # title or file name
    assert wanted and set(hits) == wanted and len(hits) < len(rows)
    evil = client.get("/documents", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert" not in evil and "0 of" in evil


def test_the_chat_shows_a_count_and_the_newest_date_not_every_title(pipeline):
    line = documents_markdown(pipeline)
    documents = pipeline.index.documents
    newest = max(d.date for d in documents.values() if d.date)
    assert f"[{len(documents)} documents](/documents)" in line and display(newest) in line
    assert all(d.title not in line for d in documents.values())
