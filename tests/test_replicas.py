"""Replicas: two `rag serve` processes that share nothing but the index folder and a PostgreSQL
database (as two machines would), and two ingests publishing into one folder at once."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.errors import PublishConflictError
from rag.ingest import index as index_store
from tests.conftest import CORPUS, ROOT
from tests.postgres import _free_port

QUESTION = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
LIMIT = 6  # asks per client per minute, across both replicas


def test_two_ingests_publishing_at_once_one_wins_and_the_other_says_so(corpus_settings, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(corpus_settings.index_dir, folder)
    base = index_store.current_version(folder)
    index = index_store.load(folder)
    start = threading.Barrier(2)
    results: list = [None, None]

    def publish(slot: int) -> None:  # as two machines would, each holding only its own lock
        start.wait()
        try:
            results[slot] = index_store.save(index, folder, base=base)
        except PublishConflictError as exc:
            results[slot] = exc

    threads = [threading.Thread(target=publish, args=(slot,)) for slot in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    (winner,) = [r for r in results if isinstance(r, str)]
    (loser,) = [r for r in results if isinstance(r, PublishConflictError)]
    assert index_store.current_version(folder) == winner
    assert f"another ingest published build {winner}" in str(loser) and f"both started from {base}" in str(loser)
    assert "Run `rag ingest` again" in str(loser)
    assert sorted(p.name for p in folder.glob("build-*")) == sorted([base, winner])  # the loser left nothing
    assert not list(folder.glob(".tmp-*"))
    assert index_store.load(folder).version == winner
    with pytest.raises(PublishConflictError):  # a late one, from the old base, is refused too
        index_store.save(index, folder, base=base)
    assert index_store.save(index, folder, base=winner) != winner  # on top of the winner: published


def test_a_claim_names_its_build_from_the_start_and_a_dead_ingests_claim_expires(corpus_settings, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(corpus_settings.index_dir, folder)
    base = index_store.current_version(folder)
    index = index_store.load(folder)
    marker = folder / f".next-{base}"
    os.link(_ticket(folder, "build-of-a-live-ingest"), marker)  # claimed, not yet switched
    with pytest.raises(PublishConflictError, match="another ingest published build build-of-a-live-ingest"):
        index_store.save(index, folder, base=base)
    assert index_store.current_version(folder) == base and not list(folder.glob(".claim-*"))
    old = time.time() - index_store.STALE_CLAIM_S - 5  # that ingest died before switching
    os.utime(marker, (old, old))
    published = index_store.save(index, folder, base=base)
    assert index_store.current_version(folder) == published != base


def _ticket(folder: Path, name: str) -> Path:
    ticket = folder / "ticket"
    ticket.write_text(name + "\n")
    return ticket


class Replica:
    """`rag serve` in its own process: its own data folder, the shared index and database."""

    def __init__(self, index_dir: Path, data_dir: Path, database_url: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_INDEX_DIR": str(index_dir),
                    "RAG_DATA_DIR": str(data_dir), "RAG_DATABASE_URL": database_url,
                    "RAG_RATE_LIMIT_PER_MINUTE": str(LIMIT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(self.port)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"replica at {self.url} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def feedback_report(self) -> dict:
        done = subprocess.run([sys.executable, "-m", "rag.cli", "feedback", "--json"], env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def replicas(corpus_settings, postgres, tmp_path):
    index_dir = tmp_path / "shared-index"
    shutil.copytree(corpus_settings.index_dir, index_dir)
    url = postgres.create_database()
    pair = [Replica(index_dir, tmp_path / name, url) for name in ("a", "b")]
    try:
        for replica in pair:
            replica.wait()
        yield pair, index_dir
    finally:
        for replica in pair:
            replica.stop()
        postgres.drop_database(url)


def test_two_replicas_share_votes_the_rate_limit_and_every_new_build(replicas, embedder, tmp_path):
    from rag.ingest.run import ingest

    (a, b), index_dir = replicas
    with httpx.Client(timeout=60) as http:
        # A vote on one is taken by the other (the answer ids are signed with the shared key) and listed
        # by `rag feedback` run with either's settings.
        answer = http.post(a.url + "/api/ask", json={"question": QUESTION}).json()
        vote = http.post(b.url + "/api/feedback", json={"liked": False, "question": answer["question"],
                                                        "answer": answer["answer"], "answer_id": answer["answer_id"],
                                                        "citations": answer["citations"]})
        assert vote.status_code == 200, vote.text
        for replica in (a, b):
            report = replica.feedback_report()
            assert report["counts"]["dislikes"] == 1 and report["dislikes"][0]["question"] == QUESTION

        # The rate limit holds across both: LIMIT asks in all, wherever they land.
        statuses = [http.post(r.url + "/api/ask", json={"question": "Who is Molly Parsons?"}).status_code
                    for r in (a, b) * LIMIT]
        assert statuses.count(200) == LIMIT - 1 and set(statuses[LIMIT - 1:]) == {429}

        # A new build published by an ingest is served by both, and no request fails during the swap.
        before = [http.get(r.url + "/healthz").json() for r in (a, b)]
        corpus = tmp_path / "corpus"
        shutil.copytree(CORPUS, corpus)
        (corpus / "picnic.txt").write_text("Strike picnic\n\nThe strike picnic is at Riverside Park on "
                                           "Saturday at noon.\n", encoding="utf-8")
        failures: list = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                for r in (a, b):
                    try:
                        status = http.get(r.url + "/healthz").status_code
                    except httpx.TransportError as exc:
                        status = repr(exc)
                    if status != 200:
                        failures.append(status)

        watcher = threading.Thread(target=hammer)
        watcher.start()
        try:
            ingest([corpus], Settings(index_dir=index_dir, data_dir=tmp_path / "ingest"),
                   embedder_factory=lambda: embedder, progress=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                after = [http.get(r.url + "/healthz").json() for r in (a, b)]
                if all(n["documents"] == o["documents"] + 1 for n, o in zip(after, before)):
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            watcher.join()
        assert [n["documents"] for n in after] == [o["documents"] + 1 for o in before]
        assert failures == []
        for r in (a, b):
            page = http.get(r.url + "/source/picnic.txt")
            assert page.status_code == 200 and "Riverside Park" in page.text
