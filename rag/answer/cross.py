"""The cross-encoder reader: all-MiniLM-L6-v2 reading a question and a candidate sentence
together, trained on the written union questions (rag.train.reader.train_cross).

Where the question tower compares two vectors made apart, this reads both texts at once, so
"they didn't put me to work" can meet "not put to work ... entitled to a minimum of two hours
pay". It costs a pass per candidate, so only the first stage's best ``reads`` are read.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence
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


class CrossModel(torch.nn.Module):
    """The mean of MiniLM's token states over "question [SEP] sentence", through a linear
    layer: how well the sentence answers. ``null`` is the learned score of "none of these"."""

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

    def pairs(self, questions: list[str], sentences: list[str], max_tokens: int) -> dict:
        return self.tokenizer(questions, sentences, truncation="only_second", max_length=max_tokens,
                              padding=True, return_tensors="pt")

    def read(self, pairs: dict) -> torch.Tensor:
        states = self.encoder(**pairs).last_hidden_state
        mask = pairs["attention_mask"].unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1)).squeeze(-1)


class CrossReader:
    """Gives each of a question's candidates the probability that it answers: a softmax over
    the candidates' scores and the "none of these" score."""

    kind = "cross"  # reads question and sentence together (the tower's kind is "tower")

    def __init__(self, path: Path):
        from safetensors.torch import load_file
        from transformers.utils import logging as hf_logging

        from ..errors import ReaderNotFoundError

        hf_logging.set_verbosity_error()
        self.path = Path(path)
        self.meta = meta = json.loads((self.path / "reader.json").read_text(encoding="utf-8"))
        if meta.get("format") != CROSS_FORMAT:
            raise ReaderNotFoundError(f"{path} holds a {meta.get('format')!r} model, expected {CROSS_FORMAT!r}")
        self.base_model = meta["base_model"]
        self.model = CrossModel.from_base(self.base_model)
        state = {k: v.float() for k, v in load_file(str(self.path / CROSS_FILE)).items()}
        result = self.model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ReaderNotFoundError(f"{path}/{CROSS_FILE} does not fit {self.base_model}: missing "
                                      f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}; "
                                      "rebuild it with `rag train-reader --design cross`")
        self.model.eval()
        self.max_tokens = int(meta.get("max_tokens", 128))
        self.reads = int(meta.get("reads", CROSS_READS))
        self.fusion = float(meta.get("fusion", CROSS_FUSION))
        self.floor = float(meta.get("floor", CROSS_FLOOR))
        self.threshold = float(meta.get("threshold", {}).get("value", 0.5))
        self._lock = threading.Lock()  # the fast tokenizer is not safe across threads

    def probabilities(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        if not sentences:
            return np.zeros(0)
        with self._lock:
            pairs = self.model.pairs([question] * len(sentences), list(sentences), self.max_tokens)
        with torch.inference_mode():
            logits = torch.cat([self.model.null, self.model.read(pairs)]).double()
            return torch.softmax(logits, 0)[1:].numpy()
