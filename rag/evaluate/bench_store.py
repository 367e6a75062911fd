"""Write rates of the server's database (rag/serve/store.py): SQLite files or PostgreSQL.

    python -m rag.evaluate.bench_store                                   # SQLite in a temporary folder
    RAG_DATABASE_URL=postgresql://rag@127.0.0.1:5432/bench python -m rag.evaluate.bench_store

Each of ``--threads`` threads does what one asked question costs the database for ``--seconds``:
a rate-limit check (a count and an insert, one transaction) and, as for a question the documents
don't answer or a vote, one stored row. Prints writes/s (transactions) and the latency percentiles.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from ..config import Settings
from ..serve.feedback import open_store
from ..serve.ratelimit import open_limiter


def run(settings: Settings, threads: int, seconds: float) -> dict:
    store, limiter = open_store(settings), open_limiter(settings)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.monotonic() + seconds

    def work(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            limiter.wait_time(f"client-{n}-{i % 50}")  # 50 clients per thread, as many members would be
            if i % 2:
                store.record_unanswered(f"question {n}-{i}")
            else:
                store.record_rating(i % 4 == 0, f"question {n}-{i}", "answer", [], answer_id=store.answer_id())
            latencies[n].append((time.perf_counter() - started) * 1000)
            i += 1

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    flat = sorted(x for per in latencies for x in per)
    return {"backend": "postgresql" if settings.database_url else "sqlite", "threads": threads,
            "asks_per_s": round(len(flat) / elapsed, 1), "writes_per_s": round(2 * len(flat) / elapsed, 1),
            "p50_ms": round(statistics.median(flat), 2), "p95_ms": round(flat[int(0.95 * (len(flat) - 1))], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="strike-qa-store-"))
    base = Settings.from_env(data_dir=data, rate_limit_per_minute=100_000_000)
    print("| backend | threads | asks/s | writes/s | p50 ms | p95 ms |\n|---|--:|--:|--:|--:|--:|")
    for threads in args.threads:
        r = run(base, threads, args.seconds)
        print(f"| {r['backend']} | {threads} | {r['asks_per_s']} | {r['writes_per_s']} | {r['p50_ms']} | "
              f"{r['p95_ms']} |", flush=True)


if __name__ == "__main__":
    main()
