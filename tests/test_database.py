"""The database behind the server (rag/serve/store.py) when it fails: unreachable at start, gone
while serving, a write that fails half way; and the settings that choose it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from rag.config import Settings
from rag.errors import DatabaseUnavailableError
from rag.serve.admin.accounts import open_staff
from rag.serve.admin.routes import DATABASE_DOWN
from rag.serve.feedback import open_store
from tests.conftest import ROOT
from tests.postgres import _free_port, running_server

PASSWORD = "correct horse battery"
QUESTION = "How many therapy appointments did Kaiser cancel during the 2022 strike?"


def serve(settings: Settings, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_INDEX_DIR": str(settings.index_dir),
               "RAG_DATA_DIR": str(settings.data_dir), **env}
    return subprocess.run([sys.executable, "-m", "rag.cli", "serve", "--port", str(_free_port())],
                          capture_output=True, text=True, env=environ, timeout=120)


def test_serve_stops_with_exit_2_naming_the_setting_when_the_database_is_down(corpus_settings, tmp_path):
    nobody = f"postgresql://rag:secret@127.0.0.1:{_free_port()}/strike"  # nothing listens there
    done = serve(replace(corpus_settings, data_dir=tmp_path), RAG_DATABASE_URL=nobody)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: the database is unavailable (RAG_DATABASE_URL: postgresql+psycopg://rag:***@")
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_a_database_url_that_is_not_postgresql_is_refused(corpus_settings, tmp_path):
    done = serve(replace(corpus_settings, data_dir=tmp_path), RAG_DATABASE_URL="mysql://root:pw@db/strike")
    assert done.returncode == 2
    assert "RAG_DATABASE_URL must be empty (SQLite in the data folder) or a PostgreSQL URL" in done.stderr
    assert "pw@" not in done.stderr


def test_a_failed_write_leaves_nothing_half_written(tmp_path, database_url):
    store = open_store(Settings(data_dir=tmp_path, database_url=database_url))
    with pytest.raises(ZeroDivisionError):
        with store.db.begin() as conn:
            conn.execute(text("INSERT INTO unanswered (created_at, question) VALUES ('t', 'half')"))
            1 / 0  # anything failing before the end of the transaction
    assert store.counts()["unanswered"] == 0


@pytest.fixture
def own_postgres():
    """A server of this test's own, to stop and start again."""
    yield from running_server()


def test_database_down_while_serving_answers_go_on_votes_and_the_console_get_503(corpus_settings, pipeline, tmp_path,
                                                                    own_postgres):
    from rag.serve.server import create_app

    settings = replace(corpus_settings, data_dir=tmp_path, database_url=own_postgres.create_database(),
                       rate_limit_per_minute=5)
    client = TestClient(create_app(settings, pipeline), base_url="http://127.0.0.1")

    def vote(answer: dict, liked: bool = False):
        return client.post("/api/feedback", json={"liked": liked, "question": answer["question"],
                                                  "answer": answer["answer"], "answer_id": answer["answer_id"],
                                                  "citations": answer["citations"]})

    before = client.post("/api/ask", json={"question": QUESTION}).json()
    assert vote(before).status_code == 200
    open_staff(settings).add("alice", PASSWORD)
    staff = TestClient(create_app(settings, pipeline), base_url="http://127.0.0.1")
    form = re.search(r'name="token" value="([^"]+)"', staff.get("/admin/sign-in").text).group(1)
    signed_in = staff.post("/admin/sign-in", data={"name": "alice", "password": PASSWORD, "token": form},
                           follow_redirects=False)
    assert signed_in.status_code == 303
    newcomer = TestClient(create_app(settings, pipeline), base_url="http://127.0.0.1")  # not signed in

    own_postgres.stop()
    during = [client.post("/api/ask", json={"question": q})
              for q in (QUESTION, "What is the capital of France?") * 4]  # past the limit of 5: not applied
    assert [r.status_code for r in during] == [200] * 8
    assert "111,803" in during[0].json()["answer"] and during[1].json()["kind"] == "not_found"
    refused = vote(during[0].json())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
    assert refused.json() == {"error": "Your vote could not be saved just now (our database is unavailable); "
                                       "please try again in a few minutes."}
    with pytest.raises(DatabaseUnavailableError, match="RAG_DATABASE_URL"):
        open_store(settings).counts()
    # The staff console says so on a page of its own (the progress poll in JSON), not a bare 500.
    form = re.search(r'name="token" value="([^"]+)"', newcomer.get("/admin/sign-in").text).group(1)
    attempt = newcomer.post("/admin/sign-in", data={"name": "alice", "password": PASSWORD, "token": form})
    for page in (staff.get("/admin/documents"), attempt):
        assert page.status_code == 503 and page.headers["retry-after"] == "60"
        assert "database is unavailable just now" in page.text and "RAG_DATABASE_URL names" in page.text
        assert "postgresql" not in page.text  # the setting's name, never its value
    poll = staff.get("/admin/status.json")
    assert poll.status_code == 503 and poll.json()["error"] == DATABASE_DOWN

    own_postgres.start()
    assert vote(during[0].json(), liked=True).status_code == 200  # the pool reconnects by itself
    assert staff.get("/admin/documents").status_code == 200  # the session outlived the outage
    store = open_store(settings)
    assert store.counts() == {"likes": 1, "dislikes": 1, "unanswered": 0}  # nothing from the outage
    assert client.post("/api/ask", json={"question": "What is the capital of France?"}).status_code == 200
    assert [u.question for u in store.unanswered()] == ["What is the capital of France?"]
