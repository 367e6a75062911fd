"""The console's routes, as an app of their own mounted at /admin: every route but sign-in needs
a session (pages redirect to sign-in, forms get 401 JSON), and every form a one-use token (403).

    GET  /admin/sign-in, POST /admin/sign-in, POST /admin/sign-out
    GET  /admin/documents?q=        the table, upload, post an update, edit, remove, trash
    POST /admin/documents/{upload,post,edit,remove,restore}, /admin/reindex
    GET  /admin/status.json         the re-index's progress (the page polls it)
    GET  /admin/questions, /admin/questions.csv, POST /admin/questions/handled
    GET  /admin/audit
"""
from __future__ import annotations

import logging
import secrets
import shutil
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ...config import Settings
from ...errors import DatabaseUnavailableError, StaffError, UploadError
from ...pipeline import Pipeline
from ..catalog import matches
from ..feedback import FeedbackStore
from ..sources import corpus_file
from . import library, questions
from .accounts import Session, StaffStore
from .pages import HEADERS, render
from .reindex import Reindexer

COOKIE = "rag_staff"
PRE_COOKIE = "rag_staff_pre"  # the sign-in form's own token (a login CSRF guard)
UPLOAD_PATH = "/admin/documents/upload"
MAX_FILES = 20
DATABASE_DOWN = ("The console's database is unavailable just now, so nobody can sign in and nothing can be "
                 "changed; nothing was changed. Members' questions are still answered. Try again in a few "
                 "minutes; if it lasts, check the database server that RAG_DATABASE_URL names.")

log = logging.getLogger(__name__)


class SignInRequired(Exception):
    def __init__(self, page: bool):
        self.page = page


class FormRefused(Exception):
    pass


