"""Check a language model's answer, sentence by sentence, against the passages it cites.

    model text ─parse once─▶ [Claim(text, cites)] ─check each─▶ Verdict(support: verbatim spans)

A claim is kept only when a passage it cites holds a span that says the same
thing: every number in the claim occurs in that span, every name occurs in the
passage, and the span scores at least ``threshold`` on a mix of meaning
(MiniLM cosine) and word coverage. The span becomes the citation's quote, so
``document.text[start:end] == quote`` holds for generated answers as well.
The threshold was chosen on a labelled set of claims about the shipped corpus
(``eval/claims.jsonl``; ``python -m rag.answer.verification`` prints the figures).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..ingest.chunking import split_sentences
from ..ingest.embedding import Embedder
from ..ingest.index import Index
from ..ingest.lexical import QUESTION_STOPWORDS, content_terms
from ..types import Chunk

# One marker as models write them: [2], [1, 3], [1][2] is two markers.
_MARKER = re.compile(r"\[\s*(\d{1,3}(?:\s*,\s*\d{1,3})*)\s*\]")
_PARTIAL_MARKER = re.compile(r"\[[\d,\s]*$")  # "[1" at the end of a stream that is still coming
_BULLET = re.compile(r"^(?:[-•*–]|\d{1,2}[.)])\s+")
_MARKUP = re.compile(r"\*\*|__|`")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.I)
_NAME = re.compile(r"\b[A-Z][\w’'.\-]*")
_WORDS = re.compile(r"[\w’'\-]+")


@dataclass(frozen=True)
class Claim:
    """One sentence of the model's answer and the passage numbers it cited, markers removed."""

    text: str
    cites: tuple[int, ...]


@dataclass(frozen=True)
class Support:
    """The span of a cited passage that backs a claim: ``document.text[start:end] == quote``."""

    passage: int  # the [n] the model used
    chunk: Chunk
    quote: str
    start: int
    end: int
    score: float
    cosine: float
    coverage: float


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    support: tuple[Support, ...]  # empty: the claim is dropped
    reason: str  # "supported", or why not

    @property
    def supported(self) -> bool:
        return bool(self.support)


# ── parsing the model's text, once ───────────────────────────────────────────

def parse_claims(text: str) -> list[Claim]:
    """The sentences of a finished answer, each with the [n] markers that follow or sit inside it."""
    return _claims(text, final=True)


class ClaimStream:
    """Feed the model's text as it streams; get each sentence once it is complete.

    A sentence is complete when the next one has begun with a word, so that a
    marker written after the full stop ("... strike. [1]") still counts as its own.
    """

    def __init__(self):
        self._text = ""
        self._done = 0  # claims already handed out

    def feed(self, delta: str) -> list[Claim]:
        self._text += delta
        claims = _claims(self._text, final=False)
        fresh = claims[self._done:]
        self._done = len(claims)
        return fresh

    def close(self) -> list[Claim]:
        claims = _claims(self._text, final=True)
        fresh = claims[self._done:]
        self._done = len(claims)
        return fresh

    @property
    def text(self) -> str:
        return self._text


def _claims(text: str, final: bool) -> list[Claim]:
    # Markers become blanks of the same length, so sentence offsets still index
    # the original text, and "strike.[1] Next" splits where a reader would.
    markers = [(m.start(), m.end(), _marker_numbers(m.group(1))) for m in _MARKER.finditer(text)]
    blank = list(text)
    for a, b, _ in markers:
        blank[a:b] = " " * (b - a)
    blanked = "".join(blank)
    if not final:
        partial = _PARTIAL_MARKER.search(blanked)
        if partial:
            blanked = blanked[:partial.start()]
    spans = [s for s in split_sentences(blanked) if _has_words(blanked[s[0]:s[1]])]
    if not final:
        spans = spans[:-1]  # the last sentence may still be growing
    out = []
    for i, (a, b) in enumerate(spans):
        # A marker belongs to the sentence it sits in, or to the one before it
        # when it sits between two sentences.
        limit = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        cites = [n for ma, _, numbers in markers if a <= ma < limit for n in numbers]
        sentence = _clean(blanked[a:b])
        if sentence:
            out.append(Claim(sentence, tuple(dict.fromkeys(cites))))
    return out


def _marker_numbers(group: str) -> list[int]:
    return [int(n) for n in re.split(r"\s*,\s*", group.strip()) if n]


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _clean(sentence: str) -> str:
    sentence = _MARKUP.sub("", sentence)
    sentence = _BULLET.sub("", " ".join(sentence.split()))
    return _SPACE_BEFORE_PUNCT.sub(r"\1", sentence).strip()


