"""rag/serve/gate.py from outside, as an attacker would: a real server on loopback, real requests.

Gradio 6.31 served any file on the server: a FileData value sent as the chat message was copied
into its cache and then served by /gradio_api/file= (issue #22). Every route below was open.
"""
from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from rag.serve.gate import GRADIO_ROUTES, carries_files
from rag.serve.server import create_app

SECRET = "the-server's-private-key-material"
FILE_DATA = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
CLOSED = [
    ("POST", "/gradio_api/call/respond"), ("POST", "/gradio_api/call/v2/respond"), ("POST", "/call/respond"),
    ("POST", "/gradio_api/run/predict"), ("POST", "/run/predict"), ("POST", "/gradio_api/api/respond"),
    ("GET", "/gradio_api/file=/etc/passwd"), ("GET", "/file=/etc/passwd"), ("GET", "/gradio_api/file/etc/passwd"),
    ("GET", "//gradio_api/file=/etc/passwd"), ("GET", "/gradio_api//file=/etc/passwd"),
    ("GET", "/gradio_api/proxy=http://127.0.0.1:1/x"), ("GET", "/proxy=http://127.0.0.1:1/x"),
    ("POST", "/gradio_api/upload"), ("POST", "/gradio_api/upload/"), ("GET", "/gradio_api/upload_progress"),
    ("POST", "/gradio_api/process_recording"), ("GET", "/gradio_api/openapi.json"), ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/stream/x/0/1/playlist.m3u8"), ("POST", "/gradio_api/stream/x"),
    ("GET", "/monitoring"), ("POST", "/login"), ("GET", "/logout"), ("GET", "/manifest.json"),
    ("GET", "/gradio_api/runs"), ("POST", "/gradio_api/vibe-edit"), ("GET", "/svelte/x.js"),
    ("GET", "/gradio_api/app_id"), ("GET", "/gradio_api/user"), ("GET", "/docs"), ("GET", "/redoc"),
]


@pytest.fixture(scope="module")
def site(corpus_settings, pipeline, serve_app, tmp_path_factory):
    settings = replace(corpus_settings, data_dir=tmp_path_factory.mktemp("gate-data"))
    with serve_app(create_app(settings, pipeline)) as server:
        yield server, settings


def _fn_index(url: str) -> int:
    config = httpx.get(url + "/config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "respond")


@pytest.mark.parametrize("method, path", CLOSED)
def test_routes_the_chat_does_not_use_are_closed(site, method, path):
    server, _ = site
    r = httpx.request(method, server.url + path, json={"data": [FILE_DATA]}, timeout=30)
    assert r.status_code == 404 and r.json() == {"error": "Not found."}


def test_a_file_sent_as_the_chat_message_is_refused_and_nothing_is_copied(site, tmp_path):
    server, settings = site
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    body = {"data": [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}, []],
            "fn_index": _fn_index(server.url), "session_hash": "attacker1", "event_data": None}
    for path in ("/gradio_api/queue/join", "/gradio_api/call/respond", "/gradio_api/run/respond"):
        r = httpx.post(server.url + path, json=body, timeout=30)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert SECRET not in r.text
    cache = settings.data_dir / "gradio-cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    for path in (f"/gradio_api/file={secret}", f"/gradio_api/file={cache}/x/id_rsa"):
        assert httpx.get(server.url + path, timeout=30).status_code == 404


def test_a_text_question_through_the_queue_still_works(site):
    server, _ = site
    body = {"data": ["Who is Molly Parsons?", []], "fn_index": _fn_index(server.url),
            "session_hash": "member1", "event_data": None}
    assert httpx.post(server.url + "/gradio_api/queue/join", json=body, timeout=30).status_code == 200
    with httpx.stream("GET", server.url + "/gradio_api/queue/data?session_hash=member1", timeout=60) as r:
        text = "".join(line for line in r.iter_lines() if '"process_completed"' in line or "therapist" in line)
    assert "therapist" in text


def test_forwarded_and_unknown_hosts_never_reach_the_page(site):
    server, _ = site
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example"}
    for path in ("/", "/config"):
        r = httpx.get(server.url + path, headers=forged, timeout=30)
        assert r.status_code == 200 and "evil.example" not in r.text
        assert r.headers["cache-control"] == "no-store"
    r = httpx.get(server.url + "/", headers={"Host": "evil.example"}, timeout=30)
    assert r.status_code == 400 and "evil.example" not in r.text


@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8"])  # an address or a network, as the README says
def test_a_trusted_proxy_and_the_public_url_decide_the_root(corpus_settings, pipeline, serve_app, tmp_path, trusted):
    proxied = replace(corpus_settings, data_dir=tmp_path / "a", trusted_proxies=(trusted,))
    with serve_app(create_app(proxied, pipeline)) as server:
        r = httpx.get(server.url + "/config", headers={"X-Forwarded-Host": "strike.union.example"}, timeout=30)
        assert "strike.union.example" in r.json()["root"]
    public = replace(corpus_settings, data_dir=tmp_path / "b", public_url="https://strike.union.example")
    with serve_app(create_app(public, pipeline)) as server:
        r = httpx.get(server.url + "/config", headers={"Host": "strike.union.example",
                                                     "X-Forwarded-Host": "evil.example"}, timeout=30)
        assert r.json()["root"] == "https://strike.union.example"
        assert httpx.get(server.url + "/", timeout=30).status_code == 400  # not the public host


def test_the_page_has_our_title_and_no_outside_preview_links(site):
    server, _ = site
    html = httpx.get(server.url + "/", timeout=30).text
    assert "<title>Strike Q&amp;A</title>" in html
    for outside in ("og:image", "twitter:", "gradio.app", "githubusercontent", 'rel="manifest"'):
        assert outside not in html


def test_gradio_errors_have_the_api_error_shape(site):
    server, _ = site
    r = httpx.post(server.url + "/gradio_api/queue/join", content=b"{not json", timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = httpx.post(server.url + "/gradio_api/queue/join", json={"data": "x"}, timeout=30)
    assert r.status_code >= 400 and set(r.json()) == {"error"}


def test_file_shapes_are_found_anywhere_in_a_request():
    assert carries_files([1, {"a": [{"path": "/etc/passwd"}]}])
    assert carries_files({"x": {"meta": {"_type": "gradio.FileData"}}})
    assert not carries_files(["How much is strike pay?", [], None, 3, {"index": 1, "liked": True}])
    assert all(method in ("GET", "POST") for method, _ in GRADIO_ROUTES)
