"""The crisis screen's second look: all of all-MiniLM-L6-v2 fine-tuned as a 3-way classifier
(none / concern / crisis), reading an English message whole where the head on frozen vectors
hears distress (rag.train.crisis_reread trains it; models/crisis/MODEL_CARD.md).

The head scores a frozen sentence vector of each piece, and a clause read alone loses what the
rest of the message says: "I won't be around for the strike vote, I'll be at a conference"
holds the clause "I won't be around for the strike vote". This model reads every token of the
message with every other, so the reason given can outweigh the words of absence. It costs a
pass of the encoder, so it reads only the grey zone: messages whose distress the head hears at
half its concern threshold or more (ordinary questions pay nothing); ``CrisisRereader.decide``
says how its reading and the head's verdict make the screen's.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CrisisModelError
from .cross import CrossModel, OnnxScorer, softmax
from .crisis import LABELS

REREAD_FORMAT = "strike-qa crisis reread v2"
REREAD_FILE = "reread.safetensors"
REREAD_META = "reread.json"
# Every written training message fits in 58 tokens. A longer message is not read again: the
# head's verdict stands. Read in 128-token windows, its long posts lost the crisis response the
# head gave them (r/SuicideWatch 0.875 -> 0.650; docs/crisis-screen.md).
MAX_TOKENS = 128


class CrisisClassifier(CrossModel):
    """The mean of MiniLM's token states through a linear layer to the 3 labels' logits: the
    reader's cross-encoder (rag.answer.cross) with one text and three outputs."""

    def __init__(self, encoder, tokenizer):
        super().__init__(encoder, tokenizer)
        self.head = torch.nn.Linear(encoder.config.hidden_size, len(LABELS))
        del self.null  # the reader's "none of these" score: a label here

    def tokens(self, texts: Sequence[str]) -> dict:
        return dict(encode(self.tokenizer, texts, "pt"))


def encode(tokenizer, texts: Sequence[str], tensors: str):
    """What the model reads of each text: its first MAX_TOKENS tokens."""
    return tokenizer(list(texts), truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors=tensors)


@dataclass(frozen=True)
class Reading:
    crisis: float    # P(crisis)
    distress: float  # P(crisis) + P(concern)


def read(tokenizer, scores: Callable[[dict], np.ndarray], texts: Sequence[str],
         batch_size: int = 64) -> list[Reading | None]:
    """Each text's probabilities; None for a text longer than MAX_TOKENS tokens (not read).
    ``scores`` gives the 3 logits of each text from the tokenizer's numpy arrays: the run-time
    OnnxScorer, or CrisisClassifier.scores (torch) while training."""
    if not texts:
        return []
    lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    short = [i for i, n in enumerate(lengths) if n <= MAX_TOKENS]
    out: list[Reading | None] = [None] * len(texts)
    for at in range(0, len(short), batch_size):
        batch = short[at:at + batch_size]
        logits = np.asarray(scores(encode(tokenizer, [texts[i] for i in batch], "np")), np.float64)
        for i, p in zip(batch, softmax(logits)):
            out[i] = Reading(float(p[2]), float(p[1] + p[2]))
    return out


class CrisisRereader:
    """The fine-tuned classifier and its thresholds; ``verdict`` gives the screen's verdict on a
    message in the grey zone from the head's and its own reading."""

    def __init__(self, path: Path):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.path = Path(path)
        if not (self.path / REREAD_META).is_file():
            raise CrisisModelError(f"No crisis second-look model at {self.path}; run `rag train-crisis --reread` "
                                   "to build it.")
        try:
            meta = json.loads((self.path / REREAD_META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CrisisModelError(f"Unreadable {self.path / REREAD_META}: {exc}") from None
        if meta.get("format") != REREAD_FORMAT:
            raise CrisisModelError(f"{self.path} holds a {meta.get('format')!r} model, expected {REREAD_FORMAT!r}.")
        self.meta = meta
        try:
            model = CrisisClassifier.trained(meta["base_model"], self.path / REREAD_FILE)
        except ValueError as exc:
            raise CrisisModelError(f"{exc}; rebuild it with `rag train-crisis --reread`.") from None
        self.tokenizer = model.tokenizer
        self._scores = OnnxScorer(model)  # the torch copy of the weights is dropped with ``model``
        self.crisis_threshold = float(meta["crisis_threshold"])
        self.concern_threshold = float(meta["concern_threshold"])
        self.keep_threshold = float(meta["keep_threshold"])
        self.zone = float(meta["zone"])  # what it reads: distress >= zone x the head's concern threshold
        self._lock = threading.Lock()  # the fast tokenizer is not safe across threads

    def readings(self, texts: Sequence[str]) -> list[Reading | None]:
        with self._lock:
            return read(self.tokenizer, self._scores, texts)

    def decide(self, head: str, reading: Reading | None) -> str:
        """The verdict from the head's and this model's reading (None: the message was too long to read).

        A crisis the head heard stays one unless this model is sure it is none of that (P(crisis)
        under ``keep_threshold``, which 1% of the crisis messages scored out of fold), and then it
        is a resources line, never nothing. Elsewhere this model's own verdict stands: it may raise
        a message to the crisis response and clear a resources line."""
        if reading is None:
            return head
        if head == "crisis":
            return "crisis" if reading.crisis >= self.keep_threshold else "concern"
        if reading.crisis >= self.crisis_threshold:
            return "crisis"
        return "concern" if reading.distress >= self.concern_threshold else "none"

    def verdict(self, text: str, head: str) -> str:
        return self.decide(head, self.readings([text])[0])