# ── checking a claim against its passages ────────────────────────────────────

class Verifier:
    """Decides whether a passage supports a claim, and which span of it does."""

    # Chosen on eval/claims.jsonl (see the module docstring and docs/generation.md):
    # the rule must keep precision first, since a kept fabrication is the worse error.
    def __init__(self, embedder: Embedder, threshold: float = 0.74, semantic_weight: float = 0.25):
        if not 0.0 <= semantic_weight <= 1.0:
            raise ValueError(f"semantic_weight must be within [0, 1], got {semantic_weight}")
        self.embedder = embedder
        self.threshold = threshold
        self.semantic_weight = semantic_weight
        self._vectors: dict[tuple[str, str, int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def check(self, claim: Claim, passages: Sequence[Chunk], index: Index) -> Verdict:
        """``passages[n - 1]`` is what the model saw as [n]."""
        cited = [n for n in claim.cites if 1 <= n <= len(passages)]
        if not cited:
            return Verdict(claim, (), "no citation" if not claim.cites else "cites a passage it was not given")
        vector = self.embedder.embed_batch([claim.text])[0]
        support, reasons = [], []
        for n in cited:
            best, reason = self._best_span(claim, vector, passages[n - 1], index)
            if best and best.score >= self.threshold:
                support.append(replace(best, passage=n))
            else:
                reasons.append(reason if not best else f"best span scores {best.score:.2f}")
        if support:
            return Verdict(claim, tuple(support), "supported")
        return Verdict(claim, (), "; ".join(dict.fromkeys(reasons)))

    def _best_span(self, claim: Claim, vector: np.ndarray, chunk: Chunk, index: Index) -> tuple[Support | None, str]:
        """The passage's best-scoring span (whatever its score), or None and why a hard check failed."""
        doc = index.documents[chunk.doc_id]
        passage = f"{doc.title}\n{chunk.text}"
        missing = _missing_names(claim.text, passage)
        if missing:
            return None, f"{', '.join(missing)} not in the cited passage"
        spans = [s for s in _spans(doc.text, chunk) if _numbers(claim.text) <= _numbers(doc.text[s[0]:s[1]])]
        if not spans:
            return None, "a number in the sentence is not in the cited passage"
        vectors = self._span_vectors(index, chunk.doc_id, doc.text, spans)
        cosines = vectors @ vector
        terms = content_terms(claim.text)
        best = None
        for (a, b), cos in zip(spans, cosines):
            span_terms = content_terms(doc.text[a:b])
            coverage = len(terms & span_terms) / len(terms) if terms else 0.0
            score = self.semantic_weight * float(cos) + (1 - self.semantic_weight) * coverage
            if best is None or score > best.score:
                best = Support(0, chunk, doc.text[a:b], a, b, score, float(cos), coverage)
        return best, ""

    def _span_vectors(self, index: Index, doc_id: str, text: str, spans: list[tuple[int, int]]) -> np.ndarray:
        keys = [(index.version, doc_id, a, b) for a, b in spans]
        missing = [i for i, k in enumerate(keys) if k not in self._vectors]
        if missing:
            fresh = self.embedder.embed_batch([text[spans[i][0]:spans[i][1]] for i in missing])
            with self._lock:
                if len(self._vectors) > 50_000:  # bounded, like the answerer's cache
                    self._vectors.clear()
                for i, vec in zip(missing, fresh):
                    self._vectors[keys[i]] = vec
        return np.stack([self._vectors[k] for k in keys])


def _spans(text: str, chunk: Chunk) -> list[tuple[int, int]]:
    """Candidate quotes: each sentence of the chunk, and each pair of neighbours
    (a model often fuses two sentences into one)."""
    sentences = []
    for a, b in split_sentences(text, chunk.start, chunk.end):
        bullet = _BULLET.match(text[a:b])
        a = a + bullet.end() if bullet else a  # quote the item, not its bullet mark
        if _has_words(text[a:b]):
            sentences.append((a, b))
    pairs = [(sentences[i][0], sentences[i + 1][1]) for i in range(len(sentences) - 1)
             if "\n" not in text[sentences[i][1]:sentences[i + 1][0]]]
    return sentences + pairs


def _numbers(text: str) -> set[str]:
    """Numbers as digits: "2,400" and "2400" are one number, "ten" is "10"."""
    text = _NUMBER_WORD.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], text)
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def _missing_names(claim: str, passage: str) -> list[str]:
    """Capitalised words of the claim (names, places, organisations) the passage never uses."""
    known = {_norm(w) for w in _WORDS.findall(passage)}
    words = _NAME.findall(claim)
    first = _NAME.match(claim)
    missing = []
    for w in words:
        key = _norm(w)
        if key in known or key in QUESTION_STOPWORDS or not key:
            continue
        if first and w == first.group(0) and not w.isupper():
            continue  # a sentence's first word is capitalised whatever it is
        missing.append(w.rstrip(".’'"))
    return missing


