"""One web server for everything: the chat page (Gradio), the JSON API, the widget, the sources.

    /            chat page (Gradio, mounted last so our routes take precedence)
    /api/ask     POST {"question", "history"} -> Answer.to_json()
    /api/ask/stream  the same, as NDJSON: verified sentences as they come, then the answer
    /api/feedback, /healthz, /openapi.json (no /docs: Swagger's page loads code from CDNs)
    /widget.js   the one-tag embed; /widget is the page it frames
    /source/{doc_id}?start=&end=   a cited passage in its document; /files/{doc_id} the PDF
    /admin/...   the staff console, behind a sign-in (serve/admin/)
"""
from __future__ import annotations

import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import Settings, export_environment, gradio_cache_dir, offline_environment
from ..errors import IndexNotFoundError
from ..ingest import index as index_store
from ..pipeline import Pipeline
from .admin.accounts import open_staff
from .admin.limits import UploadBodyLimit
from .admin.reindex import Reindexer
from .admin.routes import UPLOAD_PATH, admin_app, admin_router
from .api import add_error_handlers, api_router
from .desk import Desk
from .feedback import open_store
from .gate import ForwardedHeaders, GradioGate
from .middleware import SecurityHeaders
from .ratelimit import open_limiter
from .store import open_database
from .streaming import stream_router
from .web import STATIC_DIR, web_router

