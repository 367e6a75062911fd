import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import index as index_store
from rag.config import Settings
from rag.embedding import load_embedder
from rag.ingest import ingest
from rag.retrieval import Retriever
from tests.pdfs import encrypted_pdf, imageonly_pdf, text_pdf, truncated_pdf

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


class CountingEmbedder:
    """The real model, counting what it is asked to embed."""

    def __init__(self):
        self.inner = load_embedder()
        self.name, self.dim, self.max_tokens = self.inner.name, self.inner.dim, self.inner.max_tokens
        self.embedded = 0

    def embed_batch(self, texts):
        self.embedded += len(texts)
        return self.inner.embed_batch(texts)

    def overflow(self, text):
        return self.inner.overflow(text)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS, folder)
    return folder


def settings_for(tmp_path) -> Settings:
    return Settings.from_env(environ={}, index_dir=tmp_path / "index", corpus_dir=tmp_path / "corpus")


def test_reingest_is_incremental(tmp_path, corpus):
    settings, model = settings_for(tmp_path), CountingEmbedder()
    first = ingest([corpus], settings, lambda: model)
    assert sorted(first.added) == sorted(p.name for p in CORPUS.iterdir()) and first.embedded == first.chunks > 0

    model.embedded = 0
    again = ingest([corpus], settings, lambda: model)
    assert model.embedded == 0 and again.embedded == 0
    assert len(again.unchanged) == 2 and again.chunks == first.chunks
    assert again.version == first.version  # nothing rewritten, nothing swapped

    (corpus / "kaiser-clinicians-strike-2022.txt").write_text("Kaiser settled. The strike is over.")
    (corpus / "another-kaiser-strike-vote.txt").unlink()
    (corpus / "new.md").write_text("# Picket schedule\nPickets run from 7 to 11 every weekday.")
    third = ingest([corpus], settings, lambda: model)
    assert third.updated == ["kaiser-clinicians-strike-2022.txt"]
    assert third.removed == ["another-kaiser-strike-vote.txt"] and third.added == ["new.md"]
    loaded = index_store.load(settings.index_dir)
    assert set(loaded.documents) == {"kaiser-clinicians-strike-2022.txt", "new.md"}
    assert all(c.doc_id in loaded.documents for c in loaded.chunks)
    assert model.embedded == third.embedded == loaded.manifest.chunks


def test_manifest_records_what_was_built(tmp_path, corpus):
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    m = index_store.load(settings.index_dir).manifest
    assert m.format == index_store.FORMAT and m.dim == 384
    assert m.embedder == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"faiss-cpu", "sentence-transformers", "bm25s"} <= set(m.versions)
    assert set(m.documents) == {p.name for p in CORPUS.iterdir()} and all(len(h) == 64 for h in m.documents.values())


def test_save_then_load_returns_identical_hits(tmp_path, corpus):
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    first = index_store.load(settings.index_dir)
    second = index_store.load(settings.index_dir)
    for q in ["fine against Kaiser", "strike date", "artificial intelligence triage"]:
        a = Retriever(first, load_embedder()).search(q, 5)
        b = Retriever(second, load_embedder()).search(q, 5)
        assert [(h.chunk, round(h.score, 6)) for h in a] == [(h.chunk, round(h.score, 6)) for h in b]


def test_bad_files_are_skipped_and_the_rest_indexed(tmp_path, corpus):
    encrypted_pdf(corpus / "locked.pdf")
    imageonly_pdf(corpus / "scan.pdf")
    truncated_pdf(corpus / "cut.pdf")
    text_pdf(corpus / "faq.pdf", ["Strike FAQ", "Strike pay is $20 a day."])
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (corpus / "empty.md").write_text("")
    (corpus / "latin.txt").write_bytes("Se\u00f1ora Garc\u00eda is a clinician.".encode("cp1252"))
    report = ingest([corpus], settings_for(tmp_path))
    skipped = {s.path: s.reason for s in report.skipped}
    assert set(skipped) == {"locked.pdf", "scan.pdf", "cut.pdf", "blob.txt", "empty.md"}
    assert set(report.added) == {"another-kaiser-strike-vote.txt", "kaiser-clinicians-strike-2022.txt", "faq.pdf", "latin.txt"}
    assert report.notes == [("latin.txt", "not valid UTF-8; decoded as Windows-1252")]
    loaded = index_store.load(tmp_path / "index")
    faq = loaded.documents["faq.pdf"]
    assert any("$20" in c.text for c in loaded.chunks) and faq.page_at(faq.text.index("$20")) == 2


def test_cli_ingest_reports_summary_and_warnings(tmp_path, corpus):
    encrypted_pdf(corpus / "locked.pdf")
    out = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(corpus), "--index", str(tmp_path / "ix")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "2 added" in out.stdout and "1 skipped" in out.stdout
    assert "warning: skipped locked.pdf: encrypted PDF" in out.stderr
    assert "Traceback" not in out.stderr


def _big_corpus(folder: Path, n: int = 16) -> None:
    sentences = [s for p in CORPUS.iterdir() for s in p.read_text().split(". ") if len(s) > 20]
    rng = random.Random(1)
    folder.mkdir()
    for i in range(n):
        rng.shuffle(sentences)
        (folder / f"doc{i:03}.txt").write_text(f"Doc {i}\n" + ". ".join(sentences[:25]))


def _kill_when(proc, ready, timeout=300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_ingest_leaves_previous_index_loadable(tmp_path, corpus):
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    big = tmp_path / "big"
    _big_corpus(big)
    env = {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir)}
    folder = settings.index_dir
    started_at = {"t": 0.0}
    moments = {  # while loading the model, while writing the new build, right after it is renamed
        "loading": lambda: time.monotonic() - started_at["t"] > 2.0,
        "writing": lambda: any(folder.glob(".tmp-build-*")),
        "renamed": lambda: len(list(folder.glob("build-*"))) > len(builds_before),
    }
    for name, ready in moments.items():
        before = index_store.load(folder)
        builds_before = list(folder.glob("build-*"))
        started_at["t"] = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(big)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_when(proc, ready)
        if name != "renamed":  # that window is short; the other two moments must really be hit
            assert proc.returncode == -signal.SIGKILL, f"ingest finished before the {name} moment"
        after = index_store.load(folder)  # always loadable: the old build or the complete new one
        assert set(after.documents) in (set(before.documents), {f"doc{i:03}.txt" for i in range(16)}), name
        assert after.dense.ntotal == len(after.chunks)
        if after.version != before.version:
            ingest([corpus], settings)
    # The next ingest cleans up after the killed ones.
    ingest([corpus], settings)
    assert not list(folder.glob(".tmp-*"))


def test_missing_or_empty_corpus_leaves_the_index_alone(tmp_path, corpus):
    from rag.errors import CorpusError

    settings = settings_for(tmp_path)
    live = ingest([corpus], settings).version
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "scan.pdf").write_bytes(b"%PDF-1.4 broken")
    with pytest.raises(CorpusError, match="not found; the index was left as it was"):
        ingest([tmp_path / "typo"], settings)
    with pytest.raises(CorpusError, match=r"no readable documents .*scan.pdf: corrupt PDF"):
        ingest([tmp_path / "empty"], settings)
    assert index_store.current_version(settings.index_dir) == live
