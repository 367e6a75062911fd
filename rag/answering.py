"""The extractive answerer: pick the one to three sentences that best answer, and cite each.

No language model is involved, so nothing can be said that is not in the
documents: every answer sentence *is* a verbatim span of a source. The hard
part is knowing when to say nothing; see ``Answerer.min_score``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .chunking import split_sentences
from .embedding import Embedder
from .index import Index
from .lexical import content_terms
from .types import Citation, Hit, Piece, cited_text

NOT_FOUND = "The strike documents don't say."
TYPE_MISMATCH = 0.8  # score kept by a sentence lacking the kind of fact asked for (a number, a time)
CONTEXT_WEIGHT = 0.3  # weight of words a follow-up borrowed from earlier turns, against typed ones

# What a factoid answer must contain, by question form (classic answer typing).
_NUMBER = r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|dozen|hundred|thousand|million|billion|half)\b"
_TIME = (r"\b(19|20)\d\d\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|"
         r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|yesterday|week|month|year|since|until)\b")
_ANSWER_TYPES = [
    (re.compile(r"\bhow (many|much)\b|\bwhat (percent|number|amount)\b", re.I), re.compile(_NUMBER, re.I)),
    (re.compile(r"\bhow long\b|\bwhen\b|\bwhat (date|day|time|year)\b", re.I), re.compile(_NUMBER + "|" + _TIME, re.I)),
]


@dataclass(frozen=True)
class Candidate:
    doc_id: str
    title: str
    chunk_id: str
    page: int | None
    start: int
    end: int
    text: str
    rank: int  # retrieval rank of the chunk it came from
    sentence: int = -1  # row in the index's sentence table (its vector)


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float
    semantic: float
    coverage: float


class Answerer:
    """Scores candidate sentences by meaning (cosine) and by how much of the question they cover."""

    # min_score (Settings.min_answer_score) and semantic_weight were calibrated
    # on eval/questions.jsonl as a whole (a 2-knob grid; see the README): 0.44
    # trades some answers for refusing most unanswerable questions, since a
    # wrong confident answer is the worse error.
    def __init__(self, embedder: Embedder, min_score: float = 0.44, semantic_weight: float = 0.6,
                 max_sentences: int = 3, keep_ratio: float = 0.85):
        self.embedder = embedder
        self.min_score = min_score  # below this the best sentence is not an answer: refuse
        self.semantic_weight = semantic_weight
        self.max_sentences = max_sentences
        self.keep_ratio = keep_ratio  # extra sentences must score this close to the best

    def rank(self, question: str, hits: list[Hit], index: Index, query_vector: np.ndarray,
             focus: str | None = None) -> list[Scored]:
        """Every sentence of the retrieved chunks, best first.

        ``focus`` is what the user literally typed when ``question`` is its
        rewrite with context: words only the context brought in count for
        less, or a follow-up would be answered with the previous answer.
        """
        candidates = _candidates(hits, index)
        if not candidates:
            return []
        vectors = self._sentence_vectors(candidates, index)
        semantic = vectors @ query_vector
        idf, unseen = self._idf_table(index)
        typed = content_terms(focus) if focus else None
        weights = {t: idf.get(t, unseen) * (1.0 if typed is None or t in typed else CONTEXT_WEIGHT)
                   for t in content_terms(question)}
        total = sum(weights.values()) or 1.0
        wanted = answer_type(question)
        scored = []
        for cand, sim in zip(candidates, semantic):
            terms = content_terms(cand.text)
            coverage = sum(w for t, w in weights.items() if t in terms) / total
            score = self.semantic_weight * float(sim) + (1 - self.semantic_weight) * coverage
            if wanted and not wanted.search(cand.text):
                score *= TYPE_MISMATCH  # "how many" needs a number, "when" a time...
            scored.append(Scored(cand, score, float(sim), coverage))
        return sorted(scored, key=lambda s: (-s.score, s.candidate.rank, s.candidate.start))

    def select(self, ranked: list[Scored]) -> list[Scored]:
        """The sentences to answer with: empty means the documents don't answer."""
        if not ranked or ranked[0].score < self.min_score:
            return []
        best = ranked[0].score
        chosen = [ranked[0]]
        for s in ranked[1:]:
            if len(chosen) >= self.max_sentences:
                break
            if s.score < max(self.min_score, self.keep_ratio * best):
                break
            if not any(_overlaps(s.candidate, c.candidate) for c in chosen):
                chosen.append(s)
        return chosen

    def _sentence_vectors(self, candidates: list[Candidate], index: Index) -> np.ndarray:
        """The candidates' vectors, embedded at ingest (index.sentence_vectors)."""
        rows = np.fromiter((c.sentence for c in candidates), np.int64, len(candidates))
        return np.asarray(index.sentence_vectors[rows], dtype=np.float32)

    def _idf_table(self, index: Index) -> tuple[dict[str, float], float]:
        """Term weights, computed at ingest (index.idf)."""
        return index.idf.terms, index.idf.unseen