_ORIGIN = re.compile(r"^\*$|^https?://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?$")


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> FastAPI:
    """The whole site as one ASGI app; tests pass their own pipeline to share one model.
    Its caller has called config.offline_environment() at start (cli.main, app_factory)."""
    cache = gradio_cache_dir(settings)
    _empty(cache)  # the chat takes no files; whatever is there is left over
    import gradio as gr  # late: it reads the analytics switch offline_environment() sets

    from .ui import CSS, THEME, build_ui

    origins = allowed_origins(settings)
    # The database before the model: an unreachable one stops the start in a second, not after a load.
    store, limiter, staff = open_store(settings), open_limiter(settings), open_staff(settings)
    pipeline = pipeline or Pipeline(settings)
    desk = Desk(pipeline, store, limiter)
    console = admin_app(settings, pipeline, staff, desk.store, Reindexer(settings))

    @asynccontextmanager
    async def lifespan(app):
        yield
        _empty(cache)

    app = FastAPI(title="Strike Q&A", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Answers questions from the union's strike documents, quoting them with citations.")
    # Configured on the parent app, so Gradio (>= 6.25) adds no CORS headers of its own.
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST"],
                       allow_headers=["Content-Type"], max_age=600)
    add_error_handlers(app)
    routers = (api_router(desk), stream_router(desk), web_router(settings, pipeline), admin_router())
    for router in routers:
        app.include_router(router)
    app.mount("/qa-static", StaticFiles(directory=STATIC_DIR), name="qa-static")
    app.mount("/admin", console, name="admin")
    own = [route.path_regex for router in routers for route in router.routes]
    own += [route.path_regex for route in app.routes
            if getattr(route, "path", None) in ("/openapi.json", "/qa-static", "/admin")]
    # Added last = runs first: forwarding headers are judged on the socket's peer, every
    # response gets the security headers, then the body's size and the route allow-list
    # (gate.py) are checked before anything reads a body.
    app.add_middleware(GradioGate, own=own, title=app.title, hosts=allowed_hosts(settings))
    app.add_middleware(UploadBodyLimit, max_bytes=settings.max_request_bytes, upload_path=UPLOAD_PATH,
                       upload_bytes=settings.max_upload_mb * 2**20)
    app.add_middleware(SecurityHeaders)  # only /widget, which sets its own CSP, may be framed by others
    app.add_middleware(ForwardedHeaders, trusted=settings.trusted_proxies)
    blocks = build_ui(desk)
    app = gr.mount_gradio_app(
        app, blocks, path="/", server_name=settings.host, server_port=settings.port,
        root_path=settings.public_url,  # when set, Gradio's root URL never comes from a request
        theme=THEME, css=CSS, footer_links=[], run_history=False,  # no question kept in the browser
        # show_error off: an unexpected exception's text is not for members' eyes;
        # the errors a member can act on are shown as chat messages instead.
        ssr_mode=False, pwa=False, mcp_server=False, show_error=False,
        max_file_size=settings.max_request_bytes,  # uploads are closed anyway (gate.py)
    )
    # Gradio checks that a file it is handed was uploaded only once it "has launched", which
    # mounting never sets (gate.py): set it, so that check holds behind the gate too.
    blocks.has_launched = True
    return app


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The Host names the chat page may be asked for (Gradio writes the host into the page).

    RAG_PUBLIC_URL's host when set; on loopback, the loopback names; listening on every
    interface with no public URL, any host (the page is then sent with no-store, and the
    README asks for RAG_PUBLIC_URL behind a proxy)."""
    if settings.public_url:
        from urllib.parse import urlsplit

        return frozenset({(urlsplit(settings.public_url).hostname or "").lower()})
    if settings.host in LOOPBACK:
        return LOOPBACK
    return frozenset()


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def allowed_origins(settings: Settings) -> tuple[str, ...]:
    """The embedding sites, checked: they go into a CSP header verbatim."""
    origins = tuple(o.rstrip("/") for o in settings.allowed_origins)
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ValueError(f"RAG_ALLOWED_ORIGINS entries must look like https://union.example.org, "
                             f"got {origin!r}")
    return origins


def _empty(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def app_factory() -> FastAPI:
    """The app of one worker process (`rag serve --workers N`), its settings from RAG_* variables."""
    import os

    from ..ingest.embedding import set_threads

    offline_environment()  # a worker process starts here, not in cli.main
    settings = Settings.from_env()
    set_threads((os.cpu_count() or 1) // settings.workers)  # workers share the cores
    return create_app(settings)


def serve(settings: Settings) -> None:
    """Run the site with uvicorn until interrupted; with workers > 1, as that many processes.

    Workers each load the model and memory-map the same index build, so the
    index is held once in the page cache; each notices a new build by itself.
    """
    import uvicorn

    if settings.workers < 1:
        raise ValueError(f"workers must be >= 1, got {settings.workers}")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    # No access log: it would record members' IP addresses next to what they opened.
    if settings.workers == 1:
        app = create_app(settings)
        print(f"Strike Q&A is running at {url}  (API schema {url}/openapi.json, widget {url}/widget.js)",
              flush=True)
        uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings))
        return
    if index_store.current_version(settings.index_dir) is None:  # fail now, clearly, not in each worker
        raise IndexNotFoundError(f"no index in {settings.index_dir}; build one with `rag ingest`")
    for part in ("feedback", "ratelimit", "staff"):  # the database too: reachable, and its schema upgraded once
        open_database(settings, part)
    export_environment(settings)  # the workers' settings: CLI flags included
    print(f"Strike Q&A is running at {url} with {settings.workers} workers  (API schema "
          f"{url}/openapi.json, widget {url}/widget.js)", flush=True)
    uvicorn.run("rag.serve.server:app_factory", factory=True, workers=settings.workers, host=settings.host,
                port=settings.port, **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict:
    """How uvicorn runs the app, apart from where it listens."""
    return {
        "log_level": "warning",
        # Longer than a proxy's pooled keep-alive (nginx: 60 s), and past a race seen here: at
        # 140+ req/s on 50 connections uvicorn's 5 s default dropped 3 requests in 40 s (httpx
        # ReadError; Kludex/uvicorn#1637, lsst-sqre/phalanx#5103); none at 75 s.
        "timeout_keep_alive": 75,
        "access_log": False,
        # Past this many open connections uvicorn answers 503 at once instead of queueing
        # without bound. uvicorn has no timeout for a client that sends half its headers:
        # a proxy in front must bound that (docs/security.md).
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": 16 * 1024,  # request line + headers
        # Forwarding headers are judged in the app (gate.ForwardedHeaders), on the socket's
        # own peer: uvicorn's own handling would replace that peer before the app sees it.
        "proxy_headers": False,
    }
