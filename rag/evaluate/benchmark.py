"""BEIR retrieval benchmark: dense, BM25 and the app's hybrid, scored by nDCG@10 and recall@100.

The dataset is indexed with the app's own ``ingest.build`` into a cache folder,
so the incremental index doubles as the embedding cache: a second run embeds
nothing. Queries are split into a dev half and a held-out half by hashing their
ids (``rag.train.splits.query_split``), so fusion settings tuned on dev can be reported
on queries they never saw.

    rag bench-retrieval DATASET [--limit N] [--json]
    python -m rag.evaluate.benchmark DATASET [--limit N] [--json]   (the same run)
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..answer.retrieval import Retriever
from ..config import Settings, offline_environment
from ..errors import RagError
from ..ingest import index as index_store
from ..ingest.embedding import embed_all, load_embedder
from ..ingest.run import build
from ..train.splits import HELDOUT, query_split
from ..types import Document

SPLITS = ("dev", HELDOUT, "all")
# Chunk candidates per retriever: SciFact abstracts make two or three chunks
# each, so 300 chunks still leave at least 100 distinct documents for recall@100.
DEPTH = 300
# Published SciFact nDCG@10 (BEIR paper; sentence-transformers' model card for MiniLM).
PUBLISHED = {"dense": "0.645", "bm25": "0.665 multifield / 0.679 flat", "hybrid": ""}

Qrels = dict[str, dict[str, int]]  # query id -> doc id -> graded relevance


@dataclass(frozen=True)
class Metrics:
    ndcg_at_10: float
    recall_at_100: float
    queries: int


@dataclass(frozen=True)
class BenchResult:
    dataset: str
    documents: int
    queries: int
    note: str  # what --limit left out, if anything
    fusion: str
    dense_weight: float
    candidates: int  # chunks asked of each retriever
    systems: dict[str, dict[str, Metrics]]  # system -> split -> metrics
    embedded: int  # chunks embedded this run; 0 when the cache was complete
    index_seconds: float
    search_seconds: float  # loading the model, embedding the queries and searching

    def to_json(self) -> dict:
        return asdict(self)


def run_benchmark(dataset_dir: Path, settings: Settings, limit: int | None = None,
                  progress: bool | None = None) -> BenchResult:
    """Index a BEIR dataset (reusing the cache), then score dense, BM25 and hybrid retrieval.

    Args:
        dataset_dir: folder with corpus.jsonl, queries.jsonl and qrels/test.tsv.
        settings: model, chunking and fusion settings; the index goes under data_dir/bench.
        limit: keep only the first ``limit`` corpus documents, and only the queries
            whose relevant documents are all among them.
        progress: show an embedding progress bar (default: when stderr is a terminal).
    """
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    dataset_dir = Path(dataset_dir)
    documents, queries, qrels = load_beir(dataset_dir)
    total_docs, total_queries = len(documents), len(qrels)
    documents, qrels = restrict(documents, qrels, limit)
    if not qrels:
        raise RagError(f"no test query has all its relevant documents within the first {limit}; raise --limit")
    note = (f"--limit {limit}: first {len(documents)} of {total_docs} documents, {len(qrels)} of "
            f"{total_queries} queries (those whose relevant documents are all kept); "
            "not comparable with published figures") if limit else ""

    cache = Path(settings.data_dir) / "bench" / (dataset_dir.name + (f"-limit{limit}" if limit else ""))
    report = build(documents, replace(settings, index_dir=cache), progress=progress)
    started = time.perf_counter()
    runs = _retrieve(index_store.load(cache), settings, {q: queries[q] for q in qrels})
    systems = {name: _score(ranked, qrels) for name, ranked in runs.items()}
    return BenchResult(
        dataset=dataset_dir.name, documents=len(documents), queries=len(qrels), note=note,
        fusion=settings.fusion, dense_weight=settings.dense_weight, candidates=_depth(settings),
        systems=systems, embedded=report.embedded, index_seconds=round(report.seconds, 2),
        search_seconds=round(time.perf_counter() - started, 2),
    )


def load_beir(dataset_dir: Path) -> tuple[list[Document], dict[str, str], Qrels]:
    """The corpus as Documents, the query texts, and the test judgements of a BEIR folder."""
    paths = [dataset_dir / "corpus.jsonl", dataset_dir / "queries.jsonl", dataset_dir / "qrels" / "test.tsv"]
    for path in paths:
        if not path.is_file():
            raise RagError(f"{path} not found: a BEIR dataset folder holds corpus.jsonl, "
                           "queries.jsonl and qrels/test.tsv")
    documents = [_document(row) for row in _jsonl(paths[0])]
    queries = {row["_id"]: row["text"] for row in _jsonl(paths[1])}
    qrels: Qrels = {}
    with paths[2].open(encoding="utf-8") as f:
        for query_id, doc_id, score in list(csv.reader(f, delimiter="\t"))[1:]:
            if int(score) > 0:  # BEIR's qrels may list judged-irrelevant pairs with 0
                qrels.setdefault(query_id, {})[doc_id] = int(score)
    return documents, queries, {q: rel for q, rel in qrels.items() if q in queries}


def _document(row: dict) -> Document:
    # Title first, as sentence-transformers embeds BEIR corpora: it is the densest summary.
    title, body = row.get("title", "").strip(), row.get("text", "").strip()
    text = f"{title}\n{body}" if title else body
    return Document(doc_id=str(row["_id"]), title=title, text=text,
                    content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest())


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def restrict(documents: list[Document], qrels: Qrels, limit: int | None) -> tuple[list[Document], Qrels]:
    """The first limit documents, and the queries that can still find every relevant one.

    Dropping queries rather than adding their relevant documents keeps the
    corpus a plain prefix, so the task does not get easier as it gets smaller.
    """
    if limit is None:
        return documents, qrels
    kept = documents[:limit]
    ids = {d.doc_id for d in kept}
    return kept, {q: rel for q, rel in qrels.items() if set(rel) <= ids}


def _depth(settings: Settings) -> int:
    return max(settings.candidates, DEPTH)


def _retrieve(index: index_store.Index, settings: Settings, queries: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """Per system, per query id: document ids best first, each at its best chunk's rank."""
    embedder = load_embedder(settings.model, settings.precision)
    retriever = Retriever(index, embedder, candidates=_depth(settings),
                          dense_weight=settings.dense_weight, fusion=settings.fusion)
    vectors = embed_all(embedder, list(queries.values()), settings.batch_size)
    runs: dict[str, dict[str, list[str]]] = {"dense": {}, "bm25": {}, "hybrid": {}}
    doc_of = [c.doc_id for c in index.chunks]
    for (query_id, text), vector in zip(queries.items(), vectors):
        dense = retriever.dense(vector, retriever.candidates)
        lexical = index.lexical.search(text, retriever.candidates)
        hybrid = retriever.search(text, top_k=2 * retriever.candidates, vector=vector)
        runs["dense"][query_id] = doc_ranking(doc_of[row] for row, _ in dense)
        runs["bm25"][query_id] = doc_ranking(doc_of[row] for row, _ in lexical)
        runs["hybrid"][query_id] = doc_ranking(hit.chunk.doc_id for hit in hybrid)
    return runs


