"""One web server for everything: the chat page (Gradio), the JSON API, the widget, the sources.

    /            chat page (Gradio, mounted last so our routes take precedence)
    /api/ask     POST {"question", "history"} -> Answer.to_json()
    /api/ask/stream  the same, as NDJSON: verified sentences as they come, then the answer
    /api/feedback, /healthz, /docs (OpenAPI)
    /widget.js   the one-tag embed; /widget is the page it frames
    /source/{doc_id}?start=&end=   a cited passage in its document; /files/{doc_id} the PDF
"""
from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from . import __version__
from .api import add_error_handlers, api_router
from .config import Settings, offline_environment
from .feedback import open_store
from .pipeline import Pipeline
from .ratelimit import RateLimiter
from .streaming import stream_router
from .web import STATIC_DIR, frame_ancestors, web_router

_ORIGIN = re.compile(r"^\*$|^https?://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)(:\d{1,5})?$")


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> FastAPI:
    """The whole site as one ASGI app; tests pass their own pipeline to share one model."""
    offline_environment()
    import gradio as gr  # after offline_environment(): it reads the analytics switch

    from .ui import CSS, THEME, build_ui

    origins = allowed_origins(settings)
    pipeline = pipeline or Pipeline(settings)
    store = open_store(settings)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    app = FastAPI(title="Strike Q&A", version=__version__,
                  description="Answers questions from the union's strike documents, quoting them with citations.")
    # Configured on the parent app, so Gradio (>= 6.25) adds no CORS headers of its own.
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST"],
                       allow_headers=["Content-Type"], max_age=600)
    app.add_middleware(SecurityHeaders, frame_ancestors=frame_ancestors(origins))
    add_error_handlers(app)
    app.include_router(api_router(pipeline, store, limiter))
    app.include_router(stream_router(pipeline, store, limiter))  # /api/ask/stream
    app.include_router(web_router(settings, pipeline))
    app.mount("/qa-static", StaticFiles(directory=STATIC_DIR), name="qa-static")
    blocks = build_ui(pipeline, store, limiter)
    return gr.mount_gradio_app(
        app, blocks, path="/", server_name=settings.host, server_port=settings.port,
        theme=THEME, css=CSS, footer_links=[], run_history=False,  # no question kept in the browser
        # show_error off: an unexpected exception's text is not for members' eyes;
        # the errors a member can act on are shown as chat messages instead.
        ssr_mode=False, pwa=False, mcp_server=False, show_error=False,
    )


def allowed_origins(settings: Settings) -> tuple[str, ...]:
    """The embedding sites, checked: they go into a CSP header verbatim."""
    origins = tuple(o.rstrip("/") for o in settings.allowed_origins)
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ValueError(f"RAG_ALLOWED_ORIGINS entries must look like https://union.example.org, "
                             f"got {origin!r}")
    return origins


class SecurityHeaders:
    """Default headers for every response: no MIME sniffing, framing only by listed sites.

    Pure ASGI rather than BaseHTTPMiddleware, which would buffer Gradio's streams.
    """

    def __init__(self, app, frame_ancestors: str):
        self.app = app
        self.csp = f"frame-ancestors {frame_ancestors}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", self.csp))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def serve(settings: Settings) -> None:
    """Run the site with uvicorn until interrupted."""
    import uvicorn

    app = create_app(settings)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    print(f"Strike Q&A is running at {url}  (API docs {url}/docs, widget {url}/widget.js)", flush=True)
    # No access log: it would record members' IP addresses next to what they opened.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
