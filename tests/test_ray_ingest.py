"""`rag ingest --ray`: the same chunks and vectors as the single process, on a local Ray of 2 CPUs;
a worker lost mid-ingest is retried, one that keeps dying fails the ingest and leaves the index alone."""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.ingest import index as index_store
from rag.ingest.run import ingest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[scale]' (make test installs it)")

from rag.errors import RayIngestError  # noqa: E402
from rag.ingest import loaders  # noqa: E402
from rag.ingest.ray_ingest import EmbedWorker, RayOptions, ingest_on_ray, map_on_ray  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
KILL_MARK = "KILL-THIS-WORKER"

WORDS = ("strike pay picket line union member contract wage hour overtime sick leave ballot vote local bargaining "
         "employer grievance shift nurse therapist clinic hospital week day benefit health pension seniority "
         "steward notice arbitration article section agreement holiday vacation").split()


def generate_corpus(folder: Path, n: int, seed: int = 7) -> Path:
    """n small documents of varied shape in folder: plain bulletins and Markdown notices with sections,
    one to a dozen sentences each, some with numbers, spread over subfolders."""
    rng = random.Random(seed)

    def sentence() -> str:
        words = " ".join(rng.choices(WORDS, k=rng.randint(3, 16))).capitalize() + rng.choice(".?!")
        return words + (f" It lasts {rng.randint(1, 999)} days." if rng.random() < 0.3 else "")

    for k in range(n):
        sub = folder / f"local-{k % 17:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        paras = [" ".join(sentence() for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        if k % 3 == 0:
            text = f"# Notice {k}\n\n" + "\n\n".join(f"## Section {i + 1}\n\n{p}" for i, p in enumerate(paras))
            (sub / f"doc-{k:05d}.md").write_text(text, encoding="utf-8")
        else:
            (sub / f"doc-{k:05d}.txt").write_text(f"Bulletin {k}\n\n" + "\n\n".join(paras), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module (each start takes seconds); ingest_on_ray joins it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Workers unpickle the test's own worker classes by value: this module is not on their path.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def settings_in(folder: Path) -> Settings:
    return Settings(corpus_dir=CORPUS, index_dir=folder / "index", data_dir=folder / "data")


def assert_same_index(a: index_store.Index, b: index_store.Index) -> None:
    assert [c.chunk_id for c in a.chunks] == [c.chunk_id for c in b.chunks]
    assert [(c.text, c.start, c.end, c.section) for c in a.chunks] == [(c.text, c.start, c.end, c.section) for c in b.chunks]
    for name in ("spans", "offsets", "ids"):
        assert np.array_equal(getattr(a.sentences, name), getattr(b.sentences, name)), name
    # Batches differ (a worker embeds its own documents together): float16 vectors agree to rounding.
    assert np.allclose(np.asarray(a.chunk_vectors, np.float32), np.asarray(b.chunk_vectors, np.float32), atol=1e-3)
    assert np.allclose(np.asarray(a.sentences.vectors, np.float32), np.asarray(b.sentences.vectors, np.float32),
                       atol=1e-3)
    assert a.manifest.documents == b.manifest.documents
    assert (a.manifest.embedder, a.manifest.dim, a.manifest.precision) == (b.manifest.embedder, b.manifest.dim,
                                                                           b.manifest.precision)


def both_ways(corpus: Path, tmp_path: Path, embedder, options: RayOptions = RayOptions()):
    local, on_ray = settings_in(tmp_path / "local"), settings_in(tmp_path / "ray")
    ingest([corpus], local, embedder_factory=lambda: embedder, progress=False)
    report = ingest_on_ray([corpus], on_ray, options, progress=False)
    return index_store.load(local.index_dir), index_store.load(on_ray.index_dir), report


def test_shipped_corpus_gets_the_same_chunks_and_vectors_on_ray(local_ray, tmp_path, embedder):
    local, on_ray, report = both_ways(CORPUS, tmp_path, embedder)
    assert report.embedded == len(on_ray.chunks) > 0
    assert_same_index(local, on_ray)


def site_pages(folder: Path, n: int = 6) -> Path:
    """A union site's pages (a header line shared by all of them: site chrome after the first), one
    with a sidecar date, one retitled by the titles file, an empty file and a link out of the folder."""
    folder.mkdir(parents=True)
    for k in range(n):
        (folder / f"update-{k}.html").write_text(
            f"<html><head><title>Bargaining update {k} - Local 99</title></head><body>"
            "<div>Local 99 | Members first since 1937</div>"
            f"<main><h1>Update {k}</h1><p>Session {k} ended without a deal. Strike pay is ${100 + k} a day.</p>"
            "</main></body></html>", encoding="utf-8")
    (folder / ".dates.json").write_text('{"update-1.html": "2026-03-01"}', encoding="utf-8")
    (folder / ".titles.json").write_text('{"update-2.html": "Second session"}', encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "passwd.txt").symlink_to("/etc/hostname")
    return folder


class DriverMustNotRead(Exception):
    pass


def test_files_are_read_on_the_workers_the_same_as_in_one_process(local_ray, tmp_path, embedder, monkeypatch):
    corpus = site_pages(tmp_path / "site")
    local = settings_in(tmp_path / "local")
    local_report = ingest([corpus], local, embedder_factory=lambda: embedder, progress=False)

    def refuse(*args, **kwargs):
        raise DriverMustNotRead("the driver read a file")

    # The workers import their own loaders: only this process is stopped from reading or parsing.
    monkeypatch.setattr(loaders, "load_file", refuse)
    monkeypatch.setattr(loaders, "_html_text", refuse)
    on_ray = settings_in(tmp_path / "ray")
    report = ingest_on_ray([corpus], on_ray, RayOptions(workers=2, read_batch=2), progress=False)
    a, b = index_store.load(local.index_dir), index_store.load(on_ray.index_dir)
    assert a.documents == b.documents  # text without the chrome, titles, dates and their sources
    assert b.documents["update-1.html"].date == "2026-03-01"
    assert b.documents["update-2.html"].title == "Second session"
    assert "Members first" in b.documents["update-0.html"].text
    assert "Members first" not in b.documents["update-3.html"].text
    assert report.skipped == local_report.skipped and {s.path for s in report.skipped} == {"empty.txt", "passwd.txt"}
    assert_same_index(a, b)


def test_thousands_of_generated_documents_get_the_same_chunks_and_vectors_on_ray(local_ray, tmp_path, embedder):
    corpus = generate_corpus(tmp_path / "generated", 2000)
    local, on_ray, report = both_ways(corpus, tmp_path, embedder, RayOptions(workers=2, batch_size=64))
    assert len(report.added) == 2000
    assert_same_index(local, on_ray)
    assert (report.embedded, report.sentences_embedded) == (len(local.chunks), len(local.sentences.spans))


class DiesOnce(EmbedWorker):
    """Kills its own process on the marked document, the first time only (a marker file says so)."""

    def __call__(self, batch):
        marker = self.settings.data_dir / "killed-once"
        if any(KILL_MARK in doc.text for doc in batch["doc"]) and not marker.exists():
            marker.write_text("killed")
            os._exit(1)
        return super().__call__(batch)


class AlwaysDies(EmbedWorker):
    def __call__(self, batch):
        if any(KILL_MARK in doc.text for doc in batch["doc"]):
            os._exit(1)
        return super().__call__(batch)


def corpus_with_a_marked_document(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    generate_corpus(corpus / "generated", 40)
    (corpus / "marked.txt").write_text(f"Picket schedule.\n\nThis notice carries {KILL_MARK}.\n", encoding="utf-8")
    return corpus


def test_a_worker_killed_mid_ingest_is_replaced_and_its_batch_retried(local_ray, tmp_path, embedder):
    corpus = corpus_with_a_marked_document(tmp_path)
    settings = settings_in(tmp_path)
    settings.data_dir.mkdir(parents=True)
    report = ingest_on_ray([corpus], settings, RayOptions(workers=2, batch_size=8), worker=DiesOnce)
    assert (settings.data_dir / "killed-once").exists()  # it did die
    index = index_store.load(settings.index_dir)
    assert "marked.txt" in index.documents and len(report.added) == len(index.documents) == 43
    local = settings_in(tmp_path / "local")
    ingest([corpus], local, embedder_factory=lambda: embedder, progress=False)
    assert_same_index(index_store.load(local.index_dir), index)


def test_workers_that_keep_dying_fail_the_ingest_and_leave_the_served_index(local_ray, tmp_path, embedder):
    settings = settings_in(tmp_path)
    ingest([CORPUS], settings, embedder_factory=lambda: embedder, progress=False)
    served = index_store.current_version(settings.index_dir)
    corpus = corpus_with_a_marked_document(tmp_path)
    with pytest.raises(RayIngestError, match=r"^the Ray ingest failed \(.*\); the index was left as it was$"):
        ingest_on_ray([corpus], settings, RayOptions(workers=2, batch_size=8, retries=1), worker=AlwaysDies)
    assert index_store.current_version(settings.index_dir) == served
    index = index_store.load(settings.index_dir)
    assert sorted(index.documents) == sorted(p.name for p in CORPUS.iterdir() if p.is_file())


def dies_the_first_time(marker: Path) -> int:
    if not marker.exists():
        marker.write_text("killed")
        os._exit(1)
    return os.getpid()


def always_dies(_: Path) -> int:
    os._exit(1)


def test_a_read_task_whose_worker_died_runs_again_elsewhere(local_ray, tmp_path):
    markers = [tmp_path / f"marker-{k}" for k in range(6)]
    pids = map_on_ray(ray, dies_the_first_time, markers, 2, RayOptions(read_batch=1))
    assert all(m.exists() for m in markers) and len(pids) == 6
    assert os.getpid() not in pids  # read on the workers, not here


def test_read_tasks_that_keep_dying_fail_with_one_clear_error(local_ray, tmp_path):
    with pytest.raises(RayIngestError, match=r"^the Ray ingest failed \(.*\); the index was left as it was$"):
        map_on_ray(ray, always_dies, [tmp_path], 2, RayOptions(read_batch=1, retries=1))


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(CORPUS), "--index", str(tmp_path / "index"),
                           *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", r"^error: no Ray cluster at 127\.0\.0\.1:1: .*refused"),
    ("ray://127.0.0.1:1", r"^error: no Ray cluster at ray://127\.0\.0\.1:1: "),
    ("headnode", r"^error: Ray address 'headnode' is not HOST:PORT"),
])
def test_a_bad_address_is_one_clear_line_and_no_index(tmp_path, address, says):
    done = run_cli("--ray", address, tmp_path=tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert re.search(says, done.stderr), done.stderr
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_ray_flags_without_ray_are_refused(tmp_path):
    done = run_cli("--ray-workers", "2", tmp_path=tmp_path)
    assert done.returncode == 2 and "--ray-cpus and --ray-workers go with --ray" in done.stderr


def test_ray_not_installed_says_how_to_install_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(tmp_path / "data")}
    hide_ray = ("import sys; sys.modules['ray'] = None; from rag.cli import main; "
                f"sys.exit(main(['ingest', {str(CORPUS)!r}, '--index', {str(tmp_path / 'index')!r}, '--ray']))")
    done = subprocess.run([sys.executable, "-c", hide_ray], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: --ray needs Ray, an optional extra: pip install -e '.[scale]'"
