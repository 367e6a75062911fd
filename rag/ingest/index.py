"""The on-disk index: chunks, their vectors (FAISS), BM25, and a manifest.

Layout, so that a reader never sees a half-written index:

    index/CURRENT            name of the live build, replaced atomically
    index/build-<stamp>/     manifest.json documents.jsonl chunks.jsonl dense.faiss bm25/
                             chunk_vectors.npy sentence_spans.npy sentence_vectors.npy
                             chunk_sentence_offsets.npy chunk_sentence_ids.npy idf.json
                             words.json

A build is written into a fresh folder and only then named in CURRENT, so a
crash or Ctrl-C at any moment leaves the previous build live and loadable.
Publishing claims the build it was made from (``index/.next-<base>``, created
exclusively): of two ingests that started from the same build, on machines that
share the folder but no lock, the first to publish wins and the other is refused.

Everything that depends only on the documents is here, computed once at ingest:
the answerer's sentence spans, their vectors, the idf table and the word counts
the spelling corrector reads (rag.answer.spelling) included. The
arrays are memory-mapped, and so is the FAISS index, so several server
processes on one machine share one copy in the page cache.

The dense index type follows the size (``dense_spec``): an exact scan while it
is fast enough, an inverted-file index over 8-bit scalar-quantised vectors
above that; the choice and its parameters are recorded in the manifest.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError, IndexFormatError, IndexNotFoundError, PublishConflictError
from ..types import Chunk, Document, Heading, Page
from .lexical import LexicalIndex, word_counts

FORMAT = "strike-qa-index v3"
# Formats this version reads no more, and why; `rag ingest` rebuilds them.
OLD_FORMATS = {"strike-qa-index v1": "it predates the stored sentence table (format v2)",
               "strike-qa-index v2": "it predates the stored word counts that spelling correction reads (format v3)"}
POINTER = "CURRENT"
LIVE = object()  # save()'s default base: whatever build is live when it publishes
STALE_CLAIM_S = 60.0  # a claim this old with nothing published on top: its ingest died in between

# Exact search up to this many chunks, approximate above. Measured with `rag
# bench-scale` (docs/scaling.md; a busy 2-core machine): an exact scan took
# 56 ms p50 at 100k chunks and 1.3 s at 1M, IVF-SQ8 2-16 ms at either size.
# At 50k an exact scan is ~28 ms there (a few ms idle) and still exact.
EXACT_MAX_CHUNKS = 50_000
# IVF parameters: sqrt(n) lists (1,000 at 1M chunks; FAISS suggests 4-16
# sqrt(n), but more lists cost k-means time at build on 2 cores), and as many
# lists probed as hold ~IVF_SCAN vectors: recall@10 against exact search was
# 0.953 at 100k (64 of 316 lists) and 0.958 at 1M (16 of 1,000 lists), both
# ~20k vectors scanned, so the search cost stays flat as the corpus grows.
IVF_LISTS_PER_SQRT = 1
IVF_SCAN = 20_000
IVF_TRAIN_PER_LIST = 50  # k-means sample: FAISS wants 39-256 points a list
IVF_KMEANS_ITERATIONS = 10


@dataclass(frozen=True)
class Manifest:
    format: str
    embedder: str
    dim: int
    chunking: dict  # settings that shape chunks; a change invalidates reuse
    versions: dict  # library versions that wrote this build
    documents: dict  # doc_id -> content hash
    chunks: int
    built_at: str
    # The folders ingested, absolute; builds written before this field have none.
    corpus_roots: list[str] = field(default_factory=list)
    dense: dict = field(default_factory=dict)  # dense index type and its parameters (dense_spec)
    sentences: int = 0  # rows of the sentence table
    dates: dict = field(default_factory=dict)  # doc_id -> {"date": ISO date or None, "source": where from}
    # What the model computed the new vectors in ("float32", "bfloat16"; RAG_PRECISION). Not part
    # of `chunking`: the two agree to cosine 0.99998, so a change re-embeds nothing. Empty: older builds.
    precision: str = ""


@dataclass(frozen=True)
class SentenceTable:
    """Every distinct sentence of the chunks, row-aligned with its vector.

    Chunk row i owns sentence rows ``ids[offsets[i]:offsets[i + 1]]``, in text
    order; overlapping chunks share rows. ``spans[j]`` is (start, end) in the
    chunk's document text.
    """

    spans: np.ndarray  # (S, 2) int64
    vectors: np.ndarray  # (S, dim) float16, unit length
    offsets: np.ndarray  # (chunks + 1,) int64
    ids: np.ndarray  # (M,) int64

    @classmethod
    def empty(cls, dim: int, chunks: int = 0) -> "SentenceTable":
        return cls(np.zeros((0, 2), np.int64), np.zeros((0, dim), np.float16),
                   np.zeros(chunks + 1, np.int64), np.zeros(0, np.int64))


@dataclass(frozen=True)
class Idf:
    """The answerer's term weights: idf of each content term over the chunks."""

    terms: dict[str, float]
    unseen: float  # weight of a term no chunk uses


