"""Ingest and ask speed, printed as figures: `python -m rag.evaluate.bench_ingest [--scifact-limit N]`.

Times our whole ingest (chunk, split sentences, embed, build BM25 and FAISS, save) in
each way of making chunk vectors (``RAG_CHUNK_VECTORS``: "pooled", one pass over the
answer sentences; "encoded", chunks and sentences each encoded), against calling the
model's own ``encode`` on the very same chunk texts and nothing else, and prints the
ratio (the issue's target: >= 0.9x); then splits `ask` latency into its stages.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..config import ROOT, Settings, offline_environment, shared_dir
from ..ingest import index as index_store
from ..ingest.embedding import load_embedder
from ..ingest.run import build, embedding_text, ingest
from ..pipeline import Pipeline
from ..types import Document


def scifact_documents(path: Path, limit: int | None) -> list[Document]:
    docs = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            text = f"{row['title']}\n{row['text']}"
            docs.append(Document(row["_id"], row["title"], text, hashlib.sha256(text.encode()).hexdigest()))
            if limit and len(docs) >= limit:
                break
    return docs


def measure(name: str, settings: Settings, run, modes: list[str], rounds: int) -> None:
    """Each round: one fresh ingest per mode, then model.encode on the chunk texts; the rounds
    interleave, so a slow spell of this shared machine hits every figure alike. Medians."""
    model = load_embedder(settings.model, settings.precision).model
    model.encode(["warm-up"] * 64, batch_size=settings.batch_size)  # first calls pay for lazy set-up
    print(f"{name}:")
    seconds: dict[str, list[float]] = {mode: [] for mode in ["model.encode", *modes]}
    texts: list[str] = []
    for n in range(rounds):
        for mode in modes:
            s = replace(settings, chunk_vectors=mode, index_dir=settings.index_dir / f"{mode}-{n}")
            started = time.perf_counter()
            report = run(s)
            seconds[mode].append(time.perf_counter() - started)
            print(f"  round {n + 1}, {mode}: {report.summary()}; {report.sentences_embedded} sentences", flush=True)
        texts = texts or [embedding_text(c) for c in index_store.load(settings.index_dir / f"{modes[0]}-0").chunks]
        t = time.perf_counter()
        model.encode(texts, batch_size=settings.batch_size, normalize_embeddings=True, show_progress_bar=False)
        seconds["model.encode"].append(time.perf_counter() - t)
    direct = statistics.median(seconds["model.encode"])
    print(f"  model.encode alone on the same {len(texts)} chunk texts: median {direct:.1f}s = "
          f"{len(texts) / direct:.1f} chunks/s (runs: {', '.join(f'{x:.1f}' for x in seconds['model.encode'])})")
    for mode in modes:
        took = statistics.median(seconds[mode])
        print(f"  {mode}: ingest median {took:.1f}s end to end = {len(texts) / took:.1f} chunks/s; ratio to "
              f"model.encode {direct / took:.2f}x (target >= 0.9x) (runs: {', '.join(f'{x:.1f}' for x in seconds[mode])})")


def ask_latency(settings: Settings, questions: list[str], label: str) -> None:
    pipe = Pipeline(settings)
    pipe.ask(questions[0])  # warm-up: first call pays for lazy imports
    stages: dict[str, list[float]] = {}
    for q in questions:
        for stage, ms in pipe.ask(q).timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    parts = ", ".join(f"{s} p50 {statistics.median(v):.1f} ms" for s, v in stages.items())
    print(f"  ask latency on {label} ({len(questions)} questions): {parts}")


def main() -> None:
    offline_environment()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scifact", type=Path, default=shared_dir("datasets", "scifact"))
    parser.add_argument("--scifact-limit", type=int, default=1000)
    parser.add_argument("--modes", default="pooled,encoded", help="RAG_CHUNK_VECTORS values to time")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are printed")
    args = parser.parse_args()
    questions = [json.loads(line)["question"] for line in (ROOT / "eval" / "questions.jsonl").open()]
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings.from_env(index_dir=Path(tmp) / "shipped")
        load_embedder(s.model, s.precision)  # model loading is reported apart from ingest
        modes = args.modes.split(",")
        measure("shipped corpus", s, lambda m: ingest([m.corpus_dir], m, progress=False), modes,
                args.rounds)
        s = replace(s, chunk_vectors=modes[0], index_dir=s.index_dir / f"{modes[0]}-0")
        t = time.perf_counter()
        again = ingest([s.corpus_dir], s, progress=False)
        print(f"  re-ingest unchanged: {time.perf_counter() - t:.2f}s, {again.embedded} chunks embedded")
        ask_latency(s, questions, "shipped corpus")
        corpus = args.scifact / "corpus.jsonl"
        if corpus.exists():
            s2 = Settings.from_env(index_dir=Path(tmp) / "scifact")
            docs = scifact_documents(corpus, args.scifact_limit)
            measure(f"scifact ({len(docs)} abstracts)", s2, lambda m: build(docs, m, progress=False), modes,
                    args.rounds)
            s2 = replace(s2, chunk_vectors=modes[0], index_dir=s2.index_dir / f"{modes[0]}-0")
            queries = [json.loads(line)["text"] for line in (args.scifact / "queries.jsonl").open()][:100]
            ask_latency(s2, queries, "scifact")


if __name__ == "__main__":
    main()
