"""The reader: a small cross-encoder that reads a question with one candidate sentence and
says how likely that sentence answers it.

Trained here from the bundled all-MiniLM-L6-v2 weights on SQuAD 2.0 (see
rag/training.py). The probability is
calibrated (Platt scaling on held-out SQuAD questions), so "refuse below 0.5"
means what it says; ``Settings.min_answer_score`` is that cut-off.
"""
from __future__ import annotations

import json
import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import ROOT, offline_environment

FORMAT = "strike-qa reader v1"
SHIPPED = ROOT / "models" / "reader"
PREV_WORDS = 12  # of the previous sentence, shown as context


def candidate_text(sentence: str, heading: str = "", prev: str = "", nxt: str = "") -> str:
    """What the reader sees of a candidate: the sentence first (so truncation only ever
    cuts context), then where it sits: its heading and the end of the sentence
    before it, which is what "it"/"the strike" in the sentence refer to. The
    following sentence rarely helps, and every word read costs time."""
    del nxt
    prev = " ".join(prev.split()[-PREV_WORDS:])
    context = " | ".join(part for part in (heading.strip(), prev) if part)
    return f"{sentence} || {context}" if context else sentence


def resolve_reader(name: str) -> Path:
    """'shipped' is models/reader/ in this repo; anything else is a folder path."""
    path = SHIPPED if name == "shipped" else Path(name).expanduser()
    if not (path / "reader.json").is_file():
        from .errors import ReaderNotFoundError

        raise ReaderNotFoundError(
            f"no reader model at {path} (expected reader.json and weights); "
            f"rebuild it with `rag train-reader` or set RAG_READER_MODEL to a trained reader folder")
    return path


class Reader:
    """Scores (question, candidate) pairs; thread-safe, CPU, no network."""

    def __init__(self, path: Path, quantize: bool = True):
        offline_environment()
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        meta = json.loads((Path(path) / "reader.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            from .errors import ReaderNotFoundError

            raise ReaderNotFoundError(f"{path} holds a {meta.get('format')!r} model, expected {FORMAT!r}")
        self.path = Path(path)
        self.meta = meta
        self.max_length = int(meta["max_length"])
        cal = meta["calibration"]
        self.features = tuple(cal["features"])  # "logit" and first-stage features (see answering.py)
        self.weights = np.asarray(cal["weights"], dtype=np.float64)
        self.bias = float(cal["bias"])
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        # Weights ship as fp16 to stay small; CPUs compute fp32 (and int8) faster.
        model = AutoModelForSequenceClassification.from_pretrained(self.path, torch_dtype=torch.float32)
        model.eval()
        if quantize:  # int8 linear layers: 1.8x faster on this CPU, logits within ~0.03 of fp32
            with warnings.catch_warnings():  # torch marks its int8 tensor API deprecated; it still works
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self._torch = torch
        self._lock = threading.Lock()

    def logits(self, question: str, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Raw scores, one per text; higher means more likely an answer."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i:i + batch_size])
            with self._lock:  # fast tokenizers are not safe across threads
                enc = self.tokenizer([question] * len(batch), batch, truncation="only_second",
                                     max_length=self.max_length, padding=True, return_tensors="pt")
            with self._torch.inference_mode():
                out.append(self.model(**enc).logits.squeeze(-1).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def calibrate(self, logits: np.ndarray, features: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Calibrated probability that each candidate answers: a logistic regression over
        the reader's logit (Platt scaling) and any first-stage features it was fit with."""
        columns = {"logit": np.asarray(logits, dtype=np.float64), **(features or {})}
        missing = [f for f in self.features if f not in columns]
        if missing:
            raise ValueError(f"the reader's calibration needs features {missing}")
        x = np.stack([np.asarray(columns[f], dtype=np.float64) for f in self.features], axis=1)
        return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))

    def probabilities(self, question: str, texts: Sequence[str],
                      features: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        return self.calibrate(self.logits(question, texts), features)


def save_calibration(path: Path, features: Sequence[str], weights: Sequence[float], bias: float,
                     **notes) -> None:
    """Write the calibration (and notes on what it was fit on) into reader.json."""
    meta_path = Path(path) / "reader.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if len(features) != len(weights) or not all(math.isfinite(v) for v in [*weights, bias]):
        raise ValueError(f"calibration needs one finite weight per feature, got {features} {weights} {bias}")
    meta["calibration"] = {"features": list(features), "weights": [round(float(w), 6) for w in weights],
                           "bias": round(float(bias), 6), **notes}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_reader(name: str = "shipped", quantize: bool = True) -> Reader:
    """One shared reader per process and setting."""
    return _load(str(resolve_reader(name)), quantize)


@lru_cache(maxsize=2)
def _load(path: str, quantize: bool) -> Reader:
    return Reader(Path(path), quantize)
