"""Do members feel a re-index from the staff console? Ask latency idle, then while a full re-index
of the same corpus runs beside it: once as the console runs it (its own process, nice 10, one
thread: rag/serve/admin/reindex.py), once as a plain `rag ingest` (normal priority, every core).

    python -m rag.evaluate.bench_admin [CORPUS] [--rounds N]

CORPUS defaults to ../shared/corpora/seiu503-higher-ed; the questions are eval/seiu503.jsonl's.
The served index is built once into a temporary folder; each re-index rebuilds the corpus into a
second, empty index folder, so every run embeds every chunk (the heaviest re-index there is).
Prints p50 / p95 / max ask latency in ms for each phase and the re-index's own wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..config import Settings, child_environment, offline_environment, shared_dir
from ..ingest.run import ingest
from ..pipeline import Pipeline
from ..serve.admin.reindex import NICE, Reindexer


def _questions(settings: Settings) -> list[str]:
    path = settings.path("eval/seiu503.jsonl")
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _asks(pipeline: Pipeline, questions: list[str], until) -> list[float]:
    """Ask the questions round and round until `until()` is true; each ask's milliseconds."""
    times, k = [], 0
    while not until():
        started = time.perf_counter()
        pipeline.ask(questions[k % len(questions)])
        times.append((time.perf_counter() - started) * 1000)
        k += 1
    return times


def _row(name: str, times: list[float], seconds: float | None = None) -> str:
    q = statistics.quantiles(times, n=20)
    extra = f"  re-index {seconds:6.1f} s" if seconds is not None else ""
    return (f"{name:<44} asks {len(times):5d}  p50 {statistics.median(times):7.1f}  p95 {q[18]:7.1f}  "
            f"max {max(times):7.1f}{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=shared_dir("corpora", "seiu503-higher-ed"))
    parser.add_argument("--rounds", type=int, default=3, help="idle passes over the questions")
    args = parser.parse_args(argv)
    offline_environment()
    base = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    try:
        return _run(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(args, base: Path) -> int:
    settings = replace(Settings.from_env(), corpus_dir=args.corpus, index_dir=base / "index", data_dir=base / "data")
    print(f"indexing {args.corpus} ...", file=sys.stderr)
    ingest([args.corpus], settings, progress=False)
    pipeline = Pipeline(settings)
    questions = _questions(settings)
    for q in questions[:5]:  # warm up: first asks load lazily
        pipeline.ask(q)
    idle_times: list[float] = []
    for _ in range(args.rounds):
        for q in questions:
            started = time.perf_counter()
            pipeline.ask(q)
            idle_times.append((time.perf_counter() - started) * 1000)
    print(f"{len(pipeline.index.documents)} documents, {pipeline.index.manifest.chunks} chunks; "
          f"{os.cpu_count()} cores; times in ms")
    print(_row("idle", idle_times))

    # As the console runs it: Reindexer (nice 10, one thread), into an empty index folder.
    fresh = replace(settings, index_dir=base / "rebuild-console", data_dir=base / "data-console")
    reindexer = Reindexer(fresh)
    started = time.monotonic()
    reindexer.request([args.corpus], "bench")
    times = _asks(pipeline, questions, lambda: reindexer.status().state != "running")
    status = reindexer.status()
    if status.state != "done":
        raise SystemExit(f"the console's re-index failed: {status.error}")
    print(_row(f"during a console re-index (nice {NICE}, 1 thread)", times, time.monotonic() - started))

    # The old way: `rag ingest` in a shell beside the server, normal priority, every core.
    env = child_environment(replace(settings, index_dir=base / "rebuild-shell"))
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(args.corpus)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = _asks(pipeline, questions, lambda: process.poll() is not None)
    print(_row("during `rag ingest` (normal priority, all cores)", times, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