def doc_ranking(doc_ids: Iterable[str]) -> list[str]:
    """Chunk hits to document ids: a document ranks where its best chunk does."""
    return list(dict.fromkeys(doc_ids))


def _score(ranked: dict[str, list[str]], qrels: Qrels) -> dict[str, Metrics]:
    """Mean nDCG@10 and recall@100 over each split's queries."""
    pairs: dict[str, list[tuple[float, float]]] = {s: [] for s in SPLITS}
    for query_id, relevant in qrels.items():
        ranking = ranked.get(query_id, [])
        pair = (ndcg_at(ranking, relevant, 10), recall_at(ranking, relevant, 100))
        pairs[query_split(query_id)].append(pair)
        pairs["all"].append(pair)
    return {split: _mean(rows) for split, rows in pairs.items()}


def _mean(rows: list[tuple[float, float]]) -> Metrics:
    if not rows:
        return Metrics(0.0, 0.0, 0)
    ndcg, recall = np.mean(rows, axis=0)
    return Metrics(round(float(ndcg), 4), round(float(recall), 4), len(rows))


def ndcg_at(ranking: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k as trec_eval computes it (BEIR uses pytrec_eval): linear gains, log2(rank + 1) discount."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    gains = [relevant.get(doc, 0) for doc in ranking[:k]]
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = float(np.dot(ideal, discount[:len(ideal)]))
    return float(np.dot(gains, discount[:len(gains)])) / best if best > 0 else 0.0


def recall_at(ranking: list[str], relevant: dict[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the top k."""
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    return len(wanted & set(ranking[:k])) / len(wanted) if wanted else 0.0


def format_table(result: BenchResult) -> str:
    """A side-by-side table of the measured figures and the published ones."""
    sizes = {s: result.systems["dense"][s].queries for s in SPLITS}
    labels = {"dense": "dense (all-MiniLM-L6-v2)", "bm25": "BM25",
              "hybrid": f"hybrid ({result.fusion}, dense weight {result.dense_weight:g})"}
    width = max(len(label) for label in labels.values())
    head = " ".join(f"{s:>8}" for s in SPLITS)
    lines = [
        f"BEIR {result.dataset}: {result.documents} documents, {result.queries} test queries "
        f"(dev {sizes['dev']}, held-out {sizes[HELDOUT]}); {result.candidates} chunks per retriever",
        "",
        f"{'':{width}}   {'nDCG@10':^26}   {'recall@100':^26}   published nDCG@10",
        f"{'system':{width}}   {head}   {head}",
    ]
    for name, label in labels.items():
        m = result.systems[name]
        ndcg = " ".join(f"{m[s].ndcg_at_10:8.3f}" for s in SPLITS)
        recall = " ".join(f"{m[s].recall_at_100:8.3f}" for s in SPLITS)
        lines.append(f"{label:{width}}   {ndcg}   {recall}   {PUBLISHED[name]}")
    if result.note:
        lines += ["", result.note]
    lines += ["", f"index: {result.embedded} chunks embedded in {result.index_seconds:.1f}s; "
                  f"queries: embedded and searched in {result.search_seconds:.1f}s"]
    return "\n".join(lines)


def report(result: BenchResult, as_json: bool = False) -> str:
    """What `rag bench-retrieval` prints: the table, or the result as JSON."""
    return json.dumps(result.to_json(), indent=2) if as_json else format_table(result)


def main(argv: list[str] | None = None) -> int:
    """`python -m rag.evaluate.benchmark`: the benchmark on its own, without the `rag` command
    (which sits above this module and calls ``run_benchmark`` and ``report`` itself)."""
    offline_environment()
    parser = argparse.ArgumentParser(prog="python -m rag.evaluate.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    parser.add_argument("--limit", type=int, help="use only the first N corpus documents")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        print(report(run_benchmark(args.dataset, Settings.from_env(), limit=args.limit), args.json))
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad settings or flags, as the `rag` command reports them
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
