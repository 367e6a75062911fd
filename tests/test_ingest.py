import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rag.ingest import index as index_store
from rag.config import Settings
from rag.ingest.embedding import load_embedder
from rag.errors import IndexCorruptError
from rag.ingest.run import ingest
from rag.answer.retrieval import Retriever
from rag.answer.answering import HEURISTIC_MIN_SCORE
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


class PoolingCountingEmbedder(CountingEmbedder):
    """The real model with its token-state sums, so ingest pools chunk vectors from sentences."""

    pools_means = True

    def embed_batch_with_sums(self, texts):
        self.embedded += len(texts)
        return self.inner.embed_batch_with_sums(texts)


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
    assert third.embedded == loaded.manifest.chunks and third.sentences_embedded == loaded.manifest.sentences
    assert model.embedded == third.embedded + third.sentences_embedded  # chunks and sentences, nothing else


def test_a_reingest_reads_only_the_files_whose_reading_changed(tmp_path, corpus, monkeypatch, request):
    """Unchanged files come from the live build unread, with their read's warnings said again; a
    changed file, sidecar date or title is read again, and a new way of reading reads every file."""
    from rag.ingest import run

    text_pdf(corpus / "contract.pdf", ["Article 1 Wages\nThe wage rises 3% on July 1 of each year."])
    (corpus / "notice.txt").write_bytes("Caf\xe9 hall strike notice: pickets start Monday.".encode("cp1252"))
    settings, model = settings_for(tmp_path), CountingEmbedder()
    first = ingest([corpus], settings, lambda: model)
    warning = ("notice.txt", "not valid UTF-8; decoded as Windows-1252")
    assert warning in first.notes
    read = request.getfixturevalue("files_read")  # counted from here on
    again = ingest([corpus], settings, lambda: model)
    assert read == [] and again.version == first.version and len(again.unchanged) == 4
    assert warning in again.notes

    (corpus / "kaiser-clinicians-strike-2022.txt").write_text("Kaiser settled. The strike is over.")
    (corpus / ".dates.json").write_text('{"contract.pdf": "2026-07-01"}')
    (corpus / ".titles.json").write_text('{"notice.txt": "Cafe hall notice"}')
    (corpus / "new.md").write_text("# Picket schedule\nPickets run from 7 to 11 every weekday.")
    third = ingest([corpus], settings, lambda: model)
    assert sorted(read) == ["contract.pdf", "kaiser-clinicians-strike-2022.txt", "new.md", "notice.txt"]
    assert third.updated == ["kaiser-clinicians-strike-2022.txt"] and third.added == ["new.md"]
    built = index_store.load(settings.index_dir).documents
    assert built["contract.pdf"].date == "2026-07-01" and built["notice.txt"].title == "Cafe hall notice"
    assert built["kaiser-clinicians-strike-2022.txt"].text == "Kaiser settled. The strike is over."

    read.clear()
    monkeypatch.setattr(run, "TEXT_VERSION", run.TEXT_VERSION + 1)  # the loaders changed: read everything
    ingest([corpus], settings, lambda: model)
    assert sorted(read) == sorted(p.name for p in corpus.iterdir() if not p.name.startswith("."))


