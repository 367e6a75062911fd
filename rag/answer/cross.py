"""The cross-encoder reader: all-MiniLM-L6-v2 reading a question and a candidate sentence
together, with where the sentence sits (its section heading and the sentence before it,
answering.reading_context), trained on the written union questions (rag.train.reader.train_cross).

It reads both texts at once (where a bi-encoder compares two vectors made apart), so
"they didn't put me to work" can meet "not put to work ... entitled to a minimum of two hours
pay". It costs a pass per candidate, so only the first stage's best ``reads`` are read, and
it runs on onnxruntime (exported when it loads), about twice as fast as torch here.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

CROSS_FORMAT = "strike-qa cross-encoder v1"
CROSS_FILE = "cross.safetensors"
CROSS_READS = 8  # candidates read per question, the first stage's best (docs/reader.md)
CROSS_FUSION = 0.2  # weight of its probabilities added to the heuristic score to choose (docs/reader.md)
# Below this best first-stage score nothing is read: the question shares next to nothing with
# the documents ("Write me a poem about cats": 0.07, "hello": 0.09). The cross-encoder learned
# only from questions about their documents, and its softmax spreads over whatever it is shown:
# it gave those 0.85 and 0.93. No answerable dev question's best is under 0.18 (docs/reader.md).
CROSS_FLOOR = 0.2
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the tokenizer's arrays the model reads


class CrossModel(torch.nn.Module):
    """The mean of MiniLM's token states over "question [SEP] sentence [SEP] context", through
    a linear layer: how well the sentence answers. ``null`` is the learned score of "none of these"."""

    def __init__(self, encoder, tokenizer):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head = torch.nn.Linear(encoder.config.hidden_size, 1)
        self.null = torch.nn.Parameter(torch.zeros(1))

    @classmethod
    def from_base(cls, base_model: str) -> "CrossModel":
        from transformers import AutoModel, AutoTokenizer

        from ..ingest.embedding import resolve_model

        path = resolve_model(base_model)
        return cls(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path))

    @classmethod
    def trained(cls, base_model: str, weights: Path) -> "CrossModel":
        """``base_model`` with the weights a training saved (fp16) in ``weights``, ready to read.
        ValueError says plainly what is wrong with a file that is damaged or does not fit."""
        from safetensors.torch import load_file

        model = cls.from_base(base_model)
        try:
            state = {k: v.float() for k, v in load_file(str(weights)).items()}
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise ValueError(f"Unreadable {weights}: {exc}") from None
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of the wrong shape
            raise ValueError(f"{weights} does not fit {base_model}: {exc}") from None
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{weights} does not fit {base_model}: missing {result.missing_keys[:3]}, "
                             f"unexpected {result.unexpected_keys[:3]}")
        model.eval()
        return model

    def pairs(self, questions: list[str], sentences: list[str], max_tokens: int,
              contexts: list[str] | None = None) -> dict:
        return encode_pairs(self.tokenizer, questions, sentences, max_tokens, "pt", contexts)

    def read(self, pairs: dict) -> torch.Tensor:
        states = self.encoder(**pairs).last_hidden_state
        mask = pairs["attention_mask"].unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1)).squeeze(-1)

    def scores(self, arrays: dict) -> np.ndarray:
        """``read`` on the tokenizer's numpy arrays, by torch: what OnnxScorer computes, for
        training code that holds the torch model."""
        with torch.inference_mode():
            return self.read({name: torch.from_numpy(np.asarray(arrays[name], np.int64))
                              for name in ONNX_INPUTS}).float().numpy()


def encode_pairs(tokenizer, questions: list[str], sentences: list[str], max_tokens: int, tensors: str,
                 contexts: list[str] | None = None):
    """"question [SEP] sentence", or with ``contexts`` "question [SEP] sentence [SEP] context"
    (answering.reading_context), cut from the end to fit ``max_tokens``: what the model reads."""
    if contexts is not None:
        sentences = [f"{s} {tokenizer.sep_token} {c}" if c else s for s, c in zip(sentences, contexts, strict=True)]
    return tokenizer(questions, sentences, truncation="only_second", max_length=max_tokens, padding=True,
                     return_tensors=tensors)


class CrossReader:
    """Gives each of a question's candidates the probability that it answers: a softmax over
    the candidates' scores and the "none of these" score."""

    def __init__(self, path: Path):
        from transformers.utils import logging as hf_logging

        from ..errors import ReaderNotFoundError

        hf_logging.set_verbosity_error()
        self.path = Path(path)
        self.meta = meta = json.loads((self.path / "reader.json").read_text(encoding="utf-8"))
        if meta.get("format") != CROSS_FORMAT:
            raise ReaderNotFoundError(f"{path} holds a {meta.get('format')!r} model, expected {CROSS_FORMAT!r}; "
                                      "rebuild it with `rag train-reader`")
        self.base_model = meta["base_model"]
        try:
            model = CrossModel.trained(self.base_model, self.path / CROSS_FILE)
        except ValueError as exc:
            raise ReaderNotFoundError(f"{exc}; rebuild it with `rag train-reader`") from None
        self.tokenizer = model.tokenizer
        self.null = float(model.null.detach())
        self._scores = OnnxScorer(model)  # the torch copy of the weights is dropped with ``model``
        self.max_tokens = int(meta.get("max_tokens", 128))
        self.reads = int(meta.get("reads", CROSS_READS))
        self.fusion = float(meta.get("fusion", CROSS_FUSION))
        self.floor = float(meta.get("floor", CROSS_FLOOR))
        self.threshold = float(meta.get("threshold", {}).get("value", 0.5))
        self.reads_context = bool(meta.get("reads_context", False))  # trained on sentences with their context
        self._lock = threading.Lock()  # the fast tokenizer is not safe across threads

    def fuse(self, question: str, texts: Sequence[str], first_stage: np.ndarray, order: Sequence[int],
             context: Callable[[int], str] | None = None) -> tuple[list[int], np.ndarray, float]:
        """Reads the question with the first stage's best ``reads`` candidates (``order`` is the
        first stage's, best first; none are read if its best is under ``floor``), each with its
        context (``context(i)``, asked only of those read) where the model reads contexts
        (``reads_context``). Returns the new
        order, each candidate's fused score (the first stage's plus ``fusion`` times its
        probability) and the probability that one of those read answers (their sum)."""
        read = list(order[:self.reads]) if len(order) and first_stage[order[0]] >= self.floor else []
        probs = self.probabilities(question, [texts[i] for i in read],
                                   [context(i) for i in read] if self.reads_context and context is not None else None)
        fused = np.asarray(first_stage, dtype=np.float64).copy()
        fused[read] += self.fusion * probs
        return sorted(order, key=lambda i: -fused[i]), fused, float(probs.sum())  # stable: ties keep the order

    def probabilities(self, question: str, sentences: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        if not sentences:
            return np.zeros(0)
        with self._lock:
            pairs = encode_pairs(self.tokenizer, [question] * len(sentences), list(sentences), self.max_tokens, "np",
                                 list(contexts) if contexts is not None else None)
        return softmax(np.concatenate([[self.null], self._scores(pairs).astype(np.float64)]))[1:]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities from logits along ``axis``, shifted by their largest first so exp never overflows."""
    odds = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return odds / odds.sum(axis=axis, keepdims=True)


class _Scores(torch.nn.Module):
    """CrossModel.read with the tokenizer's arrays as plain arguments, as ONNX export wants them."""

    def __init__(self, model: CrossModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model.read({"input_ids": input_ids, "attention_mask": attention_mask,
                                "token_type_ids": token_type_ids})


class OnnxScorer:
    """A CrossModel's ``read`` run by onnxruntime, on the tokenizer's numpy arrays: the same
    scores as torch (within 1e-5) in about half the time on these 2 cores (docs/reader.md). The
    reader and the crisis screen's second look (rag.answer.crisis_reread) both run on it."""

    def __init__(self, model: CrossModel):
        self._session = _onnx_session(model)

    def __call__(self, arrays: dict) -> np.ndarray:
        return self._session.run(None, {name: np.asarray(arrays[name], np.int64) for name in ONNX_INPUTS})[0]


def _onnx_session(model: CrossModel):
    """Exported from the loaded weights when the model loads (2-3 s), in memory: no second copy
    of the weights on disk to keep in step."""
    import io
    import warnings

    import onnxruntime

    example = model.pairs(["a question"] * 2, ["a sentence", "a longer sentence than the first one"], 32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing BERT, not ours to act on
        torch.onnx.export(_Scores(model), tuple(example[name] for name in ONNX_INPUTS), buffer,
                          input_names=list(ONNX_INPUTS), output_names=["scores"], opset_version=17,
                          dynamic_axes={**{name: {0: "pairs", 1: "tokens"} for name in ONNX_INPUTS},
                                        "scores": {0: "pairs"}}, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Its threads sleep when a run ends instead of spinning for more work: spinning, they took
    # the cores from the next question's own steps (MiniLM, FAISS). rag eval p50 on these 2
    # cores, spinning / not: strike dev 117-120 / 96-106 ms, SEIU 503 dev 81-106 / 73-74 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
