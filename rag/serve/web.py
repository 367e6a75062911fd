"""Pages of our own: the embeddable widget, its loader script, and cited passages in their documents."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from ..config import Settings
from ..pipeline import Pipeline
from .catalog import MAX_QUERY, listings, newest_date
from .sources import built_when, corpus_file, render_source
from .templating import templates

STATIC_DIR = Path(__file__).resolve().parent / "static"
NOT_FOUND = "No such document."


def frame_ancestors(origins: tuple[str, ...]) -> str:
    return " ".join(("'self'", *origins))


def widget_csp(origins: tuple[str, ...]) -> str:
    # Only our own files run in the widget; only the listed sites may frame it.
    return ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            f"frame-ancestors {frame_ancestors(origins)}")


_templates = templates(Path(__file__).resolve().parent / "templates")

SOURCE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'self'")


def corpus_roots(settings: Settings, pipeline: Pipeline) -> list[Path]:
    """The folders the live index was built from (its manifest), else the configured corpus folder."""
    return [Path(r) for r in pipeline.index.manifest.corpus_roots] or [settings.corpus_dir]


def web_router(settings: Settings, pipeline: Pipeline) -> APIRouter:
    router = APIRouter()
    widget_html = (STATIC_DIR / "widget.html").read_text(encoding="utf-8")
    csp = widget_csp(settings.allowed_origins)

    @router.get("/widget", response_class=HTMLResponse, include_in_schema=False)
    def widget() -> HTMLResponse:
        return HTMLResponse(widget_html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})

    @router.get("/widget.js", include_in_schema=False)
    def widget_js() -> FileResponse:
        # Sites load this cross-origin with a plain <script> tag: no CORS needed,
        # but it must be JavaScript-typed and never sniffed as anything else.
        return FileResponse(STATIC_DIR / "widget.js", media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=300"})

    @router.get("/source/{doc_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def source(doc_id: str, start: int | None = Query(None, ge=0),
               end: int | None = Query(None, ge=0)) -> Response:
        documents = pipeline.index.documents
        if corpus_file(corpus_roots(settings, pipeline), documents, doc_id) is None:
            return PlainTextResponse(NOT_FOUND, status_code=404)
        return HTMLResponse(render_source(documents[doc_id], start, end),
                            headers={"Content-Security-Policy": SOURCE_CSP})

    @router.get("/documents", response_class=HTMLResponse, include_in_schema=False)
    def documents(q: str = Query("", max_length=10 * MAX_QUERY)) -> HTMLResponse:
        index = pipeline.index
        query = q[:MAX_QUERY].strip()
        page = _templates.get_template("documents.html").render(
            rows=listings(index.documents, query), total=len(index.documents), query=query,
            newest=newest_date(index.documents), built=built_when(index.manifest.built_at))
        return HTMLResponse(page, headers={"Content-Security-Policy": SOURCE_CSP, "Cache-Control": "no-cache"})

    @router.get("/files/{doc_id:path}", include_in_schema=False)
    def original(doc_id: str) -> Response:
        # Only PDFs: an HTML file from the corpus served from our origin could
        # run its own scripts; its text is readable through /source instead.
        path = corpus_file(corpus_roots(settings, pipeline), pipeline.index.documents, doc_id)
        if path is None or path.suffix.lower() != ".pdf":
            return PlainTextResponse(NOT_FOUND, status_code=404)
        return FileResponse(path, media_type="application/pdf", content_disposition_type="inline",
                            filename=path.name)

    return router