def test_sentences_are_stored_at_ingest_and_reused(tmp_path, corpus):
    """The answerer's sentences, their vectors and the idf table come from the index, built once."""
    import numpy as np

    from rag.answer.answering import Answerer
    from rag.ingest.sentences import chunk_sentence_spans
    from rag.types import Hit

    settings, model = settings_for(tmp_path), CountingEmbedder()
    ingest([corpus], settings, lambda: model)
    before = index_store.load(settings.index_dir)
    doc_id = "another-kaiser-strike-vote.txt"
    doc = before.documents[doc_id]
    for row in before.chunks_of(doc_id):  # each chunk's stored sentences are exactly its sentences
        chunk = before.chunks[row]
        assert [(a, b) for _, a, b in before.sentences_of(row)] == chunk_sentence_spans(doc.text, chunk.start, chunk.end)
    rows = [j for r in before.chunks_of(doc_id) for j, _, _ in before.sentences_of(r)]
    texts = [doc.text[a:b] for r in before.chunks_of(doc_id) for _, a, b in before.sentences_of(r)]
    stored = np.asarray(before.sentence_vectors[rows], np.float32)
    assert np.allclose(stored, model.inner.embed_batch(texts), atol=2e-3)  # float16 copies of the model's vectors
    assert before.idf.terms and before.idf.unseen == max(before.idf.terms.values())

    model.embedded = 0  # answering embeds the question only, never a sentence
    answerer = Answerer(model, min_score=HEURISTIC_MIN_SCORE)
    hits = [Hit(before.chunks[r], 1.0) for r in before.chunks_of(doc_id)]
    ranked = answerer.rank("When is the strike vote?", hits, before, model.inner.embed_batch(["strike vote"])[0])
    assert ranked and model.embedded == 0

    (corpus / "kaiser-clinicians-strike-2022.txt").write_text("Kaiser settled. The strike is over for now.")
    model.embedded = 0
    third = ingest([corpus], settings, lambda: model)
    after = index_store.load(settings.index_dir)
    assert third.sentences_embedded == 2 and model.embedded == third.embedded + 2  # the changed doc only
    rows_after = [j for r in after.chunks_of(doc_id) for j, _, _ in after.sentences_of(r)]
    texts_after = [doc.text[a:b] for r in after.chunks_of(doc_id) for _, a, b in after.sentences_of(r)]
    assert texts_after == texts and np.array_equal(after.sentence_vectors[rows_after], before.sentence_vectors[rows])


def test_an_older_index_format_says_to_reingest(tmp_path, corpus):
    import json

    from rag.errors import IndexFormatError

    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    folder = settings.index_dir / index_store.current_version(settings.index_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format": "strike-qa-index v1"}))
    with pytest.raises(IndexFormatError, match="older strike-qa.*rag ingest"):
        index_store.load(settings.index_dir)
    report = ingest([corpus], settings)  # re-ingest rebuilds it in the current format
    assert report.embedded == report.chunks and index_store.load(settings.index_dir).manifest.format == index_store.FORMAT


def test_manifest_records_what_was_built(tmp_path, corpus):
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    m = index_store.load(settings.index_dir).manifest
    assert m.format == index_store.FORMAT and m.dim == 384
    assert m.embedder == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"faiss-cpu", "sentence-transformers", "bm25s"} <= set(m.versions)
    assert set(m.documents) == {p.name for p in CORPUS.iterdir()} and all(len(h) == 64 for h in m.documents.values())


def test_save_then_load_returns_identical_hits(tmp_path, corpus, monkeypatch):
    """The index ingest built in memory and the one loaded back from disk answer alike."""
    built = []
    save = index_store.save
    monkeypatch.setattr(index_store, "save", lambda index, folder, **kw: built.append(index) or save(index, folder, **kw))
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    loaded = index_store.load(settings.index_dir)
    (original,) = built
    assert loaded.chunks == original.chunks and loaded.documents == original.documents
    assert loaded.manifest == original.manifest
    for q in ["fine against Kaiser", "strike date", "artificial intelligence triage"]:
        a = Retriever.configured(original, load_embedder(), Settings()).search(q, 5)
        b = Retriever.configured(loaded, load_embedder(), Settings()).search(q, 5)
        assert a and [(h.chunk, round(h.score, 6)) for h in a] == [(h.chunk, round(h.score, 6)) for h in b]


def test_changed_chunk_settings_re_embed_everything(tmp_path, corpus):
    settings, model = settings_for(tmp_path), CountingEmbedder()
    first = ingest([corpus], settings, lambda: model)
    smaller = replace(settings, chunk_tokens=80, chunk_overlap_tokens=20)
    model.embedded = 0
    second = ingest([corpus], smaller, lambda: model)
    assert second.chunks > first.chunks and second.embedded == second.chunks
    assert model.embedded == second.embedded + second.sentences_embedded  # every chunk and sentence afresh
    assert index_store.load(settings.index_dir).manifest.chunking["chunk_tokens"] == 80


