"""The on-disk index: chunks, their vectors (FAISS), BM25, and a manifest.

Layout, so that a reader never sees a half-written index:

    index/CURRENT            name of the live build, replaced atomically
    index/build-<stamp>/     manifest.json documents.jsonl chunks.jsonl dense.faiss bm25/

A build is written into a fresh folder and only then named in CURRENT, so a
crash or Ctrl-C at any moment leaves the previous build live and loadable.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import IndexCorruptError, IndexNotFoundError
from .lexical import LexicalIndex
from .types import Chunk, Document, Heading, Page

FORMAT = "strike-qa-index v1"
POINTER = "CURRENT"


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
    roots: list = field(default_factory=list)  # absolute corpus folders, in ingest order
    dates: dict = field(default_factory=dict)  # doc_id -> {"date": ISO date or None, "source": where from}


class Index:
    """Chunks with row-aligned dense vectors and a BM25 index: row i is chunks[i]."""

    def __init__(self, manifest: Manifest, documents: dict[str, Document],
                 chunks: list[Chunk], dense, lexical: LexicalIndex, version: str = ""):
        if dense.ntotal != len(chunks):
            raise IndexCorruptError(f"index has {dense.ntotal} vectors for {len(chunks)} chunks")
        self.manifest = manifest
        self.documents = documents
        self.chunks = chunks
        self.dense = dense
        self.lexical = lexical
        self.version = version
        self._rows: dict[str, list[int]] | None = None

    @classmethod
    def build(cls, manifest: Manifest, documents: dict[str, Document],
              chunks: list[Chunk], vectors: np.ndarray) -> "Index":
        import faiss

        # Unit vectors + inner product = cosine similarity (txtai's idiom).
        dense = faiss.IndexFlatIP(manifest.dim)
        if len(vectors):
            dense.add(np.ascontiguousarray(vectors, dtype=np.float32))
        lexical = LexicalIndex.build([f"{c.title}\n{c.section}\n{c.text}" for c in chunks])
        return cls(manifest, documents, chunks, dense, lexical)

    def vectors(self) -> np.ndarray:
        return self.dense.reconstruct_n(0, self.dense.ntotal) if self.dense.ntotal else np.zeros((0, self.manifest.dim), np.float32)

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


def save(index: Index, index_dir: Path) -> str:
    """Write a new build beside the old one, then switch CURRENT to it atomically."""
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
    _fsync_tree(tmp)
    os.replace(tmp, index_dir / name)
    pointer_tmp = index_dir / f".{POINTER}.{name}"
    pointer_tmp.write_text(name + "\n")
    _fsync(pointer_tmp)
    os.replace(pointer_tmp, index_dir / POINTER)  # the commit point
    index.version = name
    _prune(index_dir, keep={name})
    return name


def load(index_dir: Path) -> Index:
    import faiss

    index_dir = Path(index_dir)
    name = current_version(index_dir)
    if name is None:
        raise IndexNotFoundError(f"no index in {index_dir}; build one with `rag ingest`")
    folder = index_dir / name
    try:
        manifest = Manifest(**json.loads((folder / "manifest.json").read_text()))
        if manifest.format != FORMAT:
            raise IndexCorruptError(f"index format {manifest.format!r} is not {FORMAT!r}; rebuild with `rag ingest`")
        documents = {d.doc_id: d for d in map(_doc_from_json, _read_lines(folder / "documents.jsonl"))}
        chunks = [Chunk(**row) for row in _read_lines(folder / "chunks.jsonl")]
        dense = faiss.read_index(str(folder / "dense.faiss"))
        lexical = LexicalIndex.load(folder / "bm25")
    except IndexCorruptError:
        raise
    except Exception as exc:  # any damage at all means "rebuild", said plainly
        raise IndexCorruptError(f"index in {index_dir} is unreadable ({type(exc).__name__}: {exc}); "
                                "rebuild it with `rag ingest`") from None
    return Index(manifest, documents, chunks, dense, lexical, version=name)


def _prune(index_dir: Path, keep: set[str]) -> None:
    """Drop old builds, keeping the newest previous one for readers still loading it."""
    builds = sorted(p for p in index_dir.glob("build-*") if p.name not in keep)
    for old in builds[:-1]:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temp(index_dir: Path) -> None:
    """Leftovers of a killed ingest; only call while holding the ingest lock."""
    for tmp in Path(index_dir).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in Path(index_dir).glob(f".{POINTER}.*"):
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
