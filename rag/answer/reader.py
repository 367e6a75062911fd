"""Finding and loading a trained reader: the cross-encoder of cross.py, trained by
rag/train/reader.py (`rag train-reader`), and recording its refusal threshold. The designs
measured against it, and why they lost, are in docs/reader.md.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ROOT

if TYPE_CHECKING:
    from .cross import CrossReader

SHIPPED = ROOT / "models" / "reader"
# How the recorded thresholds are chosen: on the eval sets' dev halves, never their held-out halves.
THRESHOLD_CHOSEN_ON = ("the dev halves of eval/questions.jsonl and eval/seiu503.jsonl and the written questions' "
                       "dev split (threshold grid; the highest sum of answer accuracy, refusal recall and "
                       "refusal precision over the three, a tie within 0.05 going to the lower threshold)")


def resolve_reader(name: str) -> Path:
    """'shipped' is models/reader/ in this repo; anything else is a folder path."""
    path = SHIPPED if name == "shipped" else Path(name).expanduser()
    if not (path / "reader.json").is_file():
        from ..errors import ReaderNotFoundError

        raise ReaderNotFoundError(
            f"no reader model at {path} (expected reader.json and weights); "
            f"rebuild it with `rag train-reader` or set RAG_READER_MODEL to a trained reader folder")
    return path


def save_threshold(path: Path, value: float, note: str) -> None:
    """Record the refusal threshold chosen for this reader, and how, in reader.json."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a threshold is a probability in [0, 1], got {value}")
    _update_meta(path, threshold={"value": round(float(value), 4), "chosen_on": note})


def _update_meta(path: Path, **fields) -> None:
    meta_path = Path(path) / "reader.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(fields)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_reader(name: str = "shipped") -> "CrossReader":
    """One shared reader per process and folder."""
    return _load(str(resolve_reader(name)))


@lru_cache(maxsize=2)
def _load(path: str) -> "CrossReader":
    from .cross import CrossReader

    return CrossReader(Path(path))