def test_an_index_in_an_older_format_is_refused_then_rebuilt(tmp_path, corpus):
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    build = settings.index_dir / index_store.current_version(settings.index_dir)
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "manifest.json").write_text(json.dumps({**manifest, "format": "strike-qa-index v0"}))
    with pytest.raises(IndexCorruptError, match="'strike-qa-index v0' is not .*rebuild with `rag ingest`"):
        index_store.load(settings.index_dir)
    model = CountingEmbedder()
    report = ingest([corpus], settings, lambda: model)
    assert model.embedded == report.chunks + report.sentences_embedded and report.embedded == report.chunks > 0
    # A build of this format written before the manifest recorded corpus roots still loads.
    build = settings.index_dir / index_store.current_version(settings.index_dir)
    manifest = json.loads((build / "manifest.json").read_text())
    del manifest["corpus_roots"]
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert index_store.load(settings.index_dir).manifest.corpus_roots == []


def test_manifest_records_the_corpus_roots(tmp_path, corpus):
    other = tmp_path / "more"
    other.mkdir()
    (other / "faq.md").write_text("# FAQ\nPickets start at 7 am every weekday.")
    settings = settings_for(tmp_path)
    ingest([corpus, other], settings)
    assert index_store.load(settings.index_dir).manifest.corpus_roots == [str(corpus.resolve()), str(other.resolve())]
    ingest([corpus], settings)
    assert index_store.load(settings.index_dir).manifest.corpus_roots == [str(corpus.resolve())]
    moved = shutil.copytree(corpus, tmp_path / "moved")  # the same documents from another folder
    report = ingest([moved], settings)
    assert report.embedded == 0 and index_store.load(settings.index_dir).manifest.corpus_roots == [str(moved)]


def test_links_out_of_the_corpus_are_skipped_with_a_warning(tmp_path, corpus, capsys):
    from rag.cli import main

    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text("Board minutes\nTOP SECRET bargaining plan.\n")
    (outside / "dir" / "plan.txt").write_text("Another TOP SECRET plan for the board.\n")
    (corpus / "notes.txt").symlink_to(outside / "secret.txt")
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    (corpus / "linked-dir").symlink_to(outside / "dir")
    (corpus / "alias.txt").symlink_to(corpus / "another-kaiser-strike-vote.txt")  # inside: fine
    assert main(["ingest", str(corpus), "--index", str(tmp_path / "ix")]) == 0
    err = capsys.readouterr().err
    for name in ("notes.txt", "passwd.txt", "linked-dir/plan.txt"):
        assert f"warning: skipped {name}: links outside the corpus folder" in err
    index = index_store.load(tmp_path / "ix")
    assert set(index.documents) == {"another-kaiser-strike-vote.txt", "kaiser-clinicians-strike-2022.txt", "alias.txt"}
    assert not any("TOP SECRET" in c.text or "root:" in c.text for c in index.chunks)


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


def test_cli_ingest_reports_summary_and_warnings(tmp_path, corpus, capsys):
    from rag.cli import main  # in-process: a subprocess would only add the model's start-up

    encrypted_pdf(corpus / "locked.pdf")
    assert main(["ingest", str(corpus), "--index", str(tmp_path / "ix")]) == 0
    out, err = capsys.readouterr()
    assert "2 added" in out and "1 skipped" in out
    assert "warning: skipped locked.pdf: encrypted PDF" in err
    assert "Traceback" not in err


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


