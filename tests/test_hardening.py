"""What probing the running app as an attacker found (issue 11), each held shut over real HTTP."""
from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest
from fastapi.testclient import TestClient

import rag.pipeline
from rag.serve.feedback import open_store
from rag.serve.server import create_app, uvicorn_options

LIMIT = 50_000


@pytest.fixture(scope="module")
def settings(corpus_settings, tmp_path_factory):
    return replace(corpus_settings, rate_limit_per_minute=1000, max_request_bytes=LIMIT,
                   data_dir=tmp_path_factory.mktemp("hardening-data"))


@pytest.fixture(scope="module")
def client(settings, pipeline):
    return TestClient(create_app(settings, pipeline))


@pytest.fixture(scope="module")
def server(settings, pipeline, serve_app):
    with serve_app(create_app(settings, pipeline), **uvicorn_options(settings)) as server:
        yield server


# 1. Request bodies are bounded, before anything reads them.

@pytest.mark.parametrize("path", ["/api/ask", "/api/feedback", "/gradio_api/queue/join", "/gradio_api/run/respond"])
def test_a_body_over_the_limit_is_refused_by_its_length(client, path):
    body = json.dumps({"question": "strike " * (LIMIT // 6)})
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": f"The request is too large (the limit is {LIMIT:,} bytes)."}


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(server):
    sent = []

    def chunks():  # no Content-Length: chunked transfer, counted as it arrives
        for _ in range(400):
            sent.append(1)
            yield b'{"question": "' + b"x" * 10_000

    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/api/ask", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "too large" in r.json()["error"]
        assert len(sent) < 400  # refused before the whole 4 MB was sent (or read)
    with httpx.Client(base_url=server.url, timeout=30) as http:  # and the server is fine
        assert http.post("/api/ask", json={"question": "Who is Molly Parsons?"}).status_code == 200


def test_only_a_bounded_window_is_screened_before_the_length_check(pipeline, monkeypatch):
    """A 10 MB question was screened whole for crisis words (12-39 s) before being refused."""
    screened = []
    real = rag.pipeline.screen
    monkeypatch.setattr(rag.pipeline, "screen",
                        lambda text, detector=None: screened.append(len(text)) or real(text, detector))
    limit = pipeline.settings.max_question_chars
    with pytest.raises(rag.pipeline.InvalidQuestionError, match="please keep it under"):
        pipeline.ask("Is there a strike? " * 50_000)
    assert screened and max(screened) <= 2 * limit + 1
    # the window still finds a crisis at the start or the end of a long message
    assert pipeline.ask("I want to kill myself. " + "Work was hard. " * 50_000).kind == "crisis"
    assert pipeline.ask("Work was hard. " * 50_000 + "I want to kill myself.").kind == "crisis"


# 3. Gradio's upload endpoints are closed, and its cache is ours to empty.

@pytest.mark.parametrize("path", ["/gradio_api/upload", "/gradio_api/upload/", "/gradio_api/upload?x=1",
                                  "/gradio_api/process_recording"])
def test_uploads_are_refused(client, settings, path):
    r = client.post(path, files={"files": ("evil.html", b"<script>alert(1)</script>", "text/html")})
    assert r.status_code == 404 and r.json() == {"error": "Not found."}
    cache = settings.data_dir / "gradio-cache"
    assert not cache.exists() or not any(p.name == "evil.html" for p in cache.rglob("*"))


def test_gradio_cache_is_emptied_at_start_and_at_shutdown(settings, pipeline, serve_app, tmp_path):
    settings = replace(settings, data_dir=tmp_path)
    leftover = tmp_path / "gradio-cache" / "abc" / "old-upload.bin"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x" * 1000)
    app = create_app(settings, pipeline)
    assert not leftover.exists()
    with serve_app(app) as server:
        (tmp_path / "gradio-cache").mkdir(exist_ok=True)
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"y")
        assert httpx.get(server.url + "/healthz").status_code == 200
    assert not (tmp_path / "gradio-cache").exists()


# 4. Proxy headers only from a configured proxy; votes are limited, one per answer.

def _ask_as(url: str, forwarded_for: str) -> int:
    return httpx.post(url + "/api/ask", json={"question": "Who is Molly Parsons?"},
                      headers={"X-Forwarded-For": forwarded_for}, timeout=60).status_code


def test_x_forwarded_for_is_ignored_unless_a_proxy_is_configured(settings, pipeline, serve_app, tmp_path):
    strict = replace(settings, rate_limit_per_minute=2, data_dir=tmp_path / "a")
    with serve_app(create_app(strict, pipeline), **uvicorn_options(strict)) as server:
        codes = [_ask_as(server.url, f"203.0.113.{n}") for n in range(4)]
    assert codes == [200, 200, 429, 429]  # one client, however many faces it claims

    proxied = replace(strict, trusted_proxies=("127.0.0.1",), data_dir=tmp_path / "b")
    with serve_app(create_app(proxied, pipeline), **uvicorn_options(proxied)) as server:
        codes = [_ask_as(server.url, f"203.0.113.{n}") for n in range(4)]
        assert codes == [200] * 4  # behind our proxy, each forwarded client has its own window
        assert [_ask_as(server.url, "203.0.113.9") for _ in range(3)] == [200, 200, 429]


def test_settings_read_trusted_proxies_from_the_environment():
    from rag.config import Settings

    settings = Settings.from_env(environ={"RAG_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    # The app judges forwarding headers itself (gate.ForwardedHeaders); uvicorn never does.
    assert uvicorn_options(settings)["proxy_headers"] is False


def _vote(client, answer: dict, liked: bool, **extra):
    return client.post("/api/feedback", json={"liked": liked, "answer_id": answer["answer_id"],
                                              "question": answer["question"], "answer": answer["answer"],
                                              "citations": answer["citations"], **extra})


def test_one_vote_per_answer_and_votes_are_rate_limited(settings, pipeline, tmp_path):
    client = TestClient(create_app(replace(settings, data_dir=tmp_path, rate_limit_per_minute=20), pipeline))
    answer = client.post("/api/ask", json={"question": "Who is Molly Parsons?"}).json()
    codes = [_vote(client, answer, liked=False).status_code for _ in range(45)]
    assert codes[:19] == [200] * 19 and codes[-1] == 429
    assert open_store(replace(settings, data_dir=tmp_path)).counts()["dislikes"] == 1
    forged = _vote(TestClient(create_app(replace(settings, data_dir=tmp_path), pipeline)), answer, True,
                   answer_id="made-up.0123")
    assert forged.status_code == 400 and "can't be rated" in forged.json()["error"]


# 5. Feedback fields are typed and capped at the API too.

@pytest.mark.parametrize("change", [
    {"citations": [{"n": 1, "doc_id": "a.txt", "quote": "q", "start": 0, "end": 1}] * 11},
    {"citations": [{"n": 1, "doc_id": "a.txt", "quote": "q" * 5000, "start": 0, "end": 1}]},
    {"citations": [{"n": "1", "doc_id": "a.txt", "quote": "q", "start": 0, "end": 1}]},
    {"question": "q" * 5000},
])
def test_feedback_fields_are_typed_and_capped(client, change):
    answer = client.post("/api/ask", json={"question": "Who is Molly Parsons?"}).json()
    r = client.post("/api/feedback", json={"liked": False, "answer_id": answer["answer_id"], "question": "q",
                                           "answer": "a", "citations": [], **change})
    assert r.status_code == 422 and r.json()["error"]


# 6. Malformed input: a clear {"error"}, never a 500, never a broken connection.

LONE_SURROGATE = '{"question": "Is there a strike? \\ud800"}'


def test_a_lone_surrogate_is_a_clear_400_and_the_connection_lives_on(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:  # one keep-alive connection
        r = http.post("/api/ask", content=LONE_SURROGATE, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "invalid character" in r.json()["error"]
        history = '{"question": "And then?", "history": [{"role": "user", "content": "\\udfff"}]}'
        r = http.post("/api/ask", content=history, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"].startswith("Invalid history")
        assert http.post("/api/ask", json={"question": "Who is Molly Parsons?"}).status_code == 200


def _chat(url: str, session: str, message: str) -> str:
    """One chat turn through Gradio's queue, as the page sends it; the last message shown."""
    config = httpx.get(url + "/config", timeout=30).json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "respond")
    # JSON as a browser's JSON.stringify writes it: a lone surrogate escaped as \ud800.
    body = json.dumps({"data": [message, []], "fn_index": fn, "session_hash": session, "event_data": None})
    r = httpx.post(url + "/gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"},
                   timeout=30)
    assert r.status_code == 200, r.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data?session_hash={session}", timeout=60) as events:
        for line in events.iter_lines():
            if '"process_completed"' in line:
                output = json.loads(line[5:])["output"]["data"]
                return str(output[1][-1]["content"])
    raise AssertionError("the chat's stream ended without a completed event")


def test_a_lone_surrogate_in_the_chat_gets_a_notice_not_a_dead_stream(server):
    assert "invalid character" in _chat(server.url, "s1", "Is there a strike? \ud800")
    assert "Molly Parsons" in _chat(server.url, "s1", "Who is Molly Parsons?")  # the session goes on


@pytest.mark.parametrize("body, message", [
    (b'{"question": "caf\xe9 strike?"}', "could not be read as JSON"),
    (b'{"question": ' + b"[" * 100_00 + b"]" * 100_00 + b"}", "could not be read as JSON"),
])
def test_invalid_utf8_and_deep_nesting_get_the_documented_error_shape(client, body, message):
    r = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    assert set(r.json()) == {"error"} and message in r.json()["error"]


def test_a_bad_content_length_is_refused(settings):
    # A raw request: HTTP clients will not send a Content-Length that is not a number.
    from rag.serve.middleware import BodyLimit
    import asyncio

    sent = []

    async def app(scope, receive, send):  # never reached
        raise AssertionError

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"12abc")], "path": "/api/ask"}
    asyncio.run(BodyLimit(app, 100)(scope, None, send))
    assert sent[0]["status"] == 400 and b"Content-Length" in sent[1]["body"]


# 9. A kept-alive connection outlives a pause: a proxy's pooled connection, or a widget's.

def test_a_kept_alive_connection_still_answers_after_a_pause(server):
    """uvicorn's default closes a connection 5 s after its last reply; proxies pool theirs for 60 s
    and race that close. One raw HTTP/1.1 connection: a request, 6 s of silence, another."""
    import re
    import socket
    import time
    from urllib.parse import urlparse

    def response(sock) -> bytes:
        """One whole response (headers, then Content-Length bytes), however TCP splits it."""
        data = b""
        while b"\r\n\r\n" not in data:
            if not (part := sock.recv(65536)):
                return data  # the server closed the connection
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
        while len(body) < length and (part := sock.recv(65536)):
            body += part
        return head + b"\r\n\r\n" + body

    url = urlparse(server.url)
    request = (f"GET /healthz HTTP/1.1\r\nHost: {url.hostname}\r\nConnection: keep-alive\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        for pause in (0, 6):
            time.sleep(pause)
            sock.sendall(request)
            reply = response(sock)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"}"), reply[:80]
