"""Shared fixtures: the real model, an index of the shipped corpus, a pipeline, and live servers.

Everything heavy is session-scoped: the model loads once and the corpus is
indexed once, into a temporary folder, never into the repo's own index/.
"""
from __future__ import annotations

import functools
import socket
import threading
import time
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.config import Settings, offline_environment

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"

offline_environment()


@pytest.fixture(scope="session")
def embedder():
    from rag.ingest.embedding import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory, embedder) -> Settings:
    """Settings whose index holds the shipped corpus, built once into a temporary folder."""
    from rag.ingest.run import ingest

    base = tmp_path_factory.mktemp("strike-qa")
    settings = Settings(corpus_dir=CORPUS, index_dir=base / "index", data_dir=base / "data")
    ingest([CORPUS], settings, embedder_factory=lambda: embedder, progress=False)
    return settings


@pytest.fixture(scope="session")
def pipeline(corpus_settings, embedder):
    from rag.pipeline import Pipeline

    return Pipeline(corpus_settings, embedder=embedder)


class LiveServer:
    """An ASGI app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, app, **options):
        """``options``: uvicorn settings, e.g. ``rag.serve.server.uvicorn_options(settings)``."""
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # the OS picks the port: no race with other tests
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        # A browser may hold a streaming connection open; don't wait long for it at shutdown.
        config = uvicorn.Config(app, **{"log_level": "warning", "access_log": False, **options},
                                lifespan="on", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server at {self.url} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class StaticSite:
    """A plain web site (another origin) serving files from a folder, like a union's own site."""

    def __init__(self, folder: Path):
        self.folder = folder
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "StaticSite":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def page(self, name: str, html: str) -> str:
        (self.folder / name).write_text(html, encoding="utf-8")
        return f"{self.url}/{name}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def files_read(monkeypatch) -> list[str]:
    """The names of the files ingest reads from here on, in order (the loader, counting)."""
    from rag.ingest import loaders

    read: list[str] = []
    real = loaders.load_file

    def counting(path, *args, **kwargs):
        read.append(path.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loaders, "load_file", counting)
    return read


@pytest.fixture(scope="session")
def union_site(tmp_path_factory):
    """The site allowed to embed the widget."""
    with StaticSite(tmp_path_factory.mktemp("union-site")) as site:
        yield site


@pytest.fixture(scope="session")
def foreign_site(tmp_path_factory):
    """A site that is not on the allowed list."""
    with StaticSite(tmp_path_factory.mktemp("foreign-site")) as site:
        yield site


@pytest.fixture(scope="session")
def serve_app():
    """Start another app for one test: ``with serve_app(create_app(...)) as server: server.url``."""
    return LiveServer


@pytest.fixture(scope="session")
def live_server(corpus_settings, pipeline, union_site):
    """The whole app (chat, API, widget) on a loopback port; the union site may embed it."""
    from rag.serve.server import create_app

    # A generous limit: every test here asks from 127.0.0.1; the limit has tests of its own.
    settings = replace(corpus_settings, allowed_origins=(union_site.url,), rate_limit_per_minute=1000)
    with LiveServer(create_app(settings, pipeline)) as server:
        yield server


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server for the session (skipped, saying why, where none can run)."""
    from tests.postgres import running_server

    yield from running_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """RAG_DATABASE_URL for one test, once per backend: "" (SQLite files in the data folder), then
    a fresh database on the session's PostgreSQL server."""
    yield from _database(request)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request):
    """database_url for a module's shared server: the whole module runs once per backend."""
    yield from _database(request)


def _database(request):
    if request.param == "sqlite":
        yield ""
        return
    from rag.config import Settings
    from rag.serve import store

    server = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    for part in store.TABLES:
        store.dispose(store.database_url(Settings(database_url=url), part))
    server.drop_database(url)
