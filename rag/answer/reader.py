"""Loading a trained reader, and the question tower: all-MiniLM-L6-v2 with its upper layers
fine-tuned so that a question's vector has a high cosine with the stored vector of the sentence
that answers it, plus a "none of these" logit.

The reader that ships (models/reader/) is the cross-encoder of cross.py, which beat the tower
on the dev sets; `load_reader` gives whichever kind a folder's reader.json names. Both are
trained by rag/train/reader.py (`rag train-reader`); the tower is calibrated on held-out SQuAD
questions. The designs measured are in docs/reader.md.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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


def save_calibration(path: Path, features: Sequence[str], weights: Sequence[float], bias: float,
                     **notes) -> None:
    """Write the calibration (and notes on what it was fit on) into reader.json."""
    if len(features) != len(weights) or not all(math.isfinite(v) for v in [*weights, bias]):
        raise ValueError(f"calibration needs one finite weight per feature, got {features} {weights} {bias}")
    _update_meta(path, calibration={"features": list(features), "weights": [round(float(w), 6) for w in weights],
                                    "bias": round(float(bias), 6), **notes})


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


TOWER_FORMAT = "strike-qa question tower v1"
TOWER_FILE = "tower.safetensors"
TOWER_FEATURES = ("cosine", "coverage", "type_ok", "margin")


@dataclass(frozen=True)
class QuestionView:
    """A question as the tower reads it."""

    vector: np.ndarray  # unit length; its cosine with a stored sentence vector says "answers"
    null: float  # the no-answer logit, on the same scale as ``scale * cosine``


class QuestionTower:
    """all-MiniLM-L6-v2 with its upper layers fine-tuned, on SQuAD 2.0, to encode questions so
    that their cosine with the sentence vectors stored at ingest (by the untouched model)
    is high for the sentence that answers, plus a linear "none of these" logit.

    It reads nothing but the question, so a question costs one more encoding (~12 ms)
    however many candidates there are, and the index needs nothing new.
    """

    kind = "tower"  # reads the question alone (the cross-encoder's kind is "cross")

    def __init__(self, path: Path):
        import torch
        from safetensors.torch import load_file
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        from ..ingest.embedding import resolve_model

        hf_logging.set_verbosity_error()
        self.path = Path(path)
        self.meta = meta = json.loads((self.path / "reader.json").read_text(encoding="utf-8"))
        if meta.get("format") != TOWER_FORMAT:
            from ..errors import ReaderNotFoundError

            raise ReaderNotFoundError(f"{path} holds a {meta.get('format')!r} model, expected {TOWER_FORMAT!r}; "
                                      "rebuild it with `rag train-reader`")
        self.base_model = meta["base_model"]
        self.model = SentenceTransformer(resolve_model(self.base_model), device="cpu")
        state = {k: v.float() for k, v in load_file(str(self.path / TOWER_FILE)).items()}
        null = {k.removeprefix("null."): state.pop(k) for k in list(state) if k.startswith("null.")}
        result = self.model[0].auto_model.load_state_dict(state, strict=False)
        if result.unexpected_keys or not null:
            from ..errors import ReaderNotFoundError

            raise ReaderNotFoundError(f"{path}/{TOWER_FILE} does not fit {self.base_model}: "
                                      f"unexpected {result.unexpected_keys[:3]}; rebuild it with `rag train-reader`")
        self.null_head = torch.nn.Linear(self.model.get_embedding_dimension(), 1)
        self.null_head.load_state_dict(null)
        self.model.eval()
        self.scale = float(meta["scale"])
        cal = meta["calibration"]
        self.features = tuple(cal["features"])
        self.weights = np.asarray(cal["weights"], dtype=np.float64)
        self.bias = float(cal["bias"])
        self.threshold = float(meta.get("threshold", {}).get("value", 0.5))
        self._torch = torch
        self._lock = threading.Lock()  # the fast tokenizer is not safe across threads

    def view(self, question: str) -> QuestionView:
        torch = self._torch
        with self._lock:
            features = self.model.preprocess([question])
        with torch.inference_mode():
            out = self.model(features)["sentence_embedding"]
            vector = torch.nn.functional.normalize(out.float(), p=2, dim=1)
            null = self.null_head(vector).reshape(-1)
        return QuestionView(vector.numpy().reshape(-1), float(null[0]))

    def probabilities(self, view: QuestionView, cosine: np.ndarray, coverage: np.ndarray,
                      type_ok: np.ndarray) -> np.ndarray:
        """Calibrated probability that each candidate answers (a logistic regression fit on
        held-out SQuAD, see ``rag.train.reader.calibrate_tower``)."""
        cosine = np.asarray(cosine, dtype=np.float64)
        columns = {"cosine": cosine, "coverage": np.asarray(coverage, dtype=np.float64),
                   "type_ok": np.asarray(type_ok, dtype=np.float64), "margin": self.scale * cosine - view.null}
        x = np.stack([columns[f] for f in self.features], axis=1)
        return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))


def load_reader(name: str = "shipped") -> "QuestionTower | CrossReader":
    """One shared reader per process and folder: the kind its reader.json names."""
    return _load(str(resolve_reader(name)))


@lru_cache(maxsize=2)
def _load(path: str) -> "QuestionTower | CrossReader":
    from .cross import CROSS_FORMAT, CrossReader

    meta = json.loads((Path(path) / "reader.json").read_text(encoding="utf-8"))
    return CrossReader(Path(path)) if meta.get("format") == CROSS_FORMAT else QuestionTower(Path(path))

