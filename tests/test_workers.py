"""`rag serve --workers 2`: two processes map one index, and both pick up a new build."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rag.config import Settings
from rag.ingest.run import ingest

ROOT = Path(__file__).resolve().parent.parent
NEW_FACT = "Pickets run from 7 to 11 every weekday at the Oakland clinic."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(url: str, question: str) -> dict:
    r = httpx.post(f"{url}/api/ask", json={"question": question}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _serve_two_workers(tmp_path, embedder, rate_limit: int):
    """`rag serve --workers 2` on the shipped corpus; (process, url, settings), once it answers."""
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    port = _free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_RATE_LIMIT_PER_MINUTE": str(rate_limit),
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--workers", "2", "--port", str(port),
                             "--index", str(settings.index_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # two model loads on a possibly busy machine
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url, settings
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            raise AssertionError(proc.stdout.read().decode()[-2000:])
        time.sleep(0.5)


def _python_workers(proc) -> list[int]:
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    return [p for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


def test_the_rate_limit_holds_across_workers(tmp_path, embedder):
    """Six asks a minute means six, however many workers share the clients (not 6 per worker)."""
    proc, url, _ = _serve_two_workers(tmp_path, embedder, rate_limit=6)
    try:
        assert len(_python_workers(proc)) == 2
        codes = []
        for _ in range(14):  # a new connection each time: the kernel spreads them over both workers
            r = httpx.post(f"{url}/api/ask", json={"question": "Has a strike date been set?"}, timeout=60)
            codes.append(r.status_code)
        assert codes.count(200) == 6 and codes.count(429) == 8, codes
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_two_workers_share_the_index_and_hot_reload(tmp_path, embedder):
    proc, url, settings = _serve_two_workers(tmp_path, embedder, rate_limit=100000)
    corpus = settings.corpus_dir
    try:
        answer = _ask(url, "How many therapy appointments did Kaiser cancel during the 2022 strike?")
        assert "111,803" in answer["answer"]

        python_workers = _python_workers(proc)
        assert len(python_workers) == 2
        for _ in range(60):  # each worker loads the index on its first request; ask until both have
            maps = [Path(f"/proc/{p}/maps").read_text() for p in python_workers]
            if all("sentence_vectors.npy" in m for m in maps):
                break
            _ask(url, "Has a strike date been set?")
        assert all("sentence_vectors.npy" in m and "dense.faiss" in m for m in maps)  # memory-mapped, shared

        (corpus / "pickets.md").write_text(f"# Picket schedule\n{NEW_FACT}\n")
        ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
        # Each worker checks CURRENT at most once a second, then loads the build; on a busy machine
        # that can take a few seconds more (one clean-clone run got one old answer 1.5 s after).
        # Both workers must then answer from the new build, twelve times running.
        answers: list[str] = []
        deadline = time.monotonic() + 30
        while len(answers) < 12 or not all("7 to 11" in a for a in answers[-12:]):
            assert time.monotonic() < deadline, answers[-12:]
            answers.append(_ask(url, "When do pickets run at the Oakland clinic?")["answer"])
            time.sleep(0.1)
        assert all("7 to 11" in a for a in answers[-12:])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