def dense_spec(n: int, exact_max: int | None = None) -> dict:
    """The dense index for n chunks: exact up to exact_max (EXACT_MAX_CHUNKS), IVF-SQ8 above."""
    if n <= (EXACT_MAX_CHUNKS if exact_max is None else exact_max):
        return {"type": "flat", "metric": "inner_product"}
    nlist = max(1, min(int(IVF_LISTS_PER_SQRT * n ** 0.5), n // 39))  # k-means wants >= 39 points a list
    return {"type": "ivf-sq8", "metric": "inner_product", "nlist": nlist,
            "nprobe": min(nlist, max(8, -(-IVF_SCAN * nlist // n))), "train": min(n, IVF_TRAIN_PER_LIST * nlist),
            "kmeans_iterations": IVF_KMEANS_ITERATIONS}


@contextmanager
def omp_threads(n: int):
    """FAISS's OpenMP thread count on the calling thread for the block, then put back.

    FAISS and torch share one OpenMP runtime, so a count left set for FAISS is
    torch's too: left at 1 after loading an index, it made every embedding pass
    after it single-threaded (64 abstracts: 3.5 s, then 6.5 s)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_dense(vectors: np.ndarray, spec: dict):
    """A FAISS index of unit vectors (inner product = cosine) of the kind spec names."""
    with omp_threads(os.cpu_count() or 1):  # training and adding use every core
        return _build_dense(vectors, spec)


def _build_dense(vectors: np.ndarray, spec: dict):
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if spec["type"] == "flat":
        dense = faiss.IndexFlatIP(dim)
    elif spec["type"] == "ivf-sq8":
        dense = faiss.index_factory(dim, f"IVF{spec['nlist']},SQ8", faiss.METRIC_INNER_PRODUCT)
        faiss.extract_index_ivf(dense).cp.niter = spec.get("kmeans_iterations", 10)
        sample = np.random.default_rng(0).choice(len(vectors), spec["train"], replace=False)
        dense.train(vectors[np.sort(sample)])
    else:
        raise ValueError(f"unknown dense index type {spec['type']!r}")
    for start in range(0, len(vectors), 100_000):  # bounded temporaries while adding
        dense.add(vectors[start:start + 100_000])
    _tune(dense, spec)
    return dense


def _tune(dense, spec: dict) -> None:
    import faiss

    if "nprobe" in spec:
        faiss.extract_index_ivf(dense).nprobe = spec["nprobe"]


class Index:
    """Chunks with row-aligned vectors, a BM25 index and the answerer's sentences: row i is chunks[i]."""

    def __init__(self, manifest: Manifest, documents: dict[str, Document], chunks: list[Chunk],
                 dense, lexical: LexicalIndex, chunk_vectors: np.ndarray, sentences: SentenceTable,
                 idf: Idf, words: dict[str, int], version: str = ""):
        if not dense.ntotal == len(chunk_vectors) == len(chunks) == len(sentences.offsets) - 1:
            raise IndexCorruptError(f"index has {dense.ntotal} vectors, {len(chunk_vectors)} stored vectors "
                                    f"and {len(sentences.offsets) - 1} sentence lists for {len(chunks)} chunks")
        if len(sentences.spans) != len(sentences.vectors):
            raise IndexCorruptError(f"{len(sentences.spans)} sentences but {len(sentences.vectors)} sentence vectors")
        self.manifest = manifest
        self.documents = documents
        self.chunks = chunks
        self.dense = dense
        self.lexical = lexical
        self.chunk_vectors = chunk_vectors  # (chunks, dim) float16, for reuse on re-ingest
        self.sentences = sentences
        self.idf = idf
        self.words = words  # lower-case word -> count over the chunks (rag.answer.spelling)
        self.version = version
        self._rows: dict[str, list[int]] | None = None

    @classmethod
    def build(cls, manifest: Manifest, documents: dict[str, Document], chunks: list[Chunk],
              vectors: np.ndarray, sentences: SentenceTable) -> "Index":
        """The index of chunks; vectors are stored as float16, and searched as stored."""
        from .sentences import idf_table

        stored = np.asarray(vectors, dtype=np.float16).reshape(len(chunks), manifest.dim)
        dense = build_dense(stored, manifest.dense or dense_spec(len(chunks)))
        searched = [f"{c.title}\n{c.section}\n{c.text}" for c in chunks]  # what a question's words meet
        lexical = LexicalIndex.build(searched)
        idf = Idf(*idf_table(c.text for c in chunks))
        words = word_counts(searched)
        return cls(manifest, documents, chunks, dense, lexical, stored, sentences, idf, words)

    @property
    def sentence_vectors(self) -> np.ndarray:
        """(sentences, dim) float16 unit vectors; index with sentence rows."""
        return self.sentences.vectors

    def sentences_of(self, row: int) -> list[tuple[int, int, int]]:
        """(sentence row, start, end) of each sentence in chunk row ``row``, in text order."""
        t = self.sentences
        ids = t.ids[t.offsets[row]:t.offsets[row + 1]]
        return [(int(j), int(a), int(b)) for j, (a, b) in zip(ids, t.spans[ids])]

    def row_of(self, chunk: Chunk) -> int:
        """The row of one of this index's chunks (their ids end in their number within the document)."""
        rows = self.chunks_of(chunk.doc_id)
        n = chunk.chunk_id.rpartition(":")[2]
        if n.isdigit() and int(n) < len(rows) and self.chunks[rows[int(n)]].chunk_id == chunk.chunk_id:
            return rows[int(n)]
        for row in rows:
            if self.chunks[row].chunk_id == chunk.chunk_id:
                return row
        raise KeyError(f"chunk {chunk.chunk_id} is not in index {self.version}")

    def chunks_of(self, doc_id: str) -> list[int]:
        """Rows of a document's chunks (a scan per call would be quadratic on re-ingest)."""
        if self._rows is None:
            rows: dict[str, list[int]] = {}
            for i, c in enumerate(self.chunks):
                rows.setdefault(c.doc_id, []).append(i)
            self._rows = rows
        return self._rows.get(doc_id, [])


def current_version(index_dir: Path) -> str | None:
    """The live build's folder name, or None if nothing has been built."""
    try:
        return (Path(index_dir) / POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None


def save(index: Index, index_dir: Path, base: str | None | object = LIVE) -> str:
    """Write a new build beside the old one, then switch CURRENT to it atomically.

    ``base`` is the build this one was made from (None: an empty folder). If another build was
    published on top of it meanwhile, nothing is published: PublishConflictError says which won.
    """
    import faiss

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"build-{stamp}-{uuid.uuid4().hex[:6]}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir()
    _write_json(tmp / "manifest.json", asdict(index.manifest))
    _write_lines(tmp / "documents.jsonl", (_doc_json(d) for d in index.documents.values()))
    _write_lines(tmp / "chunks.jsonl", (asdict(c) for c in index.chunks))
    faiss.write_index(index.dense, str(tmp / "dense.faiss"))
    index.lexical.save(tmp / "bm25")
    np.save(tmp / "chunk_vectors.npy", np.asarray(index.chunk_vectors, np.float16))
    t = index.sentences
    np.save(tmp / "sentence_spans.npy", np.asarray(t.spans, np.int64).reshape(-1, 2))
    np.save(tmp / "sentence_vectors.npy", np.asarray(t.vectors, np.float16).reshape(-1, index.manifest.dim))
    np.save(tmp / "chunk_sentence_offsets.npy", np.asarray(t.offsets, np.int64))
    np.save(tmp / "chunk_sentence_ids.npy", np.asarray(t.ids, np.int64))
    _write_json(tmp / "idf.json", {"unseen": index.idf.unseen, "terms": index.idf.terms})
    _write_json(tmp / "words.json", index.words)
    _fsync_tree(tmp)
    try:
        _claim(index_dir, current_version(index_dir) if base is LIVE else base, name)
    except PublishConflictError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, index_dir / name)
    pointer_tmp = index_dir / f".{POINTER}.{name}"
    pointer_tmp.write_text(name + "\n")
    _fsync(pointer_tmp)
    os.replace(pointer_tmp, index_dir / POINTER)  # the commit point
    index.version = name
    _prune(index_dir, keep={name})
    return name


def load(index_dir: Path) -> Index:
    """The live build, its arrays and FAISS index memory-mapped (shared between processes)."""
    import faiss

    index_dir = Path(index_dir)
    name = current_version(index_dir)
    if name is None:
        raise IndexNotFoundError(f"no index in {index_dir}; build one with `rag ingest`")
    folder = index_dir / name
    try:
        raw = json.loads((folder / "manifest.json").read_text())
        found = raw.get("format")
        if found in OLD_FORMATS:
            raise IndexFormatError(f"the index in {index_dir} was built by an older strike-qa ({found}): "
                                   f"{OLD_FORMATS[found]}. Run `rag ingest` to rebuild it; "
                                   "questions are answered from the old build until then")
        if found != FORMAT:
            raise IndexCorruptError(f"index format {found!r} is not {FORMAT!r}; rebuild with `rag ingest`")
        manifest = Manifest(**raw)
        documents = {d.doc_id: d for d in map(_doc_from_json, _read_lines(folder / "documents.jsonl"))}
        chunks = [Chunk(**row) for row in _read_lines(folder / "chunks.jsonl")]
        dense = faiss.read_index(str(folder / "dense.faiss"), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        _tune(dense, manifest.dense)
        lexical = LexicalIndex.load(folder / "bm25", mmap=True)
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in (
            "chunk_vectors", "sentence_spans", "sentence_vectors", "chunk_sentence_offsets", "chunk_sentence_ids")}
        sentences = SentenceTable(arrays["sentence_spans"], arrays["sentence_vectors"],
                                  arrays["chunk_sentence_offsets"], arrays["chunk_sentence_ids"])
        idf_json = json.loads((folder / "idf.json").read_text())
        idf = Idf(idf_json["terms"], float(idf_json["unseen"]))
        words = json.loads((folder / "words.json").read_text())
        index = Index(manifest, documents, chunks, dense, lexical, arrays["chunk_vectors"], sentences, idf,
                      words, version=name)
    except IndexCorruptError:
        raise
    except Exception as exc:  # any damage at all means "rebuild", said plainly
        raise IndexCorruptError(f"index in {index_dir} is unreadable ({type(exc).__name__}: {exc}); "
                                "rebuild it with `rag ingest`") from None
    return index


def _claim(index_dir: Path, base: str | None, name: str) -> None:
    """Claim publishing the build after ``base``, or PublishConflictError. The claim is a hard link
    to a file already holding this build's name: link() is atomic on local disks and on NFS, so of
    two claimants exactly one gets the marker, and whoever finds it reads the winner's name in it
    (a file created empty and written after would show a loser nothing for a moment)."""
    marker = index_dir / f".next-{base or 'none'}"
    ticket = index_dir / f".claim-{name}"
    ticket.write_text(name + "\n")
    try:
        for attempt in range(2):
            try:
                os.link(ticket, marker)
            except FileExistsError:
                if attempt == 0 and current_version(index_dir) == base and _age(marker) > STALE_CLAIM_S:
                    marker.unlink(missing_ok=True)  # claimed, never published: that ingest died in between
                    continue
                raise _conflict(index_dir, base, _claimant(marker)) from None
            break
    finally:
        ticket.unlink(missing_ok=True)
    if current_version(index_dir) != base:  # base's claim went with its pruned build, long ago
        raise _conflict(index_dir, base)


def _claimant(marker: Path) -> str:
    """The build named in a claim: the winner, which may not have switched CURRENT yet."""
    try:
        return marker.read_text().strip()
    except OSError:
        return ""


def _conflict(index_dir: Path, base: str | None, claimant: str = "") -> PublishConflictError:
    current = current_version(index_dir)
    # The claim names the winner even before it switches CURRENT; after, CURRENT does.
    winner = current if current != base else (claimant or current or "(none yet)")
    return PublishConflictError(
        f"another ingest published build {winner} in {index_dir} while this one ran (both started from "
        f"{base or 'an empty index'}); this build was not published, {winner} is served. "
        "Run `rag ingest` again to build on top of it.")


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _prune(index_dir: Path, keep: set[str]) -> None:
    """Drop old builds, keeping the newest previous one for readers still loading it."""
    builds = sorted(p for p in index_dir.glob("build-*") if p.name not in keep)
    for old in builds[:-1]:
        shutil.rmtree(old, ignore_errors=True)
        (index_dir / f".next-{old.name}").unlink(missing_ok=True)


def remove_stale_temp(index_dir: Path) -> None:
    """Leftovers of a killed ingest; only call while holding the ingest lock."""
    for tmp in Path(index_dir).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in [*Path(index_dir).glob(f".{POINTER}.*"), *Path(index_dir).glob(".claim-*")]:
        tmp.unlink(missing_ok=True)


def _doc_json(d: Document) -> dict:
    row = asdict(d)
    row["pages"] = [asdict(p) for p in d.pages]
    row["headings"] = [asdict(h) for h in d.headings]
    return row


def _doc_from_json(row: dict) -> Document:
    return Document(**{**row, "pages": tuple(Page(**p) for p in row["pages"]),
                       "headings": tuple(Heading(**h) for h in row.get("headings", ()))})


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False))


def _write_lines(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_lines(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(folder)
