"""Re-indexing in the background, in a process of its own, so members' questions are not slowed.

The console starts ``python -m rag.serve.admin.reindex FOLDER...``: it lowers its own priority
(nice 10), computes on one thread, and runs the same ``ingest()`` as `rag ingest`, which writes a
new build beside the live one and swaps CURRENT atomically; the server's Pipeline notices within
a second and answers from the old build until then. One re-index at a time: a change made while
one runs is picked up by one more run right after it (ingest's own lock also keeps a shell
`rag ingest` from running beside it). The last run's result, with its warnings, is kept in
``data/reindex.json``, so the documents page shows them after a restart.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ...config import Settings, child_environment

NICE = 10
_PERCENT = re.compile(r"(\d{1,3})%\|")


@dataclass(frozen=True)
class Status:
    state: str = "idle"  # "idle" | "running" | "done" | "failed"
    started: str = ""
    finished: str = ""
    by: str = ""  # who asked for it
    progress: int = 0  # percent of the embedding done
    summary: str = ""
    error: str = ""
    pending: bool = False  # another change came in while it ran: one more run follows
    notes: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, warning) of the last finished run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def to_json(self) -> dict:
        return asdict(self)


class Reindexer:
    """Starts re-index processes one at a time and tracks their status."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = settings.data_dir / "reindex.json"
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._next: tuple[list[Path], str] | None = None
        self._status = self._saved()

    def status(self) -> Status:
        with self._lock:
            return self._status

    def request(self, roots: list[Path], who: str) -> Status:
        """Start a re-index of roots, or, if one is running, run once more when it ends."""
        with self._lock:
            if self._process is not None:
                self._status = replace(self._status, pending=True, by=who)
                self._next = (roots, who)
                return self._status
            self._start(roots, who)
            return self._status

    def wait(self, timeout: float = 300.0) -> Status:
        """Until no re-index runs or is pending (tests, the benchmark)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.state != "running" and not status.pending:
                return status
            time.sleep(0.1)
        raise TimeoutError(f"the re-index did not finish within {timeout:.0f} s")

    def _start(self, roots: list[Path], who: str) -> None:
        command = [sys.executable, "-m", "rag.serve.admin.reindex", *map(str, roots)]
        env = {**child_environment(self.settings), "OMP_NUM_THREADS": "1"}  # FAISS's threads too
        self._process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._next = None
        self._status = Status("running", started=_now(), by=who, notes=self._status.notes,
                              skipped=self._status.skipped)
        threading.Thread(target=self._follow, args=(self._process,), daemon=True).start()

    def _follow(self, process: subprocess.Popen) -> None:
        stderr = []
        # tqdm redraws its bar with "\r": read the stream in pieces and keep the last percentage.
        for piece in iter(lambda: process.stderr.read1(4096), b""):
            stderr.append(piece)
            found = _PERCENT.findall(piece.decode("utf-8", "replace"))
            if found:
                with self._lock:
                    self._status = replace(self._status, progress=min(100, int(found[-1])))
        out = process.stdout.read().decode("utf-8", "replace")
        code = process.wait()
        try:
            result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except ValueError:
            result = {}
        with self._lock:
            if code == 0 and "summary" in result:
                status = Status("done", self._status.started, _now(), self._status.by, 100, result["summary"],
                                notes=[tuple(n) for n in result["notes"]],
                                skipped=[tuple(s) for s in result["skipped"]])
            else:
                error = result.get("error") or _last_line(b"".join(stderr)) or f"exit code {code}"
                status = replace(self._status, state="failed", finished=_now(), error=error, pending=False)
            self._process = None
            queued = self._next
            self._status = status
            self._save(status)
            if queued:
                self._start(*queued)

    def _saved(self) -> Status:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            status = Status(**{k: v for k, v in data.items() if k in Status.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return Status()
        if status.state == "running":  # the server stopped during it: the process went with it
            status = replace(status, state="failed", error="the server stopped during the re-index")
        return replace(status, pending=False, notes=[tuple(n) for n in status.notes],
                       skipped=[tuple(s) for s in status.skipped])

    def _save(self, status: Status) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status.to_json(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", stderr.decode("utf-8", "replace")) if ln.strip()]
    return lines[-1][:500] if lines else ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(argv: list[str]) -> int:
    """The re-index process: low priority, one thread, ingest(), one JSON line on stdout."""
    from ...config import offline_environment
    from ...errors import RagError
    from ...ingest.embedding import set_threads
    from ...ingest.run import ingest

    os.nice(NICE)
    offline_environment()
    set_threads(1)  # the server's questions keep the other cores
    try:
        report = ingest([Path(a) for a in argv], Settings.from_env(), progress=True)
    except RagError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"summary": report.summary(), "notes": report.notes,
                      "skipped": [(str(s.path), s.reason) for s in report.skipped]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