def answer_type(question: str) -> re.Pattern | None:
    for asks, needs in _ANSWER_TYPES:
        if asks.search(question):
            return needs
    return None


def compose(chosen: list[Scored], index: Index) -> tuple[str, tuple[Citation, ...], tuple[Piece, ...]]:
    """Answer text with a [n] after each sentence, the matching citations, and the (quote, n) pieces."""
    cands = [_with_context(s.candidate, index.documents[s.candidate.doc_id].text) for s in chosen]
    citations = tuple(_citation(n, c) for n, c in enumerate(cands, start=1))
    pieces = tuple(Piece(c.quote, c.n) for c in citations)
    return cited_text(pieces), citations, pieces


def related(ranked: list[Scored], limit: int = 3) -> tuple[Citation, ...]:
    """Closest passages to show beside a refusal: one per chunk, best first."""
    seen, out = set(), []
    for s in ranked:
        if s.candidate.chunk_id not in seen:
            seen.add(s.candidate.chunk_id)
            out.append(_citation(len(out) + 1, s.candidate))
        if len(out) == limit:
            break
    return tuple(out)


def _citation(n: int, c: Candidate) -> Citation:
    return Citation(n=n, doc_id=c.doc_id, title=c.title, page=c.page, chunk_id=c.chunk_id,
                    quote=c.text, start=c.start, end=c.end)


def _candidates(hits: list[Hit], index: Index) -> list[Candidate]:
    """Sentences of the hit chunks (split at ingest), each once even where chunks overlap."""
    seen: set[int] = set()
    out = []
    for rank, hit in enumerate(hits):
        chunk = hit.chunk
        doc = index.documents[chunk.doc_id]
        for row, start, end in index.sentences_of(index.row_of(chunk)):
            text = doc.text[start:end]
            if row in seen or not _informative(text, doc.title) or doc.is_heading(start, end):
                continue
            seen.add(row)
            out.append(Candidate(chunk.doc_id, chunk.title, chunk.chunk_id, doc.page_at(start),
                                 start, end, text, rank, row))
    return out


_ATTRIBUTION = re.compile(r"\b(said|says|say|stated|states|according to|told|wrote)\b", re.I)
_ANAPHOR = re.compile(r"^[“\"]|^(that|this|these|those|it|its|they|their|he|she|his|her|however|but|"
                      r"additionally|meanwhile|also|as a result)\b", re.I)


def _with_context(c: Candidate, text: str) -> Candidate:
    """Widen a sentence that leans on the one before it: an unattributed quote
    continuing someone's words, or one that opens with "That"/"However"...
    The widened quote is still one verbatim span of the document."""
    if not _ANAPHOR.search(c.text) or (c.text.startswith(("“", '"')) and _ATTRIBUTION.search(c.text)):
        return c
    paragraph_start = text.rfind("\n", 0, c.start) + 1
    before = split_sentences(text, paragraph_start, c.start)
    if not before:
        return c
    start = before[-1][0]
    return replace(c, start=start, text=text[start:c.end])


def _informative(sentence: str, title: str) -> bool:
    """Headings, list lead-ins ("Kaiser wants to:") and fragments answer nothing alone."""
    return (len(sentence.split()) >= 4 and not sentence.rstrip().endswith(":")
            and sentence.strip() != title.strip())


def _overlaps(a: Candidate, b: Candidate) -> bool:
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end
