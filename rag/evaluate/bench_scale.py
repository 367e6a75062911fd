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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import ROOT, Settings, shared_dir

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
    from ..ingest.chunking import chunk_document
    from ..ingest.embedding import load_embedder, tiktoken_counter
    from ..ingest.loaders import Skipped, walk_corpus
    from .benchmark import load_beir

    documents, queries, _ = load_beir(shared_dir("datasets", "scifact"))
    corpora = shared_dir("corpora")
    if corpora.is_dir():
        documents += [item.document for item in walk_corpus(corpora) if not isinstance(item, Skipped)]
    embedder = load_embedder(settings.model, settings.precision)
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


def vectors_from_builds(builds: list[Path], settings: Settings, queries: int, cache: Path) -> Source:
    """Real chunk vectors read from existing index build folders (any format), plus embedded SciFact queries.

    For a machine too busy to embed all of SciFact: the chunks are whatever
    those builds hold, and the queries are the first ``queries`` SciFact queries.
    """
    import faiss

    from ..ingest.embedding import load_embedder
    from .benchmark import load_beir

    texts, parts = [], []
    for build in builds:
        rows = [json.loads(line) for line in (Path(build) / "chunks.jsonl").open()]
        dense = faiss.read_index(str(Path(build) / "dense.faiss"))
        vectors = dense.reconstruct_n(0, dense.ntotal)
        seen = set(texts)
        keep = [i for i, r in enumerate(rows) if r["text"] not in seen]
        texts += [rows[i]["text"] for i in keep]
        parts.append(vectors[keep])
    _, query_map, qrels = load_beir(shared_dir("datasets", "scifact"))
    query_texts = [query_map[q] for q in qrels][:queries]
    query_vectors = _embed(load_embedder(settings.model, settings.precision), query_texts, settings.batch_size, False)
    source = Source(texts, np.concatenate(parts).astype(np.float32), query_vectors, query_texts)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "texts.json").write_text(json.dumps(source.texts))
    np.save(cache / "vectors.npy", source.vectors)
    np.save(cache / "queries.npy", source.queries)
    (cache / "queries.json").write_text(json.dumps(source.query_texts))
    return source


def _embed(embedder, texts, batch_size, progress) -> np.ndarray:
    import sys

    from tqdm import tqdm

    from ..ingest.embedding import embed_all

    with tqdm(total=len(texts), unit="text", unit_scale=True, desc=f"embedding {len(texts)} texts",
              disable=not progress, file=sys.stderr) as bar:
        return embed_all(embedder, texts, batch_size, bar.update)


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


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent into a spawned child, VmHWM starts afresh at exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


DEFAULT_SIZES = (100_000, 1_000_000)
DENSE_TYPES = ("flat", "ivf-sq8", "hnsw-sq8")
NPROBES = (8, 16, 32, 48, 64)  # IVF lists searched, swept
EF_SEARCH = (32, 64, 128)  # HNSW candidate list, swept


@dataclass(frozen=True)
class Row:
    size: int
    system: str  # "flat", "ivf-sq8 nprobe=32", "bm25"...
    build_s: float
    peak_rss_mb: float  # of the process that built it (input vectors included)
    bytes_per_chunk: float  # index on disk (memory-mapped when served)
    p50_ms: float
    p95_ms: float
    recall_at_10: float | None  # against exact search; None for BM25

    def line(self) -> str:
        recall = "" if self.recall_at_10 is None else f"{self.recall_at_10:.3f}"
        return (f"| {self.size:>9,} | {self.system:<22} | {self.build_s:>8.1f} | {self.peak_rss_mb:>8,.0f} | "
                f"{self.bytes_per_chunk:>9,.0f} | {self.p50_ms:>7.2f} | {self.p95_ms:>7.2f} | {recall:>9} |")


HEADER = ("| chunks    | system                 | build s  | peak RSS MB | bytes/chunk | p50 ms | p95 ms | recall@10 |\n"
          "|----------:|:-----------------------|---------:|---------:|----------:|--------:|--------:|----------:|")


def run(settings: Settings, sizes=DEFAULT_SIZES, types=DENSE_TYPES, queries: int = 200, bm25: bool = True,
        work: Path | None = None, out=print, cache: Path = CACHE) -> list[Row]:
    """Build and measure every index type at every size, each in its own process (clean peak RSS)."""
    import multiprocessing as mp
    import tempfile

    source = real_vectors(settings, cache)
    out(f"real vectors: {len(source.texts):,} chunks, {len(source.query_texts)} "
        f"SciFact queries; top-up copies: normalise(x + N(0, ({NOISE}/sqrt(dim))^2)).")
    rows: list[Row] = []
    work = Path(work or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    out(HEADER)
    for size in sizes:
        vectors = topped_up(source.vectors, size)
        np.save(work / "vectors.npy", vectors)
        q = source.queries[:queries]
        np.save(work / "queries.npy", q)
        del vectors
        for system in types:
            for row in _in_child(ctx, _measure_dense, work, system, size):
                rows.append(row)
                out(row.line())
        if bm25:
            for row in _in_child(ctx, _measure_bm25, work, source.texts, source.query_texts[:queries], size):
                rows.append(row)
                out(row.line())
    return rows


def _in_child(ctx, target, *args) -> list[Row]:
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, target, *args))
    proc.start()
    result = queue.get()
    proc.join()
    if isinstance(result, str):
        raise RuntimeError(result)
    return result


