"""Ingest: load a corpus, reuse what is unchanged, embed the rest, save atomically."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from importlib.metadata import version
from pathlib import Path

import numpy as np
from filelock import FileLock

from ..config import Settings
from ..errors import CorpusError, IndexCorruptError, IndexNotFoundError
from ..types import Chunk, Document
from . import index as index_store
from .chunking import chunk_document
from .embedding import Embedder, embed_all, embed_all_with_sums, load_embedder, tiktoken_counter
from .index import Index, Manifest, SentenceTable
from .loaders import FileTask, Loaded, Mapper, Skipped, file_key, list_corpus, local_map, read_task
from .ocr import INSTALL_HINT, OcrOptions, engine as ocr_engine
from .sentences import document_sentences


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, warning)
    chunks: int = 0
    embedded: int = 0  # chunks given new vectors
    pooled: int = 0  # of those, pooled from their sentences' pass (not encoded on their own)
    sentences_embedded: int = 0  # answer sentences sent to the model
    seconds: float = 0.0
    version: str = ""

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed, {len(self.skipped)} skipped; {self.chunks} chunks "
                f"({self.embedded} embedded) in {self.seconds:.1f}s")


def ingest(corpus_dirs: Iterable[Path], settings: Settings,
           embedder_factory: Callable[[], Embedder] | None = None,
           progress: bool | None = None, make_rows: RowsMaker | None = None,
           read_map: Mapper = local_map) -> IngestReport:
    """Index every readable document under corpus_dirs into settings.index_dir. ``read_map`` reads
    the files and ``make_rows`` chunks and embeds the new documents elsewhere (a Ray cluster)
    instead of in this process."""
    corpus_dirs = check_folders(corpus_dirs)
    live = _previous(settings)
    documents, report = _collect(corpus_dirs, ocr_options(settings), read_map, live)
    if not documents:
        # Most likely a wrong path or a failed copy: replacing a working index
        # with an empty one would lose everything members can ask about.
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
        raise CorpusError(f"no readable documents in {', '.join(map(str, corpus_dirs))}"
                          f"{' (' + reasons + ')' if reasons else ''}; the index was left as it was")
    return build(documents, settings, report, embedder_factory, progress, roots=corpus_dirs, make_rows=make_rows,
                 live=live)


def check_folders(corpus_dirs: Iterable[Path]) -> list[Path]:
    """The corpus folders as paths, or CorpusError naming the first that is not a folder."""
    corpus_dirs = [Path(d) for d in corpus_dirs]
    for folder in corpus_dirs:
        if not folder.is_dir():
            raise CorpusError(f"corpus folder {folder} not found; the index was left as it was")
    return corpus_dirs


def ocr_options(settings: Settings) -> OcrOptions | None:
    """How this ingest reads scanned PDF pages; None when RAG_OCR is off."""
    if not settings.ocr:
        return None
    return OcrOptions(settings.data_dir / "ocr-cache", settings.ocr_max_pages, settings.ocr_timeout_s)


def _collect(corpus_dirs: Iterable[Path], ocr: OcrOptions | None = None, read_map: Mapper = local_map,
             previous: Index | None = None) -> tuple[list[Document], IngestReport]:
    """Every document of the folders: read, or taken from ``previous`` (the live build) when what
    reading it depends on is unchanged (``loaders.file_key``), so a re-ingest parses only what changed."""
    report, docs = IngestReport(), {}
    unread = 0  # scanned pages left unread because tesseract is missing: one line says how to read them
    listed = [(root, *list_corpus(Path(root), read_map)) for root in corpus_dirs]
    tasks = [task for _, _, folder_tasks in listed for task in folder_tasks]
    keys = read_map(partial(file_key, reading=reading_fingerprint(ocr)), tasks)
    key_of = dict(zip((task.path for task in tasks), keys))
    built = {d.source: d for d in previous.documents.values() if d.read_key} if previous else {}
    kept = {path: doc for path, key in key_of.items()
            if key and (doc := built.get(str(path))) is not None and doc.read_key == key}
    # One read over every folder's files: a cluster gets all of them at once.
    read = iter(read_map(partial(read_task, ocr=ocr), [task for task in tasks if task.path not in kept]))

    def loaded(task: FileTask) -> Loaded | Skipped:
        if task.path in kept:
            return Loaded(replace(kept[task.path], doc_id=task.doc_id))
        item, key = next(read), key_of[task.path]
        if not key or not isinstance(item, Loaded) or not item.final:
            return item
        return replace(item, document=replace(item.document, read_key=key))

    for root, refused, folder_tasks in listed:
        for item in [*refused, *map(loaded, folder_tasks)]:
            unread += item.unread_scans
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
    if unread:
        report.notes.append(("OCR", f"{unread} scanned page{'s' if unread > 1 else ''} left unread: {INSTALL_HINT}"))
    return list(docs.values()), report


def build(documents: list[Document], settings: Settings, report: IngestReport | None = None,
          embedder_factory: Callable[[], Embedder] | None = None,
          progress: bool | None = None, roots: Iterable[Path] = (),
          make_rows: RowsMaker | None = None, live: Index | None = None) -> IngestReport:
    """Build and atomically save an index of documents, re-embedding only what changed. ``live`` is
    the build the caller already loaded, used if it is still the current one."""
    roots = [str(Path(r).resolve()) for r in roots]
    report = report or IngestReport()
    started = time.perf_counter()
    factory = embedder_factory or (lambda: load_embedder(settings.model, settings.precision))
    with _ingest_lock(settings.index_dir):
        index_store.remove_stale_temp(settings.index_dir)
        base = index_store.current_version(settings.index_dir)  # what this build replaces, checked at publish
        # Loaded again only if another ingest published since the caller loaded it.
        previous = live if live is not None and live.version == base else _previous(settings)
        chunking = _chunking_settings(settings)
        reusable = previous if previous and previous.manifest.chunking == chunking else None
        plan = _plan(documents, reusable, report, previous)
        if (reusable and not plan and not report.removed and reusable.manifest.corpus_roots == roots
                and _same_labels(reusable, documents)):
            # nothing changed: keep the live build
            report.chunks, report.version = len(reusable.chunks), reusable.version
            report.seconds = time.perf_counter() - started
            return report
        embedder = factory() if plan or not reusable else None
        chunks, vectors, sentences = _assemble(documents, reusable, plan, embedder, settings, report, progress,
                                               make_rows)
        manifest = _manifest(embedder, reusable, chunking, documents, len(chunks), len(sentences.spans), roots)
        index = Index.build(manifest, {d.doc_id: d for d in documents}, chunks, vectors, sentences)
        report.version = index_store.save(index, settings.index_dir, base=base)
    report.chunks = len(chunks)
    report.seconds = time.perf_counter() - started
    return report


def _same_labels(index: Index, documents: list[Document]) -> bool:
    """Whether every document keeps its title and date: a sidecar edit changes them, not the file."""
    return all((old := index.documents.get(d.doc_id)) is not None
               and (old.title, old.date, old.date_source) == (d.title, d.date, d.date_source) for d in documents)


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
        # The same bytes can read as other text (OCR installed or turned off since, a page that
        # timed out): reused chunks must still be spans of this text.
        if reuse.get(doc.doc_id) == doc.content_hash and reusable.documents[doc.doc_id].text == doc.text:
            report.unchanged.append(doc.doc_id)
            continue
        todo.add(doc.doc_id)
        (report.updated if doc.doc_id in old else report.added).append(doc.doc_id)
    current = {d.doc_id for d in documents}
    report.removed = sorted(set(old) - current)
    return todo


@dataclass(frozen=True)
class DocumentRows:
    """One new document's part of the index: its chunks, its answer sentences (spans of its
    text), which of them each chunk holds (rows of ``spans``), and their vectors (float16)."""
    doc_id: str
    chunks: list[Chunk]
    spans: list[tuple[int, int]]
    per_chunk: list[list[int]]
    chunk_vectors: np.ndarray
    sentence_vectors: np.ndarray
    encoded: int  # chunks encoded on their own rather than pooled from their sentences


# What turns new documents into their rows: the single process runs document_rows over all of
# them, ``rag ingest --ray`` over batches on a Ray cluster (rag/ingest/ray_ingest.py).
RowsMaker = Callable[[list[Document]], list[DocumentRows]]


def document_rows(documents: list[Document], embedder: Embedder, settings: Settings,
                  progress: bool | None = None) -> list[DocumentRows]:
    """Chunk new documents, split them into sentences and embed both, in one embedding pass
    (texts deduplicated and batched across the documents given)."""
    count = tiktoken_counter(settings.encoding)
    chunks: list[Chunk] = []
    spans: list[tuple[int, int]] = []
    texts: list[str] = []
    offsets, ids, bounds = [0], [], []
    for doc in documents:
        new = chunk_document(doc, count, settings.chunk_tokens, settings.chunk_overlap_tokens,
                             hard_limit=embedder.overflow)
        doc_spans, per_chunk = document_sentences(doc, new)
        bounds.append((len(chunks), len(spans)))
        base = len(spans)
        chunks.extend(new)
        spans.extend(doc_spans)
        texts.extend(doc.text[a:b] for a, b in doc_spans)
        for chunk_ids in per_chunk:
            ids.extend(base + k for k in chunk_ids)
            offsets.append(len(ids))
    bounds.append((len(chunks), len(spans)))
    matrix = np.zeros((len(chunks), embedder.dim), np.float16)
    sentence_vectors = np.zeros((len(spans), embedder.dim), np.float16)
    fresh_chunks = list(range(len(chunks)))
    fresh_sentences = list(enumerate(texts))
    encoded = fresh_chunks
    if fresh_chunks:
        if settings.chunk_vectors == "pooled" and getattr(embedder, "pools_means", False):
            encoded = _embed_pooled(chunks, ids, offsets, fresh_chunks, fresh_sentences, embedder, settings,
                                    matrix, sentence_vectors, progress)
        else:
            with _progress_bar(f"embedding {len(fresh_chunks)} chunks + {len(fresh_sentences)} sentences",
                               len(fresh_chunks), progress, unit="chunk",
                               texts=len(fresh_chunks) + len(fresh_sentences)) as tick:
                matrix[fresh_chunks] = embed_all(embedder, [embedding_text(chunks[r]) for r in fresh_chunks],
                                                 settings.batch_size, tick)
                sentence_vectors[[j for j, _ in fresh_sentences]] = embed_all(
                    embedder, [t for _, t in fresh_sentences], settings.batch_size, tick)
    on_own = np.zeros(len(chunks), bool)
    on_own[list(encoded)] = True
    rows = []
    for doc, (c0, s0), (c1, s1) in zip(documents, bounds, bounds[1:]):
        per_chunk = [[j - s0 for j in ids[offsets[r]:offsets[r + 1]]] for r in range(c0, c1)]
        rows.append(DocumentRows(doc.doc_id, chunks[c0:c1], spans[s0:s1], per_chunk, matrix[c0:c1],
                                 sentence_vectors[s0:s1], int(on_own[c0:c1].sum())))
    return rows


def _assemble(documents, reusable, plan, embedder, settings, report, progress, make_rows: RowsMaker | None = None):
    """Chunks, their vectors and their sentence table: reused rows for unchanged
    documents, new rows (document_rows, or ``make_rows``) for the others."""
    dim = embedder.dim if embedder else reusable.manifest.dim
    fresh = [doc for doc in documents if doc.doc_id in plan]
    made = make_rows or (lambda docs: document_rows(docs, embedder, settings, progress))
    new_rows = {r.doc_id: r for r in made(fresh)} if fresh else {}
    chunks: list[Chunk] = []
    vector_parts: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    sentence_parts: list[np.ndarray] = []  # vectors of sentence rows, in order
    offsets, ids = [0], []
    for doc in documents:
        if doc.doc_id in plan:
            new = new_rows[doc.doc_id]
            chunks.extend(new.chunks)
            vector_parts.append(np.asarray(new.chunk_vectors, np.float16))
            spans.extend(new.spans)
            sentence_parts.append(np.asarray(new.sentence_vectors, np.float16))
            per_chunk, base = new.per_chunk, len(spans) - len(new.spans)
        else:
            rows = reusable.chunks_of(doc.doc_id)
            # A title edited in the sidecar reaches the reused chunks too (citations show it).
            chunks.extend(replace(reusable.chunks[i], title=doc.title) for i in rows)
            vector_parts.append(np.asarray(reusable.chunk_vectors[rows], np.float16))
            old = reusable.sentences
            per_chunk_old = [old.ids[old.offsets[r]:old.offsets[r + 1]] for r in rows]
            kept = np.unique(np.concatenate(per_chunk_old)) if per_chunk_old else np.zeros(0, np.int64)
            remap = {int(j): k for k, j in enumerate(kept)}
            per_chunk = [[remap[int(j)] for j in chunk_ids] for chunk_ids in per_chunk_old]
            spans.extend(map(tuple, np.asarray(old.spans[kept]).tolist()))
            sentence_parts.append(np.asarray(old.vectors[kept], np.float16))
            base = len(spans) - len(kept)
        for chunk_ids in per_chunk:
            ids.extend(base + k for k in chunk_ids)
            offsets.append(len(ids))
    matrix = np.concatenate(vector_parts) if vector_parts else np.zeros((0, dim), np.float16)
    sentence_vectors = np.concatenate(sentence_parts) if sentence_parts else np.zeros((0, dim), np.float16)
    made_rows = list(new_rows.values())
    if any(r.chunks for r in made_rows):
        report.embedded = sum(len(r.chunks) for r in made_rows)
        report.pooled = report.embedded - sum(r.encoded for r in made_rows)
        report.sentences_embedded = sum(len(r.spans) for r in made_rows)
    table = SentenceTable(np.array(spans, np.int64).reshape(-1, 2), sentence_vectors,
                          np.array(offsets, np.int64), np.array(ids, np.int64))
    return chunks, matrix, table


def _embed_pooled(chunks, ids, offsets, fresh_chunks, fresh_sentences, embedder, settings, matrix,
                  sentence_vectors, progress) -> list[int]:
    """One pass over the new sentences and the new chunks' headings; a chunk's vector is
    the mean of their token states (mean pooling over the chunk, minus attention across
    sentences). Returns the rows of chunks with no sentence, encoded on their own after."""
    headings = sorted({chunks[r].section for r in fresh_chunks if chunks[r].section})
    texts = [t for _, t in fresh_sentences] + headings
    lonely = [r for r in fresh_chunks if offsets[r + 1] == offsets[r]]
    # Counted in chunks, as the user thinks of the corpus: chunks/s and the time left.
    with _progress_bar(f"embedding {len(fresh_chunks)} chunks (as {len(fresh_sentences)} sentences)",
                       len(fresh_chunks), progress, unit="chunk", texts=len(texts) + len(lonely)) as tick:
        # Each distinct text once ("Section 1." opens dozens of contract sections; a heading
        # may also be a sentence): 4,179 distinct texts among seiu503's 4,900 sentences.
        distinct = {t: k for k, t in enumerate(dict.fromkeys(texts))}
        vectors, sums = embed_all_with_sums(embedder, list(distinct), settings.batch_size,
                                            lambda n: tick(n * len(texts) / max(len(distinct), 1)))
        where = np.fromiter((distinct[t] for t in texts), np.int64, len(texts))
        vectors, sums = vectors[where], sums[where]
        rows = [j for j, _ in fresh_sentences]
        sentence_vectors[rows] = vectors[:len(rows)]
        sentence_sum = dict(zip(rows, sums[:len(rows)]))
        heading_sum = dict(zip(headings, sums[len(rows):]))
        for r in fresh_chunks:
            own = ids[offsets[r]:offsets[r + 1]]
            if not own:
                continue
            total = np.sum([sentence_sum[j] for j in own], axis=0)
            if chunks[r].section:
                total = total + heading_sum[chunks[r].section]
            matrix[r] = total / max(float(np.linalg.norm(total)), 1e-12)
        if lonely:
            matrix[lonely] = embed_all(embedder, [embedding_text(chunks[r]) for r in lonely], settings.batch_size, tick)
    return lonely


def embedding_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading path, then its text, so "accrual" under
    "Sick Leave" is near a question about sick leave."""
    return f"{chunk.section}\n{chunk.text}" if chunk.section else chunk.text


