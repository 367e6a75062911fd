"""`rag ingest --ray [ADDRESS]`: files read, and new documents chunked and embedded, on a Ray cluster.

This process only lists the folders (``loaders.list_corpus``: names, sidecars, titles). Ray Data
tasks read the files (``loaders.read_task``, as a local ingest does; the pages whose shared lines
mark site chrome are read there too). Ray Data then hands the new documents, in batches, to a
fixed pool of actors, each holding one model and running ``run.document_rows``, the rule the
single-process ingest runs. This process gathers the documents and rows and builds, checks and
publishes the index exactly as a local ingest does (the IVF coarse quantiser trained on a sample,
the crash-safe publish). Every node must see the corpus folders at the same path (a shared file
system). Ray is an optional extra: ``pip install -e '.[scale]'``.
"""
from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import RayIngestError
from ..types import Document
from .embedding import load_embedder, resolve_precision, set_threads
from .run import DocumentRows, IngestReport, check_folders, document_rows, ingest

INSTALL_HINT = "pip install -e '.[scale]'"


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # a running cluster (HOST:PORT, ray://HOST:PORT, auto); None: a local Ray
    cpus: int = 2  # the local Ray's CPUs (ignored with an address)
    workers: int | None = None  # model actors, one CPU each; None: one per CPU of the cluster
    batch_size: int = 64  # documents an actor chunks and embeds in one pass
    read_batch: int = 16  # files a task reads in one pass
    retries: int = 3  # a batch whose actor died runs again on a new one, this many times

    def __post_init__(self):
        if self.cpus <= 0:
            raise ValueError(f"--ray-cpus must be > 0, got {self.cpus}")
        if self.batch_size <= 0 or self.read_batch <= 0:
            raise ValueError(f"batch sizes must be > 0, got {self.batch_size} and {self.read_batch}")
        if self.workers is not None and self.workers <= 0:
            raise ValueError(f"--ray-workers must be > 0, got {self.workers}")


class EmbedWorker:
    """One Ray actor: the model loaded once, then batches of documents in, their rows out."""

    def __init__(self, settings: Settings):
        set_threads(1)  # each actor holds one CPU; more threads would fight the other actors
        self.settings = settings
        self.embedder = load_embedder(settings.model, settings.precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = document_rows(list(batch["doc"]), self.embedder, self.settings, progress=False)
        return {"k": batch["k"], "rows": _objects(rows)}


def ingest_on_ray(corpus_dirs: Iterable[Path], settings: Settings, options: RayOptions = RayOptions(),
                  progress: bool | None = None, worker: type = EmbedWorker) -> IngestReport:
    """``run.ingest`` with the reading of files and the new documents' chunking and embedding on
    Ray; the index is published only once every document came back, so a failed run leaves it as
    it was."""
    ray = _import_ray()
    # Resolved here, once: "auto" on each worker could pick bfloat16 on one machine and float32
    # on another, and the manifest records one precision.
    settings = replace(settings, precision=resolve_precision(settings.precision))
    corpus_dirs = check_folders(corpus_dirs)  # a mistyped folder is said before Ray starts
    if options.address not in (None, "auto"):
        _check_reachable(options.address)  # said at once, before any folder is listed
    started = _connect(ray, options)
    try:
        workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ray.data.DataContext.get_current().enable_progress_bars = bool(progress)

        def read_map(fn, items: list) -> list:
            return map_on_ray(ray, fn, items, workers, options)

        def make_rows(documents: list[Document]) -> list[DocumentRows]:
            return rows_on_ray(ray, documents, settings, workers, options, worker)

        return ingest(corpus_dirs, settings, progress=progress, make_rows=make_rows, read_map=read_map)
    finally:
        if started:
            ray.shutdown()


def _objects(values: list) -> np.ndarray:
    """A batch column of Python objects (documents, rows of lists and arrays), not Arrow values."""
    out = np.empty(len(values), object)
    out[:] = values
    return out


def _apply(batch: dict[str, np.ndarray], fn) -> dict[str, np.ndarray]:
    return {"k": batch["k"], "out": _objects([fn(item) for item in batch["item"]])}


def map_on_ray(ray, fn, items: list, workers: int, options: RayOptions) -> list:
    """``[fn(item) for item in items]`` by at most ``workers`` Ray tasks at a time, in order; a task
    whose worker died runs again, ``options.retries`` times."""
    if not items:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ray says the items are not Arrow rows, then pickles them
        # One block per batch: Ray Data runs one task per block, and from_items alone may make
        # too few blocks to keep every worker busy.
        blocks = -(-len(items) // options.read_batch)
        dataset = ray.data.from_items([{"k": k, "item": item} for k, item in enumerate(items)],
                                      override_num_blocks=blocks)
        dataset = dataset.map_batches(_apply, fn_kwargs={"fn": fn}, batch_size=options.read_batch,
                                      compute=ray.data.TaskPoolStrategy(size=min(workers, blocks)), num_cpus=1,
                                      max_retries=options.retries)
    return [row["out"] for row in _gather(dataset, len(items), "files")]


def rows_on_ray(ray, documents: list[Document], settings: Settings, workers: int, options: RayOptions,
                worker: type = EmbedWorker) -> list[DocumentRows]:
    """Every document's rows, in the order given, from a pool of ``workers`` actors."""
    with warnings.catch_warnings():
        # Documents are not Arrow rows (Ray says so, then pickles them), and retries still go
        # through the deprecated ray_remote_args (no named parameter in Ray 2.60).
        warnings.simplefilter("ignore")
        dataset = ray.data.from_items([{"k": k, "doc": doc} for k, doc in enumerate(documents)])
        dataset = dataset.map_batches(worker, fn_constructor_kwargs={"settings": settings},
                                      batch_size=options.batch_size, compute=ray.data.ActorPoolStrategy(size=workers),
                                      num_cpus=1, max_restarts=options.retries, max_task_retries=options.retries)
    return [row["rows"] for row in _gather(dataset, len(documents), "documents")]


def _gather(dataset, expected: int, what: str) -> list[dict]:
    """Every row of the dataset, in the order of its "k" column, or one clear error."""
    try:
        gathered = dataset.take_all()
    except Exception as exc:  # Ray's own errors (a lost actor, a task out of retries) carry pages of trace
        raise RayIngestError(f"the Ray ingest failed ({_first_line(exc)}); the index was left as it was") from exc
    if len(gathered) != expected:
        raise RayIngestError(f"the Ray ingest returned {len(gathered)} of {expected} {what}; "
                             "the index was left as it was")
    return sorted(gathered, key=lambda row: int(row["k"]))


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayIngestError(f"--ray needs Ray, an optional extra: {INSTALL_HINT}") from exc
    return ray


def _connect(ray, options: RayOptions) -> bool:
    """Join the cluster at the address, or start a local Ray; True when this call started it."""
    for name in ("ray", "ray.data"):  # its INFO lines and Arrow fallbacks would bury ingest's own warnings
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():  # a session the caller opened (tests, a notebook): theirs to end
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.address is None:
        ray.init(num_cpus=options.cpus, include_dashboard=False, **quiet)
        return True
    try:
        ray.init(address=options.address, **quiet)
    except Exception as exc:  # ConnectionError, a version mismatch, a bad address form
        raise RayIngestError(f"cannot join the Ray cluster at {options.address}: {_first_line(exc)}") from exc
    return True


CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """A quick TCP check first: ray.init retries an unreachable head for a minute or more."""
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayIngestError(f"Ray address {address!r} is not HOST:PORT (the head's port, 6379 by default) "
                             "or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayIngestError(f"no Ray cluster at {address}: {exc.strerror or exc}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