def _norm(word: str) -> str:
    word = word.lower().replace("’", "'").strip(".'-")
    word = word[:-2] if word.endswith("'s") else word
    return word.replace("'", "")  # "Hawai’i" is "Hawaii"


# ── calibration: `python -m rag.answer.verification [eval/claims.jsonl]` ────────────

def labelled_claims(path) -> list[dict]:
    import json
    from pathlib import Path

    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def passage_for(row: dict, index: Index) -> Chunk:
    """The chunk of the row's document holding its ``near`` snippet: the passage a model would cite."""
    for chunk in index.chunks:
        if chunk.doc_id == row["doc_id"] and row["near"] in chunk.text:
            return chunk
    raise ValueError(f"no chunk of {row['doc_id']} contains {row['near']!r}")


def confusion(verdicts: Iterable[tuple[bool, bool]]) -> dict:
    """Precision and recall of "supported" decisions against labels: (label, decision) pairs."""
    tp = fp = fn = tn = 0
    for label, decided in verdicts:
        tp += label and decided
        fp += (not label) and decided
        fn += label and not decided
        tn += (not label) and not decided
    return {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0,
            "kept_fabrications": fp, "dropped_true": fn, "n": tp + fp + fn + tn}


def calibrate(rows: list[dict], verifier: Verifier, index: Index) -> dict:
    """Grid-search weight and threshold on the even rows; report them on the odd (held-out) rows too.

    The pick maximises F0.5 (precision counts double: a kept fabrication is
    worse than a dropped true sentence), then the higher threshold on ties.
    """
    feats = []
    for row in rows:
        claim = Claim(row["claim"], (1,))
        chunk = passage_for(row, index)
        vector = verifier.embedder.embed_batch([claim.text])[0]
        per_weight = {}
        for w in (0.0, 0.25, 0.5, 0.75, 1.0):
            verifier.semantic_weight = w
            best, _ = verifier._best_span(claim, vector, chunk, index)
            per_weight[w] = best.score if best else None  # None: a hard check failed
        feats.append((row["supported"], per_weight))

    def decide(rows_feats, w, t):
        return [(label, s[w] is not None and s[w] >= t) for label, s in rows_feats]

    fit, held = feats[0::2], feats[1::2]
    best = None
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        for t in np.arange(0.30, 0.91, 0.02):
            c = confusion(decide(fit, w, t))
            p, r = c["precision"], c["recall"]
            f = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
            if best is None or (f, t) > (best[0], best[2]):
                best = (f, w, round(float(t), 2))
    _, w, t = best
    verifier.semantic_weight, verifier.threshold = w, t
    return {"weight": w, "threshold": t, "fit": confusion(decide(fit, w, t)),
            "held_out": confusion(decide(held, w, t)), "all": confusion(decide(feats, w, t)),
            "hard_checks_only": confusion((label, s[w] is not None) for label, s in feats)}


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import tempfile
    from pathlib import Path

    from ..config import ROOT, Settings, offline_environment

    offline_environment()
    parser = argparse.ArgumentParser(description="Measure the claim check on a labelled set of claims.")
    parser.add_argument("claims", nargs="?", type=Path, default=ROOT / "eval" / "claims.jsonl")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    args = parser.parse_args(argv)
    from ..ingest import index as index_store
    from ..ingest.embedding import load_embedder
    from ..ingest.run import ingest

    embedder = load_embedder()
    with tempfile.TemporaryDirectory(prefix="rag-verify-") as tmp:
        settings = Settings(corpus_dir=args.corpus, index_dir=Path(tmp) / "index", data_dir=Path(tmp) / "data")
        ingest([args.corpus], settings, embedder_factory=lambda: embedder, progress=False)
        index = index_store.load(settings.index_dir)
        verifier = Verifier(embedder)
        shipped = confusion((row["supported"], verifier.check(Claim(row["claim"], (1,)),
                                                              [passage_for(row, index)], index).supported)
                            for row in labelled_claims(args.claims))
        result = calibrate(labelled_claims(args.claims), verifier, index)
    print(json.dumps({"shipped": {"weight": Verifier(embedder).semantic_weight,
                                  "threshold": Verifier(embedder).threshold, **shipped}, **result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
