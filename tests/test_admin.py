"""The staff console (/admin) through a real server on loopback: accounts from the CLI, sign-in,
sessions, one-use form tokens, uploads checked by content, posted updates, edits, removal and
restore, background re-indexing, what members ask, the audit log; and the attacks the issue lists.
The whole module runs twice: its state in SQLite files, then in PostgreSQL."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import replace

import httpx
import pytest

from sqlalchemy import text

from rag.config import Settings
from rag.serve.admin.library import MAX_DOCX_UNZIPPED
from rag.serve.store import open_database
from tests.conftest import CORPUS, ROOT, LiveServer
from tests.pdfs import imageonly_pdf, text_pdf
from tests.test_docx import bulletin

PASSWORD = "correct horse battery"
SAVE_DATE = "When is the Oakridge hall picket rally?"


def cli(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOME": str(settings.home),
           "RAG_DATA_DIR": str(settings.data_dir), "RAG_INDEX_DIR": str(settings.index_dir),
           "RAG_DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, embedder, module_database_url) -> Settings:
    from rag.ingest.run import ingest

    base = tmp_path_factory.mktemp("console")
    shutil.copytree(CORPUS, base / "corpus")
    settings = Settings(home=base, corpus_dir=base / "corpus", index_dir=base / "index", data_dir=base / "data",
                        rate_limit_per_minute=1000, max_upload_mb=2, max_upload_pages=5,
                        database_url=module_database_url)
    ingest([settings.corpus_dir], settings, embedder_factory=lambda: embedder, progress=False)
    for name in ("alice", "bob", "mallory"):
        assert cli(settings, "staff", "add", name, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    return settings


@pytest.fixture(scope="module")
def server(settings, embedder):
    from rag.pipeline import Pipeline
    from rag.serve.server import create_app

    with LiveServer(create_app(settings, Pipeline(settings, embedder=embedder))) as live:
        yield live


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60)


def signed_in(server, name: str = "alice") -> httpx.Client:
    c = client(server)
    page = c.get("/admin/sign-in")
    r = c.post("/admin/sign-in", data={"name": name, "password": PASSWORD, "token": token(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/admin/documents", r.text
    return c


def token(html: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', html).group(1)


def fresh_token(c: httpx.Client, page: str = "/admin/documents") -> str:
    r = c.get(page)
    assert r.status_code == 200, r.text
    return token(r.text)


def upload(c: httpx.Client, *files: tuple[str, bytes]) -> str:
    r = c.post("/admin/documents/upload", data={"token": fresh_token(c)},
               files=[("files", (name, data)) for name, data in files])
    assert r.status_code == 303, r.text
    return c.get("/admin/documents").text


def wait_reindexed(c: httpx.Client, timeout: float = 240) -> dict:
    """Until the console's re-index has finished and the server answers from the new build."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = c.get("/admin/status.json").json()
        if s["state"] != "running" and not s["pending"]:
            assert s["state"] == "done", s
            time.sleep(1.2)  # the pipeline looks for a new build at most once a second
            return s
        time.sleep(0.3)
    raise TimeoutError("re-index did not finish")


def ask(c: httpx.Client, question: str) -> dict:
    r = c.post("/api/ask", json={"question": question})
    assert r.status_code == 200, r.text
    return r.json()