def _manifest(embedder, reusable, chunking, documents, n_chunks, n_sentences, roots) -> Manifest:
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
        corpus_roots=list(roots),
        dense=index_store.dense_spec(n_chunks),
        sentences=n_sentences,
        dates={d.doc_id: {"date": d.date, "source": d.date_source} for d in documents},
        precision=getattr(embedder, "precision", "") if embedder else reusable.manifest.precision,
    )


def _chunking_settings(settings: Settings) -> dict:
    return {"model": settings.model, "encoding": settings.encoding,
            "chunk_tokens": settings.chunk_tokens, "overlap_tokens": settings.chunk_overlap_tokens,
            "text": TEXT_VERSION, "chunk_vectors": settings.chunk_vectors}


# Bump when loaders/chunking change the text, headings or chunks of an unchanged file:
# 2 = rebuilt PDF paragraphs, HTML main content, heading paths, dates; 3 = PDF text from PDFium;
# 4 = scanned PDF pages read by OCR, Word .docx.
TEXT_VERSION = 4


def reading_fingerprint(ocr: OcrOptions | None) -> str:
    """How files are read, for ``loaders.file_key``: the loaders' version (TEXT_VERSION), the
    libraries that parse files, and OCR (off, or tesseract's version and languages, the page limit
    and timeout). A change to any of them reads every file again."""
    libraries = {p: version(p) for p in ("pypdf", "pypdfium2", "beautifulsoup4", "python-docx") if _installed(p)}
    engine = ocr_engine() if ocr is not None else None
    reading = {"text": TEXT_VERSION, "libraries": libraries,
               "ocr": None if ocr is None else [ocr.max_pages, ocr.timeout_s,
                                                 engine and [engine.version, list(engine.languages)]]}
    return json.dumps(reading, sort_keys=True)


def _installed(package: str) -> bool:
    try:
        version(package)
        return True
    except Exception:
        return False


@contextmanager
def _ingest_lock(index_dir: Path):
    """One ingest at a time per index folder; a second one waits (on any OS: filelock, not fcntl)."""
    Path(index_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(Path(index_dir) / ".lock"):
        yield


@contextmanager
def _progress_bar(desc: str, total: int, enabled: bool | None = None, unit: str = "text", texts: int | None = None):
    """A bar with its rate and time left (tqdm's ETA), counted in ``unit``s. Given ``texts``
    (how many texts the ``total`` units take), each finished text moves it total/texts units."""
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    scale = total / texts if texts else 1.0
    with tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=not enabled,
              file=sys.stderr, smoothing=0.1) as bar:
        yield lambda n: bar.update(n * scale)