def admin_app(settings: Settings, pipeline: Pipeline, staff: StaffStore, feedback: FeedbackStore,
              reindexer: Reindexer) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired):
        if exc.page:
            return RedirectResponse("/admin/sign-in", status_code=303, headers={"Cache-Control": "no-store"})
        return JSONResponse({"error": "Sign in first (your session is missing or has expired)."}, status_code=401)

    @app.exception_handler(FormRefused)
    async def _refused(request: Request, exc: FormRefused):
        return render("message.html", 403, title="Form refused",
                      message="This form was already sent, has expired, or did not come from this console. "
                              "Nothing was changed. Open the page again and repeat what you did.")

    @app.exception_handler(DatabaseUnavailableError)
    async def _database_down(request: Request, exc: DatabaseUnavailableError):
        log.warning("%s on %s", exc, request.url.path)
        if request.url.path.endswith(".json"):  # the page's progress poll
            response = JSONResponse({"error": DATABASE_DOWN}, status_code=503)
        else:
            response = render("message.html", 503, title="Database unavailable", message=DATABASE_DOWN)
        response.headers["Retry-After"] = "60"
        return response

    def page_session(request: Request) -> Session:
        session = staff.session(request.cookies.get(COOKIE))
        if session is None:
            raise SignInRequired(page=True)
        return session

    def post_session(request: Request) -> Session:
        session = staff.session(request.cookies.get(COOKIE))
        if session is None:
            raise SignInRequired(page=False)
        return session

    def checked(session: Session, form) -> None:
        if not staff.use_form_token(session, form.get("token")):
            raise FormRefused()

    def secure(request: Request) -> bool:
        return request.url.scheme == "https" or settings.public_url.lower().startswith("https://")

    def roots() -> list[Path]:
        """The folders the live index was built from, and the console's own folder."""
        built = [Path(r) for r in pipeline.index.manifest.corpus_roots] or [settings.corpus_dir]
        docs = settings.documents_dir.resolve()
        return [r for r in built if Path(r).resolve() != docs] + [settings.documents_dir]

    def reindex(who: str) -> None:
        settings.documents_dir.mkdir(parents=True, exist_ok=True)
        reindexer.request(roots(), who)
        staff.log(who, "re-index", ", ".join(str(r) for r in roots()))

    def base(session: Session, **context) -> dict:
        return {"who": session.name, "token": staff.form_token(session), "flashes": staff.flashes(session),
                "status": reindexer.status(), **context}

    # sign-in
    @app.get("/sign-in")
    def sign_in_page(request: Request):
        if staff.session(request.cookies.get(COOKIE)):
            return RedirectResponse("/admin/documents", status_code=303)
        pre = secrets.token_urlsafe(24)
        response = render("sign_in.html", token=pre, error="")
        response.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", secure=secure(request),
                            path="/admin", max_age=3600)
        return response

    @app.post("/sign-in")
    async def sign_in(request: Request):
        form = await request.form()
        pre = request.cookies.get(PRE_COOKIE, "")
        if not pre or not secrets.compare_digest(pre, str(form.get("token", ""))):
            raise FormRefused()
        try:
            session = await run_in_threadpool(staff.sign_in, str(form.get("name", "")), str(form.get("password", "")))
        except StaffError as exc:
            response = render("sign_in.html", 401, token=pre, error=str(exc))
            return response
        response = RedirectResponse("/admin/documents", status_code=303)
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="strict", secure=secure(request),
                            path="/admin")
        response.delete_cookie(PRE_COOKIE, path="/admin")
        return response

    @app.post("/sign-out")
    async def sign_out(request: Request, session: Session = Depends(post_session)):
        checked(session, await request.form())
        staff.sign_out(session)
        response = RedirectResponse("/admin/sign-in", status_code=303)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    @app.get("/")
    def home(session: Session = Depends(page_session)):
        return RedirectResponse("/admin/documents", status_code=303)

    # documents
    @app.get("/documents")
    def documents(q: str = "", session: Session = Depends(page_session)):
        rows = document_rows(settings, pipeline, reindexer.status())
        rows = [r for r in rows if matches(q, r["title"], r["doc_id"])]
        return render("documents.html", **base(session, rows=rows, q=q, trash=library.trash(settings),
                                               max_mb=settings.max_upload_mb, built=pipeline.index.manifest.built_at))

    @app.post("/documents/upload")
    async def upload(request: Request, session: Session = Depends(post_session)):
        async with request.form(max_files=MAX_FILES, max_fields=10) as form:
            checked(session, form)
            files = [f for f in form.getlist("files") if hasattr(f, "filename") and f.filename]
            if not files:
                staff.flash(session, "Choose one or more files to upload.", ok=False)
            added = 0
            for f in files:
                name = str(f.filename)
                try:
                    path = await run_in_threadpool(_keep, settings, f.file, name)
                except UploadError as exc:
                    staff.flash(session, str(exc), ok=False)
                    staff.log(session.name, "upload refused", name, str(exc))
                    continue
                added += 1
                staff.flash(session, f"Added {path.name}.")
                staff.log(session.name, "upload", path.name, f"from {name!r}")
        if added:
            reindex(session.name)
        return RedirectResponse("/admin/documents", status_code=303)

    def changed(session: Session, message: str, action: str, target: str, detail: str = "") -> RedirectResponse:
        """A change made to the documents: said on the page, written to the audit log, re-indexed."""
        staff.flash(session, message)
        staff.log(session.name, action, target, detail)
        reindex(session.name)
        return RedirectResponse("/admin/documents", status_code=303)

    def refused(session: Session, message: str) -> RedirectResponse:
        staff.flash(session, message, ok=False)
        return RedirectResponse("/admin/documents", status_code=303)

    @app.post("/documents/post")
    async def post(request: Request, session: Session = Depends(post_session)):
        form = await request.form()
        checked(session, form)
        try:
            path = library.post_update(settings, str(form.get("title", "")), str(form.get("date", "")),
                                       str(form.get("text", "")))
        except UploadError as exc:
            return refused(session, f"The update was not posted: {exc}.")
        return changed(session, f"Posted {path.name}.", "post", path.name, str(form.get("title", "")))

    def located(doc_id: str) -> tuple[Path, Path]:
        """A live document's file and the corpus folder holding it, or UploadError."""
        path = corpus_file(roots(), pipeline.index.documents, doc_id)
        root = next((r for r in roots() if path and path.is_relative_to(Path(r).resolve())), None)
        if path is None or root is None:
            raise UploadError("that document is not in the index (it may have been removed already)")
        return path, Path(root)

    @app.post("/documents/edit")
    async def edit(request: Request, session: Session = Depends(post_session)):
        form = await request.form()
        checked(session, form)
        doc_id = str(form.get("doc_id", ""))
        try:
            path, root = located(doc_id)
            title = library.clean_title(str(form.get("title", "")))
            day = str(form.get("date", "")).strip()
            day = library.check_date(day) if day else ""
            library.set_labels(root, path.relative_to(root.resolve()).as_posix(), title, day)
        except UploadError as exc:
            return refused(session, f"Nothing was changed: {exc}.")
        return changed(session, f"Saved the title and date of {doc_id}.", "edit", doc_id,
                       f"title {title!r}, date {day or 'from the document'}")

    @app.post("/documents/remove")
    async def remove(request: Request, session: Session = Depends(post_session)):
        form = await request.form()
        checked(session, form)
        doc_id = str(form.get("doc_id", ""))
        try:
            path, root = located(doc_id)
            library.remove(settings, [root], path, doc_id, pipeline.index.documents[doc_id].title, session.name)
        except UploadError as exc:
            return refused(session, f"Nothing was removed: {exc}.")
        return changed(session, f"Removed {doc_id} (kept in the trash below; it can be restored).", "remove", doc_id)

    @app.post("/documents/restore")
    async def restore(request: Request, session: Session = Depends(post_session)):
        form = await request.form()
        checked(session, form)
        try:
            item = library.restore(settings, str(form.get("key", "")))
        except UploadError as exc:
            return refused(session, f"Nothing was restored: {exc}.")
        return changed(session, f"Restored {item.relative}.", "restore", item.doc_id)

    @app.post("/reindex")
    async def reindex_now(request: Request, session: Session = Depends(post_session)):
        checked(session, await request.form())
        reindex(session.name)
        staff.flash(session, "Re-indexing started.")
        return RedirectResponse("/admin/documents", status_code=303)

    @app.get("/status.json")
    def status(session: Session = Depends(post_session)):
        s = reindexer.status()
        return JSONResponse({"state": s.state, "progress": s.progress, "pending": s.pending, "summary": s.summary,
                             "error": s.error, "build": pipeline.index.version},
                            headers={"Cache-Control": "no-store"})

    # what members ask
    @app.get("/questions")
    def questions_page(session: Session = Depends(page_session), show: str = "open"):
        rows = questions.groups(feedback, staff.handled())
        shown = rows if show == "all" else [g for g in rows if not g.handled]
        return render("questions.html", **base(session, rows=shown, show=show, total=len(rows)))

    @app.get("/questions.csv")
    def questions_csv(session: Session = Depends(page_session)):
        text = questions.to_csv(questions.groups(feedback, staff.handled()))
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="member-questions.csv"', **HEADERS})

    @app.post("/questions/handled")
    async def handled(request: Request, session: Session = Depends(post_session)):
        form = await request.form()
        checked(session, form)
        key = str(form.get("key", ""))
        if key.startswith(("u:", "d:")):
            staff.mark_handled(key, session.name)
            staff.log(session.name, "mark handled", key[2:200])
            staff.flash(session, "Marked handled.")
        return RedirectResponse("/admin/questions", status_code=303)

    @app.get("/audit")
    def audit(session: Session = Depends(page_session)):
        return render("audit.html", **base(session, rows=staff.audit()))

    return app