def _held(lock: Path) -> bool:
    """Whether another process holds the ingest lock (rag.ingest.run: one ingest at a time)."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(lock, timeout=0):
            return False
    except Timeout:
        return True


def test_killed_ingest_leaves_previous_index_loadable(tmp_path, corpus):
    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    big = tmp_path / "big"
    _big_corpus(big)
    env = {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir)}
    folder = settings.index_dir
    moments = {  # while reading and loading the model, while writing the new build, right after it is renamed
        "loading": lambda: _held(folder / ".lock") and not any(folder.glob(".tmp-build-*")),
        "writing": lambda: any(folder.glob(".tmp-build-*")),
        "renamed": lambda: len(list(folder.glob("build-*"))) > len(builds_before),
    }
    for name, ready in moments.items():
        before = index_store.load(folder)
        builds_before = list(folder.glob("build-*"))
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


def test_chunk_vectors_are_pooled_from_the_one_pass_over_sentences(tmp_path, corpus):
    """Pooled (the default): the model sees each sentence and heading once, never a whole chunk;
    a chunk's vector is the mean of its sentences' and heading's token states; the answerer's
    sentence vectors are the very ones the encoded build stores."""
    import numpy as np

    (corpus / "contract.md").write_text("# Article 12 Sick Leave\n\nEmployees accrue eight hours of sick leave "
                                        "each month. Unused sick leave carries over.\n")
    model = PoolingCountingEmbedder()
    pooled_settings = settings_for(tmp_path)
    assert pooled_settings.chunk_vectors == "pooled"
    report = ingest([corpus], pooled_settings, lambda: model)
    pooled = index_store.load(pooled_settings.index_dir)
    headings = {c.section for c in pooled.chunks if c.section}
    assert headings and report.pooled == report.embedded == len(pooled.chunks)
    assert model.embedded == pooled.manifest.sentences + len(headings)  # no chunk encoded on its own

    encoded_settings = replace(pooled_settings, index_dir=tmp_path / "encoded", chunk_vectors="encoded")
    ingest([corpus], encoded_settings, lambda: model)
    encoded = index_store.load(encoded_settings.index_dir)
    assert [c.chunk_id for c in pooled.chunks] == [c.chunk_id for c in encoded.chunks]
    assert np.allclose(np.asarray(pooled.sentence_vectors, np.float32),
                       np.asarray(encoded.sentence_vectors, np.float32), atol=2e-3)
    cosines = (np.asarray(pooled.chunk_vectors, np.float32) * np.asarray(encoded.chunk_vectors, np.float32)).sum(1)
    assert cosines.min() > 0.75, cosines  # near the chunk's own encoding, not equal to it

    row = next(r for r, c in enumerate(pooled.chunks) if c.section)
    chunk = pooled.chunks[row]
    doc = pooled.documents[chunk.doc_id]
    parts = [doc.text[a:b] for _, a, b in pooled.sentences_of(row)] + [chunk.section]
    total = model.inner.embed_batch_with_sums(parts)[1].sum(axis=0)
    assert np.allclose(np.asarray(pooled.chunk_vectors[row], np.float32), total / np.linalg.norm(total), atol=2e-3)

    hits = Retriever.configured(pooled, model.inner, Settings()).search("How much sick leave do employees accrue?", 1)
    assert hits[0].chunk.doc_id == "contract.md"


def test_a_bad_chunk_vectors_setting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="RAG_CHUNK_VECTORS must be 'pooled' or 'encoded'"):
        Settings.from_env(environ={"RAG_CHUNK_VECTORS": "late"})


def test_loading_and_searching_an_index_leave_the_model_its_threads(tmp_path, corpus):
    """FAISS and torch share one OpenMP runtime: FAISS's one search thread must not become torch's."""
    import torch

    settings = settings_for(tmp_path)
    ingest([corpus], settings)
    threads = torch.get_num_threads()
    loaded = index_store.load(settings.index_dir)
    assert torch.get_num_threads() == threads
    assert Retriever.configured(loaded, load_embedder(), Settings()).search("When is the strike vote?", 3)
    assert torch.get_num_threads() == threads


def test_packed_sentences_come_out_as_they_would_alone():
    """Several sentences share one sequence (block-diagonal attention, positions from 0), so
    ingest runs the model on full rows; each sentence's vector and token-state sum are unchanged."""
    import numpy as np

    from rag.ingest.chunking import split_sentences
    from rag.ingest.embedding import embed_all_with_sums

    model = load_embedder("bundled", "float32")  # exactness; bfloat16's rounding differs by shape
    assert model.packs
    text = (CORPUS / "kaiser-clinicians-strike-2022.txt").read_text()
    sentences = [text[a:b] for a, b in split_sentences(text)]
    # One word, one of ~100 word pieces (the middle width) and one past the model's 256 word pieces.
    sentences += ["Strike.", "strike " * 100, "word " * 400]
    lengths = {len(ids) for ids in model.tokenizer(sentences)["input_ids"]}
    assert min(lengths) <= 64 and any(64 < n <= 128 for n in lengths) and max(lengths) > 256  # every width used
    vectors, sums = embed_all_with_sums(model, sentences)
    alone_vectors, alone_sums = model.embed_batch_with_sums(sentences)
    assert np.abs(vectors - alone_vectors).max() < 1e-4
    assert np.abs(sums - alone_sums).max() < 1e-3 * max(1.0, float(np.abs(alone_sums).max()))
    assert np.allclose(vectors, model.embed_batch(sentences), atol=1e-4)


