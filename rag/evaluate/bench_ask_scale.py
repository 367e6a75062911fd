"""A whole `rag ask` on a 1M-chunk index: the real pipeline (safety, embedding, IVF + BM25
search, first stage, reader) over an index topped up from a real build.

    python -m rag.evaluate.bench_ask_scale --from-index .cache/seiu503-index --size 1000000

How the index is made (the same top-up as `rag bench-scale`): the real build's chunks
come first; copy k of chunk i is a new row of the same document, with chunk vector
``normalise(x_i + N(0, (0.3/sqrt(dim))^2))`` and the same sentence rows (so sentence
vectors are not duplicated: a copy quotes the sentences of its original). BM25 indexes
the real chunks' tokens repeated to the size, and the idf table of the real chunks is
that of the copies too. The index is then saved and loaded through the app's own code
(memory-mapped), and the eval set's questions are asked one at a time.

It prints build and load seconds, peak RSS, and `ask` p50/p95 with the time split into
embed / retrieve / answer. Copies make BM25's posting lists longer than a real corpus of
this size would (every term of the real chunks occurs size/real times), so lexical
search time here is an upper bound.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import ROOT, Settings, offline_environment


def topped_up_index(source, size: int, seed: int = 0):
    """An Index of ``size`` rows: the real ones, then perturbed copies (see the module docstring)."""
    import bm25s

    from ..ingest.index import Index, SentenceTable, build_dense, dense_spec
    from ..ingest.lexical import LexicalIndex, tokenize
    from .bench_scale import NOISE

    n = len(source.chunks)
    if size < n:
        raise ValueError(f"--size must be at least the real build's {n} chunks")
    rng = np.random.default_rng(seed)
    chunks, base = list(source.chunks), np.arange(size) % n
    # Chunk ids keep "<doc>:<n>", n = the row's place among its document's rows: Index.row_of
    # finds a chunk by that number.
    seen = Counter(c.doc_id for c in source.chunks)
    for row in range(n, size):
        c = source.chunks[base[row]]
        chunks.append(replace(c, chunk_id=f"{c.doc_id}:{seen[c.doc_id]}"))
        seen[c.doc_id] += 1
    real = np.asarray(source.chunk_vectors, np.float32)
    vectors = np.empty((size, real.shape[1]), np.float16)
    vectors[:n] = real
    sigma = NOISE / np.sqrt(real.shape[1])
    for start in range(n, size, 65536):
        stop = min(start + 65536, size)
        block = real[base[start:stop]] + rng.standard_normal((stop - start, real.shape[1]), dtype=np.float32) * sigma
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    t = source.sentences
    offsets = np.concatenate([[0], np.cumsum(np.diff(t.offsets)[base])]).astype(np.int64)
    per_row = [np.asarray(t.ids[t.offsets[i]:t.offsets[i + 1]]) for i in range(n)]
    ids = np.concatenate([per_row[i] for i in base]).astype(np.int64)
    sentences = SentenceTable(np.asarray(t.spans), np.asarray(t.vectors), offsets, ids)
    spec = dense_spec(size)
    dense = build_dense(vectors, spec)
    tokens = [tokenize(f"{c.title}\n{c.section}\n{c.text}") or [""] for c in source.chunks]
    bm25 = bm25s.BM25(k1=0.9, b=0.4)
    bm25.index([tokens[i] for i in base], show_progress=False)
    manifest = replace(source.manifest, chunks=size, dense=spec)
    return Index(manifest, source.documents, chunks, dense, LexicalIndex(bm25), vectors, sentences, source.idf,
                 source.words)


def main() -> int:
    offline_environment()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-index", type=Path, required=True, help="an index folder built by `rag ingest`")
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "seiu503.jsonl")
    ap.add_argument("--work", type=Path, help="where the big index is written (default: a temporary folder)")
    args = ap.parse_args()
    from ..ingest import index as index_store
    from ..pipeline import Pipeline
    from .bench_scale import peak_rss_mb
    from .evaluation import load_questions

    source = index_store.load(args.from_index)
    started = time.perf_counter()
    big = topped_up_index(source, args.size)
    build_s = time.perf_counter() - started
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ask-scale-"))
    t = time.perf_counter()
    index_store.save(big, work)
    save_s = time.perf_counter() - t
    del big, source
    t = time.perf_counter()
    pipeline = Pipeline(Settings.from_env(index_dir=work))
    load_s = time.perf_counter() - t
    questions = [q for q in load_questions(args.questions) if not q.history]
    pipeline.ask(questions[0].question)  # warm-up: first-call allocations, page faults of the maps
    total, parts = [], {"embed": [], "retrieve": [], "answer": []}
    for q in questions:
        t = time.perf_counter()
        answer = pipeline.ask(q.question)
        total.append((time.perf_counter() - t) * 1000)
        for k in parts:
            parts[k].append(answer.timings_ms.get(k, 0.0))
    dense = pipeline.index.manifest.dense
    print(f"index: {args.size:,} chunks ({len(pipeline.index.documents)} documents, dense {json.dumps(dense)}); "
          f"built in {build_s:.0f} s, saved in {save_s:.0f} s, loaded in {load_s:.1f} s; peak RSS {peak_rss_mb():,.0f} MB")
    print(f"rag ask over {len(questions)} questions of {args.questions.name}: "
          f"p50 {np.percentile(total, 50):.0f} ms, p95 {np.percentile(total, 95):.0f} ms")
    print("  " + ", ".join(f"{k} p50 {np.percentile(v, 50):.1f} ms" for k, v in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