def admin_router() -> APIRouter:
    """/admin itself, on the main app (a mount answers /admin/... only)."""
    router = APIRouter()

    @router.get("/admin", include_in_schema=False)
    def admin_root():
        return RedirectResponse("/admin/documents", status_code=303)

    return router


def _keep(settings: Settings, source, name: str) -> Path:
    """Copy an uploaded file (Starlette's spooled temp file) into incoming/, then check and add it."""
    written = library.incoming(settings) / f".{secrets.token_hex(8)}.part"
    try:
        with open(written, "xb") as out:
            source.seek(0)
            shutil.copyfileobj(source, out, 1 << 20)
    except OSError as exc:
        written.unlink(missing_ok=True)
        raise UploadError(f"{name}: could not be saved ({exc.strerror or exc})") from None
    return library.add_file(settings, written, name)


def document_rows(settings: Settings, pipeline: Pipeline, status) -> list[dict]:
    """Every indexed document, newest first, and files in the console's folder still waiting to be indexed."""
    index = pipeline.index
    notes: dict[str, list[str]] = {}
    for doc_id, note in status.notes:
        notes.setdefault(doc_id, []).append(note)
    docs_dir = settings.documents_dir.resolve()
    rows, indexed = [], set()
    for doc in index.documents.values():
        source = Path(doc.source) if doc.source else None
        console = bool(source and source.resolve().is_relative_to(docs_dir))
        if source:
            indexed.add(source.resolve())
        rows.append({"doc_id": doc.doc_id, "title": doc.title, "date": doc.date or "", "date_source": doc.date_source,
                     "folder": "console" if console else (source.parent.name if source else ""),
                     "pages": len(doc.pages), "chunks": len(index.chunks_of(doc.doc_id)),
                     "indexed": index.manifest.built_at, "warnings": notes.get(doc.doc_id, []), "waiting": False})
    for skipped, reason in status.skipped:
        notes.setdefault(skipped, []).append(f"not indexed: {reason}")
    if settings.documents_dir.is_dir():
        for path in sorted(settings.documents_dir.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.resolve() not in indexed:
                name = path.relative_to(settings.documents_dir).as_posix()
                warnings = notes.get(name, []) or notes.get(f"documents/{name}", [])
                rows.append({"doc_id": name, "title": name, "date": "", "date_source": "", "folder": "console",
                             "pages": 0, "chunks": 0, "indexed": "", "waiting": not warnings, "warnings": warnings})
    return sorted(rows, key=lambda r: (r["waiting"], r["date"]), reverse=True)  # waiting first, then newest
