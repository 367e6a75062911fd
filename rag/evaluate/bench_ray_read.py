"""Reading throughput, in one process and on a local Ray: `python -m rag.evaluate.bench_ray_read`.

Reads the contracts and the training pool in ../shared/corpora (PDFs of up to ~200 pages, HTML,
Markdown) the way `rag ingest` does (``loaders.list_corpus`` then ``loaders.read_task`` on every
file), once in this process and once on a local Ray with 1 and with 2 read workers, and prints
files, pages and seconds. No model, no index: the embedding figures are in docs/scaling.md. Checks
that Ray read the same documents as the single process.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from functools import partial
from pathlib import Path

from ..config import shared_dir
from ..ingest.loaders import Loaded, list_corpus, local_map, read_task

FOLDERS = ("union-contracts", "oregon-nurse-contracts", "training-pool")


def read_all(folders: list[Path], mapper, repeat: int) -> list:
    """Every file of the folders read ``repeat`` times over, in one map as `rag ingest` does."""
    refused, tasks = [], []
    for root in folders:
        skipped, listed = list_corpus(root, mapper)
        refused += skipped
        tasks += listed
    return refused + mapper(partial(read_task, ocr=None), tasks * repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=shared_dir("corpora"), help="folder of the corpora")
    parser.add_argument("--read-batch", type=int, default=4, help="files a Ray task reads in one pass")
    parser.add_argument("--repeat", type=int, default=4, help="read every file this many times (a bigger corpus)")
    args = parser.parse_args()
    folders = [args.corpora / name for name in FOLDERS if (args.corpora / name).is_dir()]
    if not folders:
        print(f"skipped: none of {', '.join(FOLDERS)} under {args.corpora}", file=sys.stderr)
        return 0
    try:
        import ray
        import ray.data
    except ImportError:
        print("skipped: Ray is not installed (pip install -e '.[scale]')", file=sys.stderr)
        return 0
    from ..ingest.ray_ingest import RayOptions, map_on_ray

    started = time.perf_counter()
    reference = read_all(folders, local_map, args.repeat)
    runs = [("single process", time.perf_counter() - started)]
    documents = [item.document for item in reference if isinstance(item, Loaded)]
    pages = sum(max(len(doc.pages), 1) for doc in documents)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for workers in (1, 2):
        # A fresh local Ray each time, its start timed apart from the reading (the workers' first
        # imports of rag count as reading, as in `rag ingest --ray`).
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        ray.data.DataContext.get_current().enable_progress_bars = False
        start_s = time.perf_counter() - started
        try:
            options = RayOptions(workers=workers, read_batch=args.read_batch)
            started = time.perf_counter()
            got = read_all(folders, partial(map_on_ray, ray, workers=workers, options=options), args.repeat)
            runs.append((f"Ray, {workers} worker{'s' if workers > 1 else ''} (+{start_s:.1f} s to start Ray)",
                         time.perf_counter() - started))
        finally:
            ray.shutdown()
        if got != reference:
            print(f"error: Ray with {workers} workers read other documents than the single process", file=sys.stderr)
            return 1
    print(f"{len(documents)} documents read ({len(reference) - len(documents)} skipped), {pages} pages "
          f"(a page: a PDF page, or a whole file otherwise): {', '.join(f.name for f in folders)}, "
          f"each file read {args.repeat} times")
    print("| reading | wall s | files/s | pages/s |\n|:--|--:|--:|--:|")
    for name, seconds in runs:
        print(f"| {name} | {seconds:.1f} | {len(reference) / seconds:.2f} | {pages / seconds:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
