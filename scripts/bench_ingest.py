"""Ingest and ask speed, printed as figures: `python scripts/bench_ingest.py [--scifact-limit N]`.

Compares our whole ingest (load, chunk, split sentences, embed, build, save)
with calling the model's own ``encode`` on the very same texts it embedded (the
chunks and, since index format v2, their sentences), and prints the ratio;
then splits `ask` latency into its stages.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rag import index as index_store
from rag.bench_scale import shared_dir
from rag.config import ROOT, Settings, offline_environment
from rag.embedding import load_embedder
from rag.ingest import build, ingest
from rag.pipeline import Pipeline
from rag.types import Document


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


def measure(name: str, settings: Settings, run) -> None:
    started = time.perf_counter()
    report = run()
    seconds = time.perf_counter() - started
    index = index_store.load(settings.index_dir)
    chunks = [c.text for c in index.chunks]
    spans = np.asarray(index.sentences.spans)
    row_doc = {}  # a sentence's document: that of any chunk owning it
    for row, c in enumerate(index.chunks):
        for j, _, _ in index.sentences_of(row):
            row_doc.setdefault(j, c.doc_id)
    sentences = [index.documents[row_doc[j]].text[a:b] for j, (a, b) in enumerate(spans.tolist())]
    texts = chunks + sentences
    model = load_embedder(settings.model).model
    t = time.perf_counter()
    model.encode(texts, batch_size=settings.batch_size, normalize_embeddings=True, show_progress_bar=False)
    direct = time.perf_counter() - t
    print(f"{name}: {report.summary()}")
    print(f"  ingest {seconds:.1f}s end to end = {len(texts) / seconds:.1f} texts/s ({len(chunks)} chunks + "
          f"{len(sentences)} sentences); model.encode alone on the same texts: {direct:.1f}s = "
          f"{len(texts) / direct:.1f} texts/s; ratio {direct / seconds:.2f}x (target >= 0.9x)")


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
    parser.add_argument("--scifact", type=Path, default=shared_dir() / "datasets" / "scifact")
    parser.add_argument("--scifact-limit", type=int, default=1000)
    args = parser.parse_args()
    questions = [json.loads(line)["question"] for line in (ROOT / "eval" / "questions.jsonl").open()]
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings.from_env(index_dir=Path(tmp) / "shipped")
        load_embedder(s.model)  # model loading is reported apart from ingest
        measure("shipped corpus", s, lambda: ingest([s.corpus_dir], s, progress=False))
        t = time.perf_counter()
        again = ingest([s.corpus_dir], s, progress=False)
        print(f"  re-ingest unchanged: {time.perf_counter() - t:.2f}s, {again.embedded} chunks embedded")
        ask_latency(s, questions, "shipped corpus")
        corpus = args.scifact / "corpus.jsonl"
        if corpus.exists():
            s2 = Settings.from_env(index_dir=Path(tmp) / "scifact")
            docs = scifact_documents(corpus, args.scifact_limit)
            measure(f"scifact ({len(docs)} abstracts)", s2, lambda: build(docs, s2, progress=False))
            queries = [json.loads(line)["text"] for line in (args.scifact / "queries.jsonl").open()][:100]
            ask_latency(s2, queries, "scifact")


if __name__ == "__main__":
    main()
