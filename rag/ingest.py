"""Ingest: load a corpus, reuse what is unchanged, embed the rest, save atomically."""
from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np

from . import index as index_store
from .chunking import chunk_document
from .config import Settings
from .embedding import Embedder, embed_all, load_embedder, tiktoken_counter
from .errors import CorpusError, IndexCorruptError, IndexNotFoundError
from .index import Index, Manifest
from .loaders import Skipped, walk_corpus
from .types import Chunk, Document


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, warning)
    chunks: int = 0
    embedded: int = 0  # chunks actually sent to the model
    seconds: float = 0.0
    version: str = ""
    roots: list[str] = field(default_factory=list)  # absolute corpus folders, in order

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed, {len(self.skipped)} skipped; {self.chunks} chunks "
                f"({self.embedded} embedded) in {self.seconds:.1f}s")


def ingest(corpus_dirs: Iterable[Path], settings: Settings,
           embedder_factory: Callable[[], Embedder] | None = None,
           progress: bool | None = None) -> IngestReport:
    """Index every readable document under corpus_dirs into settings.index_dir."""
    corpus_dirs = [Path(d) for d in corpus_dirs]
    for folder in corpus_dirs:
        if not folder.is_dir():
            raise CorpusError(f"corpus folder {folder} not found; the index was left as it was")
    documents, report = _collect(corpus_dirs)
    if not documents:
        # Most likely a wrong path or a failed copy: replacing a working index
        # with an empty one would lose everything members can ask about.
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
        raise CorpusError(f"no readable documents in {', '.join(map(str, corpus_dirs))}"
                          f"{' (' + reasons + ')' if reasons else ''}; the index was left as it was")
    return build(documents, settings, report, embedder_factory, progress)


def _collect(corpus_dirs: Iterable[Path]) -> tuple[list[Document], IngestReport]:
    report, docs = IngestReport(), {}
    for root in corpus_dirs:
        for item in walk_corpus(Path(root)):
            if isinstance(item, Skipped):
                report.skipped.append(item)
                continue
            doc = item.document
            if doc.doc_id in docs:
                # The same relative path in a later folder: prefix its folder's name, so
                # both stay (ids stay stable for the same folders in the same order).
                doc = replace(doc, doc_id=f"{Path(root).resolve().name}/{doc.doc_id}")
                if doc.doc_id in docs:
                    report.skipped.append(Skipped(doc.doc_id, f"duplicate doc id (also in an earlier folder), {root}"))
                    continue
                report.notes.append((doc.doc_id, f"also in an earlier folder; indexed as {doc.doc_id}"))
            docs[doc.doc_id] = doc
            if item.note:
                report.notes.append((doc.doc_id, item.note))
    report.roots = [str(Path(root).resolve()) for root in corpus_dirs]
    return list(docs.values()), report


def build(documents: list[Document], settings: Settings, report: IngestReport | None = None,
          embedder_factory: Callable[[], Embedder] | None = None,
          progress: bool | None = None) -> IngestReport:
    """Build and atomically save an index of documents, re-embedding only what changed."""
    report = report or IngestReport()
    started = time.perf_counter()
    factory = embedder_factory or (lambda: load_embedder(settings.model))
    with _ingest_lock(settings.index_dir):
        index_store.remove_stale_temp(settings.index_dir)
        previous = _previous(settings)
        chunking = _chunking_settings(settings)
        reusable = previous if previous and previous.manifest.chunking == chunking else None
        plan = _plan(documents, reusable, report, previous)
        if reusable and not plan and not report.removed:  # nothing changed: keep the live build
            report.chunks, report.version = len(reusable.chunks), reusable.version
            report.seconds = time.perf_counter() - started
            return report
        embedder = factory() if plan or not reusable else None
        chunks, vectors = _assemble(documents, reusable, plan, embedder, settings, report, progress)
        manifest = _manifest(embedder, reusable, chunking, documents, len(chunks), report.roots)
        index = Index.build(manifest, {d.doc_id: d for d in documents}, chunks, vectors)
        report.version = index_store.save(index, settings.index_dir)
    report.chunks = len(chunks)
    report.seconds = time.perf_counter() - started
    return report