def _child(queue, target, *args) -> None:
    try:
        queue.put(target(*args))
    except Exception as exc:  # reported by the parent
        import traceback

        queue.put(f"{target.__name__} failed: {exc}\n{traceback.format_exc()}")


def _timed_search(search, queries) -> tuple[list[np.ndarray], float, float]:
    search(queries[0])  # warm-up
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t) * 1000)
    return found, float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _recall(found: list[np.ndarray], exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(e[:k].tolist())) / k for f, e in zip(found, exact)]))


def _measure_dense(work: Path, system: str, size: int) -> list[Row]:
    import faiss

    from ..ingest.index import build_dense, dense_spec

    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    queries = np.load(work / "queries.npy")
    if system == "flat":
        spec = {"type": "flat"}
    elif system == "ivf-sq8":
        spec = dense_spec(size, exact_max=0)
    else:
        spec = {"type": system}
    started = time.perf_counter()
    if system == "hnsw-sq8":
        dense = faiss.index_factory(vectors.shape[1], "HNSW32,SQ8", faiss.METRIC_INNER_PRODUCT)
        dense.train(np.asarray(vectors[:min(size, 100_000)], np.float32))
        for start in range(0, size, 100_000):
            dense.add(np.asarray(vectors[start:start + 100_000], np.float32))
    else:
        dense = build_dense(np.asarray(vectors, np.float32) if system == "flat" else vectors, spec)
    build_s = time.perf_counter() - started
    path = work / f"{system}.faiss"
    faiss.write_index(dense, str(path))
    rss = peak_rss_mb()
    del dense
    per_chunk = path.stat().st_size / size
    served = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    faiss.omp_set_num_threads(1)  # one query at a time, one thread, as the app searches
    search = lambda v: served.search(v.reshape(1, -1), 10)[1][0]
    if system == "flat":
        exact, p50, p95 = _timed_search(search, queries)
        np.save(work / "exact.npy", np.stack(exact))
        return [Row(size, "flat (exact, float32)", build_s, rss, per_chunk, p50, p95, 1.0)]
    exact = np.load(work / "exact.npy")
    rows = []
    if system == "ivf-sq8":
        ivf = faiss.extract_index_ivf(served)
        for nprobe in NPROBES:
            ivf.nprobe = nprobe
            found, p50, p95 = _timed_search(search, queries)
            rows.append(Row(size, f"IVF{ivf.nlist},SQ8 nprobe={nprobe}", build_s, rss, per_chunk, p50, p95,
                            _recall(found, exact)))
    else:
        for ef in EF_SEARCH:
            served.hnsw.efSearch = ef
            found, p50, p95 = _timed_search(search, queries)
            rows.append(Row(size, f"HNSW32,SQ8 ef={ef}", build_s, rss, per_chunk, p50, p95, _recall(found, exact)))
    return rows


def _measure_bm25(work: Path, texts: list[str], query_texts: list[str], size: int) -> list[Row]:
    import bm25s

    from ..ingest.lexical import LexicalIndex, tokenize

    started = time.perf_counter()
    tokens = [tokenize(t) or [""] for t in texts]  # real chunk texts, repeated to the size
    corpus = [tokens[i % len(tokens)] for i in range(size)]
    bm25 = bm25s.BM25(k1=0.9, b=0.4)
    bm25.index(corpus, show_progress=False)
    build_s = time.perf_counter() - started
    del corpus
    folder = work / "bm25"
    LexicalIndex(bm25).save(folder)
    rss = peak_rss_mb()
    del bm25
    per_chunk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / size
    lexical = LexicalIndex.load(folder, mmap=True)
    _, p50, p95 = _timed_search(lambda q: lexical.search(q, 50), query_texts)
    return [Row(size, "BM25 (bm25s, mmap)", build_s, rss, per_chunk, p50, p95, None)]


def main(args, settings: Settings) -> int:
    sizes = tuple(args.sizes or DEFAULT_SIZES)
    types = tuple(args.types.split(",")) if args.types else DENSE_TYPES
    unknown = set(types) - set(DENSE_TYPES)
    if unknown or any(n < 1000 for n in sizes):
        raise ValueError(f"--types must be among {', '.join(DENSE_TYPES)} and --sizes >= 1000")
    cache = CACHE
    if args.from_builds:
        cache = Path(args.work or "/tmp") / "bench-scale-source"
        if not (cache / "queries.json").exists():
            vectors_from_builds(args.from_builds, settings, args.queries, cache)
    rows = run(settings, sizes, types, args.queries, bm25=not args.no_bm25, work=args.work, cache=cache)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":  # warm the vector cache: python -m rag.evaluate.bench_scale
    from ..config import offline_environment

    offline_environment()
    source = real_vectors(Settings.from_env())
    print(f"{len(source.texts)} real chunks, {len(source.query_texts)} queries cached in {CACHE}")
