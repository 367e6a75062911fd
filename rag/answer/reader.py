"""The reader: a small cross-encoder that reads a question with one candidate sentence and
says how likely that sentence answers it.

Trained here from the bundled all-MiniLM-L6-v2 weights on SQuAD 2.0 (see
rag/answer/training.py). The probability is
calibrated (Platt scaling on held-out SQuAD questions), so "refuse below 0.5"
means what it says; ``Settings.min_answer_score`` is that cut-off.
"""
from __future__ import annotations

import json
import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..config import ROOT, offline_environment

FORMAT = "strike-qa reader v1"
SHIPPED = ROOT / "models" / "reader"
# How the recorded thresholds are chosen: on the eval sets' dev halves, never their held-out halves.
THRESHOLD_CHOSEN_ON = ("the dev halves of eval/questions.jsonl and eval/seiu503.jsonl and the written questions' "
                       "dev split (threshold grid; the highest sum of answer accuracy, refusal recall and "
                       "refusal precision over the three, a tie within 0.05 going to the lower threshold)")
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
        from ..errors import ReaderNotFoundError

        raise ReaderNotFoundError(
            f"no reader model at {path} (expected reader.json and weights); "
            f"rebuild it with `rag train-reader` or set RAG_READER_MODEL to a trained reader folder")
    return path


HEAD_FILE = "head.safetensors"


def build_scorer(encoder_path, pooling: str = "mean", head_path: Path | None = None):
    """The reader's network: a BERT encoder over "[CLS] question [SEP] candidate [SEP]" and a
    linear head; called with the tokenizer's tensors it returns one logit per pair. Both
    kinds have ``.encoder`` (the BERT), ``.head`` (what learns from nothing) and ``.save(dir)``.

    "mean" (the default): the head reads the mean of the token states. all-MiniLM-L6-v2 was
    trained through mean pooling, so that mean already means something and a head on it
    learns from a few thousand questions; its [CLS] state was never trained. "cls": the usual
    sequence-classification head on [CLS] (design A in the README, "The reader").
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    if pooling not in ("mean", "cls"):
        raise ValueError(f"reader pooling must be 'mean' or 'cls', got {pooling!r}")

    class ClsScorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = AutoModelForSequenceClassification.from_pretrained(
                encoder_path, num_labels=1, torch_dtype=torch.float32)
            self.encoder, self.head = self.model.bert, self.model.classifier

        def forward(self, **inputs):
            return self.model(**inputs).logits.squeeze(-1)

        def save(self, out_dir: Path) -> None:
            self.model.half().save_pretrained(out_dir, safe_serialization=True)

    class MeanPoolScorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(encoder_path, torch_dtype=torch.float32,
                                                     add_pooling_layer=False)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
            if head_path is not None:
                from safetensors.torch import load_file

                self.head.load_state_dict({k: v.float() for k, v in load_file(str(head_path)).items()})

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

        def save(self, out_dir: Path) -> None:
            from safetensors.torch import save_file

            self.encoder.half().save_pretrained(out_dir, safe_serialization=True)
            save_file({k: v.half().contiguous() for k, v in self.head.state_dict().items()},
                      str(Path(out_dir) / HEAD_FILE))

    return MeanPoolScorer() if pooling == "mean" else ClsScorer()


class Reader:
    """Scores (question, candidate) pairs; thread-safe, CPU, no network."""

    def __init__(self, path: Path, quantize: bool = True):
        offline_environment()
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        meta = json.loads((Path(path) / "reader.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            from ..errors import ReaderNotFoundError

            raise ReaderNotFoundError(f"{path} holds a {meta.get('format')!r} model, expected {FORMAT!r}")
        self.path = Path(path)
        self.meta = meta
        self.max_length = int(meta["max_length"])
        cal = meta["calibration"]
        self.features = tuple(cal["features"])  # "logit" and first-stage features (see answering.py)
        self.weights = np.asarray(cal["weights"], dtype=np.float64)
        self.bias = float(cal["bias"])
        # The refusal threshold on this reader's probability (Settings.min_answer_score overrides).
        self.threshold = float(meta.get("threshold", {}).get("value", 0.5))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        # Weights ship as fp16 to stay small; CPUs compute fp32 (and int8) faster.
        self.pooling = meta.get("pooling", "cls")
        model = build_scorer(self.path, self.pooling, self.path / HEAD_FILE)
        model.eval()
        from ..ingest.embedding import native_bfloat16

        # Faster than float32 where it can be: bfloat16 matrix products on CPUs with AMX,
        # else int8 linear layers (1.8x on an AVX2 EPYC, logits within ~0.03 of fp32).
        self.bfloat16 = quantize and native_bfloat16()
        if quantize and not self.bfloat16:
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
            with self._torch.inference_mode(), self._torch.autocast("cpu", self._torch.bfloat16, enabled=self.bfloat16):
                out.append(self.model(**enc).float().reshape(-1).numpy())
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


def load_reader(name: str = "shipped", quantize: bool = True) -> "Reader | QuestionTower":
    """One shared reader per process and setting, of whichever design the folder holds."""
    return _load(str(resolve_reader(name)), quantize)


@lru_cache(maxsize=2)
def _load(path: str, quantize: bool) -> "Reader | QuestionTower":
    meta = json.loads((Path(path) / "reader.json").read_text(encoding="utf-8"))
    if meta.get("format") == TOWER_FORMAT:
        return QuestionTower(Path(path))
    return Reader(Path(path), quantize)


# ── The second design: a question tower ──────────────────────────────────────
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

    def __init__(self, path: Path):
        offline_environment()
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

            raise ReaderNotFoundError(f"{path} holds a {meta.get('format')!r} model, expected {TOWER_FORMAT!r}")
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
        held-out SQuAD, see ``rag.answer.training.calibrate_tower``)."""
        cosine = np.asarray(cosine, dtype=np.float64)
        columns = {"cosine": cosine, "coverage": np.asarray(coverage, dtype=np.float64),
                   "type_ok": np.asarray(type_ok, dtype=np.float64), "margin": self.scale * cosine - view.null}
        x = np.stack([columns[f] for f in self.features], axis=1)
        return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))