def _previous(settings: Settings) -> Index | None:
    try:
        return index_store.load(settings.index_dir)
    except (IndexNotFoundError, IndexCorruptError):
        return None


def _plan(documents, reusable, report, previous) -> set[str]:
    """Doc ids that need chunking and embedding; fills in the report's buckets."""
    old = previous.manifest.documents if previous else {}
    reuse = reusable.manifest.documents if reusable else {}
    todo = set()
    for doc in documents:
        if reuse.get(doc.doc_id) == doc.content_hash:
            report.unchanged.append(doc.doc_id)
            continue
        todo.add(doc.doc_id)
        (report.updated if doc.doc_id in old else report.added).append(doc.doc_id)
    current = {d.doc_id for d in documents}
    report.removed = sorted(set(old) - current)
    return todo


def _assemble(documents, reusable, plan, embedder, settings, report, progress):
    count = tiktoken_counter(settings.encoding)
    chunks: list[Chunk] = []
    vectors: list[np.ndarray] = []
    fresh: list[Chunk] = []
    for doc in documents:
        if doc.doc_id in plan:
            new = chunk_document(doc, count, settings.chunk_tokens, settings.chunk_overlap_tokens,
                                 hard_limit=embedder.overflow)
            fresh.extend(new)
            chunks.extend(new)
            vectors.append(np.zeros((len(new), embedder.dim), np.float32))
        else:
            rows = reusable.chunks_of(doc.doc_id)
            chunks.extend(reusable.chunks[i] for i in rows)
            vectors.append(reusable.dense.reconstruct_batch(np.array(rows, dtype=np.int64)) if rows else
                           np.zeros((0, reusable.manifest.dim), np.float32))
    dim = embedder.dim if embedder else reusable.manifest.dim
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    if fresh:
        with _progress_bar(len(fresh), progress) as tick:
            embedded = embed_all(embedder, [embedding_text(c) for c in fresh], settings.batch_size, tick)
        rows = {c.chunk_id: i for i, c in enumerate(chunks)}
        matrix[[rows[c.chunk_id] for c in fresh]] = embedded
        report.embedded = len(fresh)
    return chunks, matrix


def embedding_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading path, then its text, so "accrual" under
    "Sick Leave" is near a question about sick leave."""
    return f"{chunk.section}\n{chunk.text}" if chunk.section else chunk.text


def _manifest(embedder, reusable, chunking, documents, n_chunks, roots=()) -> Manifest:
    return Manifest(
        format=index_store.FORMAT,
        embedder=embedder.name if embedder else reusable.manifest.embedder,
        dim=embedder.dim if embedder else reusable.manifest.dim,
        chunking=chunking,
        versions={p: version(p) for p in ("strike-qa", "faiss-cpu", "bm25s", "sentence-transformers", "pypdf", "tiktoken")
                  if _installed(p)},
        documents={d.doc_id: d.content_hash for d in documents},
        chunks=n_chunks,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        roots=list(roots),
        dates={d.doc_id: {"date": d.date, "source": d.date_source} for d in documents},
    )


def _chunking_settings(settings: Settings) -> dict:
    return {"model": settings.model, "encoding": settings.encoding,
            "chunk_tokens": settings.chunk_tokens, "overlap_tokens": settings.chunk_overlap_tokens,
            "text": TEXT_VERSION}


# Bump when loaders/chunking change the text, headings or chunks of an unchanged file:
# 2 = rebuilt PDF paragraphs, HTML main content, heading paths, dates.
TEXT_VERSION = 2


def _installed(package: str) -> bool:
    try:
        version(package)
        return True
    except Exception:
        return False


@contextmanager
def _ingest_lock(index_dir: Path):
    """One ingest at a time per index folder; a second one waits."""
    Path(index_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(index_dir) / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def _progress_bar(total: int, enabled: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    with tqdm(total=total, unit="chunk", desc="embedding", disable=not enabled, file=sys.stderr) as bar:
        yield bar.update