def test_bfloat16_vectors_agree_with_float32(tmp_path, corpus):
    """On CPUs that multiply bfloat16 in hardware (AMX) 'auto' embeds in bfloat16, 2.6x faster:
    its vectors, one to a row and packed, must match float32's closely enough to rank alike."""
    import numpy as np

    from rag.ingest.chunking import split_sentences
    from rag.ingest.embedding import embed_all_with_sums, native_bfloat16, resolve_precision

    assert resolve_precision("auto") == ("bfloat16" if native_bfloat16() else "float32")
    exact, reduced = load_embedder("bundled", "float32"), load_embedder("bundled", "bfloat16")
    assert (exact.precision, reduced.precision) == ("float32", "bfloat16")
    text = (CORPUS / "kaiser-clinicians-strike-2022.txt").read_text()
    sentences = [text[a:b] for a, b in split_sentences(text)]
    truth = exact.embed_batch(sentences)
    for vectors in (reduced.embed_batch(sentences), embed_all_with_sums(reduced, sentences)[0]):
        assert not np.array_equal(vectors, truth)  # bfloat16 really ran
        assert float((vectors * truth).sum(axis=1).min()) > 0.999
    question = exact.embed_batch(["How long did the 2022 strike last?"])[0]
    assert np.argmax(truth @ question) == np.argmax(reduced.embed_batch(sentences) @ question)

    settings = replace(settings_for(tmp_path), precision="bfloat16")
    ingest([corpus], settings, lambda: reduced)
    assert index_store.load(settings.index_dir).manifest.precision == "bfloat16"
    with pytest.raises(ValueError, match="RAG_PRECISION must be"):
        Settings.from_env(environ={"RAG_PRECISION": "fp16"})


def test_a_question_is_embedded_by_the_traced_model_as_by_the_model():
    """One text (a question) goes through the TorchScript trace of the model, 40% faster than
    eager; it must give model.encode's vector, whatever the question's length."""
    import numpy as np

    model = load_embedder()
    assert model.traced is not None
    calls = []
    real = model.traced
    model.traced = lambda ids, mask: calls.append(ids.shape[1]) or real(ids, mask)
    try:
        questions = ["Strike pay?", "has a strike date been set yet??",
                     "How many therapy appointments did Kaiser cancel during the 2022 strike, and how many "
                     "patients were waiting eight weeks or more between sessions at the Fairfield clinic?"]
        for q in questions:
            assert np.allclose(model.encode([q]), model.model.encode([q], normalize_embeddings=True), atol=1e-5)
        assert len(calls) == 3 and len(set(calls)) == 3  # three lengths, all traced
        model.encode(questions[:2])  # a batch: padded, so the eager model
        assert len(calls) == 3
    finally:
        model.traced = real


def test_library_log_lines_go_to_the_debug_log_not_the_console(tmp_path):
    """A PDF whose cross-reference table is off makes pypdf log a line per object it repairs
    ("Object 5 0 found"); the console shows only what ingest says itself."""
    import re
    import subprocess
    import sys

    from tests.pdfs import text_pdf

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = text_pdf(tmp_path / "plain.pdf", ["Strike pay is $300 a week for members who picket."]).read_bytes()
    shifted = re.sub(rb"(\d{10}) 00000 n", lambda m: b"%010d 00000 n" % (int(m.group(1)) + 7), data)
    (corpus / "strike-pay.pdf").write_bytes(shifted)
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(corpus), "--index", str(tmp_path / "index")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "found" not in run.stderr and "Ignoring" not in run.stderr
    assert "Object 5 0 found" in (tmp_path / "data" / "debug.log").read_text()
