"""`rag bench-scale`: how the dense and lexical indexes behave at 100k and 1M chunks.

Vectors are real all-MiniLM-L6-v2 embeddings of real chunks: every BEIR
SciFact abstract and every document under ../shared/corpora (union contracts,
SEIU 503 pages), chunked by the app's own chunker and embedded once into a
cache (``.cache/bench-scale/``). Real chunks run out near 15k, so the rest of
each size is topped up with perturbed copies: a copy of real vector ``x`` is
``normalise(x + sigma * g)``, ``g`` standard normal per dimension, with
``sigma = NOISE / sqrt(dim)``, which puts a copy at cosine ~0.96 from its
original (the spread of paraphrases, not duplicates). Queries are SciFact's own
queries, embedded by the same model.

For each size it prints, per index type: build seconds, peak RSS, bytes per
chunk on disk, search p50/p95 (one query at a time, as the app searches), and
recall@10 against exact search. BM25 (bm25s) is measured on the real chunk
texts repeated to the same size.
"""
from __future__ import annotations

import json
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import ROOT, Settings

NOISE = 0.3  # per-vector noise norm for top-up copies; see the module docstring
CACHE = ROOT / ".cache" / "bench-scale"


@dataclass(frozen=True)
class Source:
    """Real chunk texts, their vectors, and query vectors."""

    texts: list[str]
    vectors: np.ndarray  # float32, unit rows
    queries: np.ndarray  # float32, unit rows
    query_texts: list[str]


def real_vectors(settings: Settings, cache: Path = CACHE, progress: bool = True) -> Source:
    """Chunk and embed SciFact plus the shared union corpora once; later runs read the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    files = [cache / n for n in ("texts.json", "vectors.npy", "queries.npy", "queries.json")]
    if all(f.exists() for f in files):
        return Source(json.loads(files[0].read_text()), np.load(files[1]), np.load(files[2]),
                      json.loads(files[3].read_text()))
    from .benchmark import load_beir
    from .chunking import chunk_document
    from .embedding import embed_all, load_embedder, tiktoken_counter
    from .loaders import Skipped, walk_corpus

    shared = shared_dir()
    documents, queries, _ = load_beir(shared / "datasets" / "scifact")
    corpora = shared / "corpora"
    if corpora.is_dir():
        documents += [item.document for item in walk_corpus(corpora) if not isinstance(item, Skipped)]
    embedder = load_embedder(settings.model)
    count = tiktoken_counter(settings.encoding)
    texts = [c.text for d in documents for c in chunk_document(
        d, count, settings.chunk_tokens, settings.chunk_overlap_tokens, hard_limit=embedder.overflow)]
    query_texts = list(queries.values())
    vectors = _embed(embedder, texts, settings.batch_size, progress)
    query_vectors = _embed(embedder, query_texts, settings.batch_size, False)
    files[0].write_text(json.dumps(texts))
    np.save(files[1], vectors)
    np.save(files[2], query_vectors)
    files[3].write_text(json.dumps(query_texts))
    return Source(texts, vectors, query_vectors, query_texts)


def _embed(embedder, texts, batch_size, progress) -> np.ndarray:
    from .embedding import embed_all
    from .ingest import _progress_bar

    with _progress_bar(len(texts), 0, progress) as tick:
        return embed_all(embedder, texts, batch_size, tick)


def topped_up(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` unit float32 rows: the real ones first, then perturbed copies of them."""
    rng = np.random.default_rng(seed)
    n, dim = vectors.shape
    out = np.empty((size, dim), np.float32)
    out[:min(n, size)] = vectors[:size]
    sigma = NOISE / np.sqrt(dim)
    for start in range(n, size, 65536):
        stop = min(start + 65536, size)
        base = vectors[rng.integers(0, n, stop - start)]
        block = base + rng.standard_normal(base.shape, dtype=np.float32) * sigma
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def shared_dir() -> Path:
    """../shared beside the checkout (or beside its worktree folder)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared").is_dir():
            return base / "shared"
    return ROOT.parent / "shared"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":  # warm the vector cache: python -m rag.bench_scale
    from .config import offline_environment

    offline_environment()
    source = real_vectors(Settings.from_env())
    print(f"{len(source.texts)} real chunks, {len(source.query_texts)} queries cached in {CACHE}")
