"""Drive POST /api/ask with many concurrent clients; print requests/s, latency percentiles, errors.

    python -m rag.evaluate.load_test                      # starts the app itself, 50 clients x 60 s
    python -m rag.evaluate.load_test --workers 1 2        # the same load on 1 and on 2 worker processes
    python -m rag.evaluate.load_test --url http://127.0.0.1:7860 --clients 20 --seconds 5
    python -m rag.evaluate.load_test --workers 1 2 --unique   # no question asked twice

Six questions go round, as a strike's few popular questions do; the app remembers
recent questions' vectors, so after the first round none is embedded again.
``--unique`` numbers every question ("... (request 812)"), so each one is new and is
embedded, which is the cost of questions nobody asked before.

Loopback only, bounded in clients and time. Every reply is checked against the
question that was sent, so an answer handed to the wrong client counts as an error.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..config import ROOT, child_environment
# Questions with the fact each answer must carry, so a mixed-up reply is caught.
QUESTIONS = [
    ("How many therapy appointments did Kaiser cancel during the 2022 strike?", "111,803"),
    ("Has a strike date been set?", "No strike date has been set"),
    ("How many mental health therapists are voting on the strike?", "2,400"),
    ("Who is Molly Parsons?", "Molly Parsons"),
    ("What is the capital of France?", "don't say"),
    ("I don't want to be alive anymore", "988"),
]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def client(http, url: str, n: int, deadline: float, tally: Tally, unique: bool = False) -> None:
    i = n
    while time.monotonic() < deadline:
        question, fact = QUESTIONS[i % len(QUESTIONS)]
        if unique:
            question = f"{question} (request {n}-{i})"
        i += 1
        started = time.perf_counter()
        try:
            r = await http.post(f"{url}/api/ask", json={"question": question})
            body = r.json()
            if r.status_code != 200:
                tally.errors.append(f"HTTP {r.status_code}: {body}")
            elif body["question"] != question or (not unique and fact not in body["answer"]):
                # Numbered questions are each unique, so their echo alone catches a reply handed to
                # the wrong client (the number can move a borderline answer to a refusal).
                tally.errors.append(f"mixed-up answer for {question!r}: {body['answer'][:80]!r}")
            else:
                tally.latencies.append((time.perf_counter() - started) * 1000)
        except Exception as exc:  # a load test counts failures, it doesn't stop at one
            tally.errors.append(f"{type(exc).__name__}: {exc}")


async def run_load(url: str, clients: int = 50, seconds: float = 60.0, unique: bool = False) -> dict:
    """Run the load and return its figures."""
    import httpx

    _check_loopback(url)
    if not (1 <= clients <= 500 and 0 < seconds <= 600):
        raise ValueError("clients must be 1-500 and seconds 0-600")
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client(http, url, n, deadline, tally, unique) for n in range(clients)))
        elapsed = time.monotonic() - started
    lat = sorted(tally.latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(lat) + len(tally.errors),
            "rps": round(len(lat) / elapsed, 1), "p50_ms": round(pct(50), 1), "p95_ms": round(pct(95), 1),
            "p99_ms": round(pct(99), 1), "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
            "errors": len(tally.errors), "first_errors": tally.errors[:5]}


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"refusing to load-test {host!r}: loopback addresses only")


def _start_app(data_dir: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # One client address sends everything here, so lift the per-client limit for the run.
    # Its own data and index folders, so load questions don't fill the union's
    # feedback database and the repo's index is left alone.
    env = child_environment(RAG_RATE_LIMIT_PER_MINUTE="100000000", RAG_DATA_DIR=data_dir,
                            RAG_INDEX_DIR=str(Path(data_dir) / "index"))
    if not (Path(data_dir) / "index" / "CURRENT").exists():
        subprocess.run([sys.executable, "-m", "rag.cli", "ingest"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port),
                             "--workers", str(workers)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the app did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running app (default: start one on a free loopback port)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="worker processes to start the app with, one run each (default 1)")
    parser.add_argument("--unique", action="store_true", help="number every question, so none repeats")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="strike-qa-load-")
    results = []
    for workers in ([None] if args.url else args.workers):
        proc, url = (None, args.url) if args.url else _start_app(data_dir, workers)
        try:
            asyncio.run(run_load(url.rstrip("/"), min(args.clients, 5), min(args.seconds, 3)))  # warm-up
            result = asyncio.run(run_load(url.rstrip("/"), args.clients, args.seconds, args.unique))
        finally:
            if proc:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        results.append((workers, result))
        print(f"{'' if workers is None else f'{workers} worker(s): '}{result['clients']} clients for "
              f"{result['seconds']} s: {result['requests']} requests, {result['rps']} req/s; latency p50 "
              f"{result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms; "
              f"errors {result['errors']}", flush=True)
        for e in result["first_errors"]:
            print("  error:", e)
    if len(results) > 1:
        print("\n| workers | clients | req/s | p50 ms | p95 ms | errors |\n|--:|--:|--:|--:|--:|--:|")
        for workers, r in results:
            print(f"| {workers} | {r['clients']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['errors']} |")
    sys.exit(1 if any(r["errors"] for _, r in results) else 0)


if __name__ == "__main__":
    main()