# accounts (the CLI)
def test_staff_accounts_from_the_cli(settings):
    listed = cli(settings, "staff", "list")
    assert listed.returncode == 0 and {"alice", "bob", "mallory"} <= set(re.findall(r"^(\S+)\t", listed.stdout, re.M))
    again = cli(settings, "staff", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "already a staff account named 'alice'" in again.stderr
    short = cli(settings, "staff", "add", "carol", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    bad = cli(settings, "staff", "add", "../root", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad.returncode == 1 and "a staff name is" in bad.stderr
    assert cli(settings, "staff", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert cli(settings, "staff", "remove", "carol").returncode == 0
    gone = cli(settings, "staff", "remove", "carol")
    assert gone.returncode == 1 and "no staff account named 'carol'" in gone.stderr
    with open_database(settings, "staff").read() as db:
        stored = db.execute(text("SELECT hash FROM staff")).scalars().all()
    assert stored and all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)


# sessions
PAGES = ["/admin", "/admin/", "/admin/documents", "/admin/questions", "/admin/questions.csv", "/admin/audit"]
POSTS = ["/admin/documents/upload", "/admin/documents/post", "/admin/documents/edit", "/admin/documents/remove",
         "/admin/documents/restore", "/admin/reindex", "/admin/questions/handled", "/admin/sign-out"]


def test_no_admin_route_answers_without_a_session(server):
    c = client(server)
    for path in PAGES:
        r = c.get(path, follow_redirects=True)
        assert r.url.path == "/admin/sign-in" and "Sign in" in r.text, path
        assert "Documents</a>" not in r.text  # no page content leaks
    for path in POSTS + ["/admin/status.json"]:
        r = c.request("POST" if path in POSTS else "GET", path, data={"token": "x"})
        assert r.status_code == 401 and "Sign in first" in r.json()["error"], path
    # A made-up cookie is no session either.
    c.cookies.set("rag_staff", "forged-session-token", path="/admin")
    assert c.get("/admin/documents").headers["location"] == "/admin/sign-in"
    assert c.post("/admin/reindex", data={"token": "x"}).status_code == 401


def test_wrong_password_then_lock_out_after_five_failures(server):
    c = client(server)
    pre = token(c.get("/admin/sign-in").text)
    for _ in range(5):
        r = c.post("/admin/sign-in", data={"name": "mallory", "password": "wrong password!", "token": pre})
        assert r.status_code == 401 and "Wrong name or password." in r.text and "rag_staff=" not in r.headers.get("set-cookie", "")
    r = c.post("/admin/sign-in", data={"name": "mallory", "password": PASSWORD, "token": pre})
    assert r.status_code == 401 and "Too many failed sign-ins" in r.text and "15 minutes" in r.text
    # An unknown name fails with the same words: no hint of which names exist.
    r = c.post("/admin/sign-in", data={"name": "nobody", "password": PASSWORD, "token": pre})
    assert r.status_code == 401 and "Wrong name or password." in r.text
    # Others are not locked out.
    signed_in(server, "bob")


def test_sign_in_form_needs_its_own_token(server):
    c = client(server)
    c.get("/admin/sign-in")
    r = c.post("/admin/sign-in", data={"name": "alice", "password": PASSWORD, "token": "forged"})
    assert r.status_code == 403 and "Nothing was changed" in r.text
    r = client(server).post("/admin/sign-in", data={"name": "alice", "password": PASSWORD})  # no cookie, no token
    assert r.status_code == 403


def test_session_cookie_is_httponly_strict_and_secure_over_https(settings, server, embedder):
    c = client(server)
    r = c.post("/admin/sign-in", data={"name": "alice", "password": PASSWORD, "token": token(c.get("/admin/sign-in").text)})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie and "secure" not in cookie
    from fastapi.testclient import TestClient

    from rag.pipeline import Pipeline
    from rag.serve.server import create_app

    https = replace(settings, public_url="https://strike.union.example")
    t = TestClient(create_app(https, Pipeline(https, embedder=embedder)), base_url="https://strike.union.example")
    page = t.get("/admin/sign-in")
    assert "secure" in page.headers["set-cookie"].lower()
    r = t.post("/admin/sign-in", data={"name": "alice", "password": PASSWORD, "token": token(page.text)},
               follow_redirects=False)
    assert "; secure" in r.headers["set-cookie"].lower()


def test_pages_carry_a_strict_csp_and_no_store(server):
    r = signed_in(server).get("/admin/documents")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"


def test_forged_missing_replayed_and_foreign_form_tokens_are_refused(server, settings):
    c = signed_in(server)
    assert c.post("/admin/reindex").status_code == 403
    assert c.post("/admin/reindex", data={"token": "forged"}).status_code == 403
    other = fresh_token(signed_in(server, "bob"))  # bob's token in alice's session
    assert c.post("/admin/reindex", data={"token": other}).status_code == 403
    form = {"token": fresh_token(c), "title": "Replayed update", "date": "2026-09-01", "text": "Once only."}
    assert c.post("/admin/documents/post", data=form).status_code == 303
    replay = c.post("/admin/documents/post", data=form)
    assert replay.status_code == 403 and "already sent" in replay.text
    assert len(list(settings.documents_dir.glob("*replayed-update*"))) == 1
    wait_reindexed(c)


def test_expired_session_and_sign_out(server, settings):
    c = signed_in(server)
    assert c.get("/admin/documents").status_code == 200
    with open_database(settings, "staff").begin() as db:  # idle for three hours
        db.execute(text("UPDATE sessions SET seen = seen - 3 * 3600"))
    assert c.get("/admin/documents").headers["location"] == "/admin/sign-in"
    c = signed_in(server)
    cookie = c.cookies["rag_staff"]
    r = c.post("/admin/sign-out", data={"token": fresh_token(c)})
    assert r.status_code == 303 and r.headers["location"] == "/admin/sign-in"
    stolen = client(server)
    stolen.cookies.set("rag_staff", cookie, path="/admin")  # the old cookie, kept by someone
    assert stolen.get("/admin/documents").headers["location"] == "/admin/sign-in"


# uploads: bad input
def test_files_are_checked_by_content_not_name(server, settings, tmp_path):
    c = signed_in(server)
    before = sorted(p.name for p in settings.documents_dir.glob("*")) if settings.documents_dir.exists() else []
    page = upload(c, ("contract.pdf", b"just text pretending to be a PDF"),
                  ("picket-photos.zip.txt", b"PK\x03\x04" + b"\x00" * 100),
                  ("schedule.pdf", b"PK\x03\x04" + b"\x00" * 100),
                  ("tool.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 50),
                  ("bomb.pdf", text_pdf(tmp_path / "bomb.pdf", [f"page {i}" for i in range(6)]).read_bytes()),
                  ("broken.pdf", b"%PDF-1.7\n garbage with no objects"),
                  ("notes.exe", b"hello"))
    assert "contract.pdf: the name says PDF but the content is text" in page
    assert "this is a zip archive" in page and "schedule.pdf: this is a zip archive" in page
    assert "tool.txt: this is a program" in page
    assert "bomb.pdf: 6 pages is more than the 5 allowed" in page
    assert "broken.pdf: the PDF cannot be read" in page
    assert "notes.exe: only PDF, Word (.docx), HTML, Markdown" in page
    after = sorted(p.name for p in settings.documents_dir.glob("*")) if settings.documents_dir.exists() else []
    assert after == before  # nothing refused was kept
    assert not [p for p in (settings.data_dir / "incoming").iterdir()]


def test_word_files_are_added_and_zips_posing_as_word_refused(server, settings, tmp_path):
    c = signed_in(server)
    good = bulletin(tmp_path / "bulletin.docx")
    fake = tmp_path / "minutes.docx"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("photos/picket.jpg", b"\xff\xd8\xff not really")
    bomb = tmp_path / "bomb.docx"  # a few hundred KB that would unzip past the limit
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"<w:document/>")
        with z.open("word/media/filler.bin", "w") as part:
            for _ in range(MAX_DOCX_UNZIPPED // 2**20 + 1):
                part.write(bytes(2**20))
    page = upload(c, ("bulletin.docx", good.read_bytes()), ("minutes.docx", fake.read_bytes()),
                  ("bomb.docx", bomb.read_bytes()), ("letter.docx", b"plain text named as Word"))
    assert "Added bulletin.docx." in page
    assert "minutes.docx: this is a zip archive, not a Word document" in page
    assert "bomb.docx: the Word file would unzip to more than" in page
    assert "letter.docx: the name says Word but the content is text" in page
    assert sorted(p.name for p in settings.documents_dir.glob("*.docx")) == ["bulletin.docx"]
    wait_reindexed(c)
    answer = ask(c, "How much is strike pay a week from the second week?")
    assert "$500" in answer["answer"] and answer["citations"][0]["doc_id"].endswith("bulletin.docx")


def test_file_names_are_made_safe(server, settings):
    c = signed_in(server)
    page = upload(c, ("../../../etc/cron.d/x\x07\x1b[31m.txt", b"Strike notes about the cron schedule."),
                  ("..\\..\\windows\\evil .md", b"# Evil\n\nMarkdown notes."))
    # httpx sends the BEL as "%07"; the escape and the folders are gone either way.
    assert "Added x-07-31m.txt." in page and "Added evil.md." in page, re.findall(r'class="flash[^>]*>([^<]*)', page)
    assert (settings.documents_dir / "x-07-31m.txt").is_file() and (settings.documents_dir / "evil.md").is_file()
    assert not (settings.data_dir.parent / "etc").exists()
    wait_reindexed(c)


def _raw_post(server, c: httpx.Client, head: dict[str, str], body_pieces=()) -> bytes:
    """A POST by hand on a socket: headers first, then the body pieces until the server stops reading."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    lines = ["POST /admin/documents/upload HTTP/1.1", f"Host: {host}:{port}", f"Cookie: {cookie}",
             *(f"{k}: {v}" for k, v in head.items())]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            for piece in body_pieces:
                sock.sendall(piece)
        except OSError:
            pass  # the server stopped reading and closed: refused
        reply = b""
        try:
            while piece := sock.recv(65536):  # the 413 says "connection: close": read to the end
                reply += piece
        except OSError:
            pass
        return reply


def test_oversize_uploads_are_refused_early_and_leave_nothing(server, settings):
    c = signed_in(server)
    boundary = "b"
    # A 1 GB upload announced by Content-Length: refused from its headers, before any of it is read.
    reply = _raw_post(server, c, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                  "Content-Length": str(2**30)})
    assert reply.startswith(b"HTTP/1.1 413") and b"limit is 2 MB" in reply
    # No Content-Length (chunked): cut off once past the limit while it streams.
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n\r\n").encode()
    pieces = [part] + [b"a" * 65536] * 64

    def chunked():
        for p in pieces:
            yield f"{len(p):x}\r\n".encode() + p + b"\r\n"

    reply = _raw_post(server, c, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                  "Transfer-Encoding": "chunked"}, chunked())
    assert reply == b"" or reply.startswith(b"HTTP/1.1 413")  # a 413, or a reset when it came mid-send
    assert not list(settings.documents_dir.glob("big*")) and not list((settings.data_dir / "incoming").iterdir())
    assert c.get("/admin/documents").status_code == 200  # the server is fine


def test_xss_in_titles_and_file_names_is_shown_as_text(server, settings):
    c = signed_in(server)
    evil = '<script>alert("t")</script><img src=x onerror=alert(1)>'
    r = c.post("/admin/documents/post", data={"token": fresh_token(c), "title": evil, "date": "2026-09-02",
                                              "text": "An update whose title is an attack."})
    assert r.status_code == 303
    upload(c, ('<img src=x onerror=alert(2)>.html',
                      b"<html><body><h1>Page</h1><script>alert(3)</script><p>Picket lines hold firm.</p></body></html>"))
    wait_reindexed(c)
    page = c.get("/admin/documents").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;" in page
    # The HTML file is indexed as text and never served as HTML from our origin.
    name = re.search(r"<small>([^<]*img-src-x-onerror[^<]*\.html)</small>", page).group(1)
    assert c.get(f"/files/{name}").status_code == 404
    source = c.get(f"/source/{name}")
    assert source.status_code == 200 and "<script>" not in source.text and "Picket lines hold firm." in source.text


# the flow: upload, post, edit, remove, restore, with the chat answering from each build
def test_upload_post_edit_remove_restore_reach_the_chat(server, settings, tmp_path):
    c = signed_in(server)
    pdf = text_pdf(tmp_path / "rally.pdf", ["Oakridge Rally Notice\n\nThe picket rally at the Oakridge hall starts "
                                            "on Thursday at 6 pm.\nBring signs, water and a friend.\n"
                                            "Parking is on Main Street."])
    scan = imageonly_pdf(tmp_path / "scan.pdf")
    page = upload(c, ("Rally Notice.pdf", pdf.read_bytes()), ("scan.pdf", scan.read_bytes()))
    assert "Added Rally-Notice.pdf." in page and "waiting for the re-index" in page
    r = c.post("/admin/documents/post", data={
        "token": fresh_token(c), "title": "Bargaining update: tentative agreement", "date": "2026-09-10",
        "text": "The bargaining team reached a tentative agreement on Sept 9. The ratification vote opens on Monday."})
    assert r.status_code == 303
    wait_reindexed(c)
    page = c.get("/admin/documents").text
    assert "Oakridge Rally Notice" in page and "Bargaining update: tentative agreement" in page
    # The scanned PDF's warning: "no text layer" without OCR, "without a text layer is blank" with it.
    assert re.search(r"not indexed: [^<]*text layer", page), page
    answer = ask(c, SAVE_DATE)
    assert "Thursday at 6 pm" in answer["answer"] and answer["citations"][0]["doc_id"].endswith("Rally-Notice.pdf")
    update = ask(c, "When does the ratification vote open?")
    assert "Monday" in update["answer"] and update["citations"][0]["date"] == "2026-09-10"

    doc_id = answer["citations"][0]["doc_id"]
    r = c.post("/admin/documents/edit", data={"token": fresh_token(c), "doc_id": doc_id,
                                              "title": "Rally at the Oakridge hall", "date": "2026-09-08"})
    assert r.status_code == 303
    wait_reindexed(c)
    edited = ask(c, SAVE_DATE)["citations"][0]
    assert edited["title"] == "Rally at the Oakridge hall" and edited["date"] == "2026-09-08"
    # The title search is the public page's: every word, in any order.
    assert "Sep 8, 2026" in c.get("/admin/documents", params={"q": "hall OAKRIDGE"}).text
    assert "Sep 8, 2026" not in c.get("/admin/documents", params={"q": "oakridge picnic"}).text

    r = c.post("/admin/documents/remove", data={"token": fresh_token(c), "doc_id": doc_id})
    assert r.status_code == 303
    wait_reindexed(c)
    gone = ask(c, SAVE_DATE)
    assert all(cit["doc_id"] != doc_id for cit in gone["citations"] + gone["related"])
    page = c.get("/admin/documents").text
    assert "Removed (trash)" in page and "Rally at the Oakridge hall" in page  # listed in the trash
    key = re.search(r'name="key" value="([^"]+)"', page).group(1)
    assert c.post("/admin/documents/restore", data={"token": fresh_token(c), "key": key}).status_code == 303
    wait_reindexed(c)
    assert ask(c, SAVE_DATE)["citations"][0]["doc_id"] == doc_id
    # `rag ingest` from the shell sees the same documents (corpus + console folder) and changes nothing.
    shell = cli(settings, "ingest")
    assert shell.returncode == 0 and shell.stdout.startswith("0 added,") and " 0 removed," in shell.stdout, shell.stdout


def test_an_upload_while_a_reindex_runs_is_indexed_after_it(server, settings):
    c = signed_in(server)
    # (A text file's first line is its title, and a title alone never answers.)
    upload(c, ("first.txt", b"Strike fund\n\nThe strike fund pays 300 dollars a week to members on the line."))
    page = upload(c, ("second.txt", b"Food bank\n\nThe food bank at the union hall opens at 9 am every weekday."))
    assert "Added second.txt." in page
    wait_reindexed(c)
    assert "9 am" in ask(c, "When does the food bank at the union hall open?")["answer"]
    assert "300 dollars" in ask(c, "How much does the strike fund pay a week?")["answer"]


# what members ask
def test_unanswered_questions_are_grouped_with_counts_and_marked_handled(server):
    c = signed_in(server)
    for q in ("Is there a dental plan for retirees?", "is there a DENTAL plan for retirees", "Is there a dental plan for retirees??"):
        assert ask(c, q)["kind"] == "not_found"
    ask(c, "I want to end my life, nothing matters anymore")  # the crisis screen: never stored
    page = c.get("/admin/questions").text
    rows = re.findall(r'<td class="count">(\d+)</td><td>[^<]*</td><td class="q">([^<]*)</td>', page)
    dental = [(n, q) for n, q in rows if "dental plan" in q.lower()]
    assert dental == [("3", "Is there a dental plan for retirees??")]
    assert "end my life" not in page
    csv_text = c.get("/admin/questions.csv").text
    assert "Is there a dental plan for retirees??,3," in csv_text and "end my life" not in csv_text
    key = re.search(r'name="key" value="(u:is there a dental plan for retirees)"', page).group(1)
    page = c.get("/admin/questions").text
    assert c.post("/admin/questions/handled", data={"token": token(page), "key": key}).status_code == 303
    assert "dental plan" not in c.get("/admin/questions").text
    assert "dental plan" in c.get("/admin/questions", params={"show": "all"}).text


def test_csv_cells_never_start_a_formula(server):
    c = signed_in(server)
    ask(c, "=HYPERLINK(\"http://evil.example\",\"click\") about strike dental plans for pets?")
    assert "'=HYPERLINK" in c.get("/admin/questions.csv").text


def test_audit_log_says_who_did_what(server):
    c = signed_in(server)
    page = c.get("/admin/audit").text
    for action in ("sign in", "upload", "upload refused", "post", "edit", "remove", "restore", "re-index",
                   "mark handled", "sign out"):
        assert f"<td>{action}</td>" in page, action
    assert "<td>alice</td>" in page and "<td>bob</td>" in page
