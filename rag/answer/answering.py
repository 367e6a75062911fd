"""The extractive answerer: pick the one to three sentences that best answer, and cite each.

No language model is involved, so nothing can be said that is not in the
documents: every answer sentence *is* a verbatim span of a source. The hard
part is knowing when to say nothing; see ``Answerer.min_score``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..ingest.embedding import Embedder
from ..ingest.index import Index
from ..ingest.lexical import content_terms
from ..ingest.structure import is_title_case
from ..types import Citation, Heading, Hit, Piece, cited_text, section_path

if TYPE_CHECKING:
    from .cross import CrossReader

HEURISTIC_MIN_SCORE = 0.44  # the heuristic's refusal threshold, calibrated on eval/questions.jsonl
TYPE_MISMATCH = 0.8  # score kept by a sentence lacking the kind of fact asked for (a number, a time)
CONTEXT_WEIGHT = 0.3  # weight of words a follow-up borrowed from earlier turns, against typed ones
FRAGMENT_WORDS = 8  # a line shorter than this is a fragment: read with its section (Candidate.read)
HEADLINE_LINES = 3  # a Title Case line among a document's first three is its headline, never quoted
CONTEXT_WORDS = 30  # of the sentence before, read beside a candidate by a context-reading reader

# What a factoid answer must contain, by question form (classic answer typing).
_NUMBER = r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|dozen|hundred|thousand|million|billion|half)\b"
_TIME = (r"\b(19|20)\d\d\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|"
         r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|yesterday|week|month|year|since|until)\b")
_ANSWER_TYPES = [
    (re.compile(r"\bhow (many|much)\b|\bwhat (percent|number|amount)\b", re.I), re.compile(_NUMBER, re.I)),
    (re.compile(r"\bhow long\b|\bwhen\b|\bwhat (date|day|time|year)\b", re.I), re.compile(_NUMBER + "|" + _TIME, re.I)),
]
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
# A question asserts nothing: "Haven't signed the strike pledge yet?" answers no "how many signed".
_QUESTION_END = re.compile(r"\?[\"'”’)\]]*\s*$")


@dataclass(frozen=True)
class Candidate:
    """A sentence that might answer, with what the reader needs around it.

    Everything here comes from the sentence table stored at ingest: no text is
    split or embedded per question.
    """

    doc_id: str
    title: str
    chunk_id: str
    page: int | None
    start: int
    end: int
    text: str
    rank: int  # retrieval rank of the chunk it came from
    sentence: int = -1  # row in the index's sentence table (its vector)
    heading: str = ""  # where it sits: the section or document title
    previous: tuple[int, int] | None = None  # span of the sentence before it in its paragraph
    before: tuple[int, int] | None = None  # span of the sentence before it, in any paragraph (``reading_context``)

    @property
    def read(self) -> str:
        """What the answerer reads of it (term coverage, the reader): a fragment ("2026-2027 -
        $14.04", a line of a pay schedule) with the section it sits in, as a reader of the page
        sees it under its heading; a sentence alone. Not under the document's title alone: a
        byline under it ("Posted October 3, 2026 by ...") would borrow the words of a question
        that names the page. The quote is always ``text``."""
        if self.heading and self.heading != self.title and len(self.text.split()) < FRAGMENT_WORDS:
            return f"{self.heading}: {self.text}"
        return self.text


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float  # with a reader a probability (see Answerer); the heuristic score without one
    semantic: float
    coverage: float
    heuristic: float = 0.0


class Answerer:
    """Ranks candidate sentences. A cheap first stage scores them all: cosine + term coverage, on
    the scale of HEURISTIC_MIN_SCORE, and alone decides without a reader (``reader=None``). The
    cross-encoder (the shipped reader) reads the first stage's best and decides with it
    (``_cross_rank``). ``min_score`` comes from Settings.min_answer_score.
    """

    # semantic_weight (0.6) was calibrated on eval/questions.jsonl for the heuristic.
    def __init__(self, embedder: Embedder, *, min_score: float, semantic_weight: float = 0.6,
                 max_sentences: int = 3, keep_ratio: float = 0.85, reader: "CrossReader | None" = None):
        self.embedder = embedder
        self.reader = reader
        self.min_score = min_score  # below this the best sentence is not an answer: refuse
        self.semantic_weight = semantic_weight
        self.max_sentences = max_sentences
        self.keep_ratio = keep_ratio  # extra sentences must score this close to the best

    def rank(self, question: str, hits: list[Hit], index: Index, query_vector: np.ndarray,
             focus: str | None = None) -> list[Scored]:
        """The candidate sentences, best first.

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
        coverage, typed = first_stage_features(question, [c.read for c in candidates], idf, unseen, focus)
        heuristic = self.semantic_weight * semantic + (1 - self.semantic_weight) * coverage
        heuristic = np.where(typed, heuristic, heuristic * TYPE_MISMATCH)  # "how many" needs a number...
        order = sorted(range(len(candidates)), key=lambda i: (-heuristic[i], candidates[i].rank, candidates[i].start))
        if self.reader is not None:
            return self._cross_rank(question, candidates, order, semantic, coverage, heuristic, index)
        return [Scored(candidates[i], float(heuristic[i]), float(semantic[i]), float(coverage[i]),
                       float(heuristic[i])) for i in order]

    def _cross_rank(self, question: str, candidates: list[Candidate], order: list[int], semantic: np.ndarray,
                    coverage: np.ndarray, heuristic: np.ndarray, index: Index) -> list[Scored]:
        """The cross-encoder reads the question with the first stage's best ``reads`` candidates.

        Its probabilities add to the heuristic to choose (``fusion`` weight: alone it chose no
        better than the heuristic, together better, docs/reader.md), and their sum, the probability that
        one of them answers, decides whether to answer. So a candidate's score is that
        probability times its fused score's share of the best one: the best candidate's score is
        the refusal knob (a probability), and the others keep their distance from it. A question
        whose best first-stage score is under the reader's ``floor`` is not read: refused.
        """
        def context(i: int) -> str:  # asked only for those it reads: a section path walks the headings
            c = candidates[i]
            doc = index.documents[c.doc_id]
            return reading_context(doc.text, doc.headings, c.start, c.before)

        order, fused, answers = self.reader.fuse(question, [c.read for c in candidates], heuristic, order, context)
        best = fused[order[0]]
        share = np.clip(fused / best, 0.0, 1.0) if best > 0 else np.zeros(len(fused))
        return [Scored(candidates[i], answers * float(share[i]), float(semantic[i]), float(coverage[i]),
                       float(heuristic[i])) for i in order]

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


def reading_context(text: str, headings: tuple[Heading, ...], start: int, before: tuple[int, int] | None) -> str:
    """Where the sentence at ``start`` of ``text`` sits, as the cross-encoder reads it beside the
    sentence: its section's heading path and the end of the sentence before it (span ``before``,
    in any paragraph), so a reason can meet the event it explains and a contract's clause the
    topic it continues. The one rule for training (rag.train.questions) and answering."""
    words = text[before[0]:before[1]].split()[-CONTEXT_WORDS:] if before else []
    return " | ".join(part for part in (section_path(headings, start).strip(), " ".join(words)) if part)


def first_stage_features(question: str, sentences: list[str], idf: dict[str, float], unseen: float,
                         focus: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence: IDF-weighted share of the question's terms it holds, and whether it
    holds the kind of fact asked for (a number for "how many", a time for "when")."""
    typed = content_terms(focus) if focus else None
    weights = {t: idf.get(t, unseen) * (1.0 if typed is None or t in typed else CONTEXT_WEIGHT)
               for t in content_terms(question)}
    total = sum(weights.values()) or 1.0
    wanted = answer_type(question)
    coverage = np.array([sum(w for t, w in weights.items() if t in content_terms(s)) / total
                         for s in sentences], dtype=np.float64)
    type_ok = np.array([wanted is None or bool(wanted.search(s)) for s in sentences])
    return coverage, type_ok


def answer_type(question: str) -> re.Pattern | None:
    for asks, needs in _ANSWER_TYPES:
        if asks.search(question):
            return needs
    return None


def compose(chosen: list[Scored], index: Index) -> tuple[str, tuple[Citation, ...], tuple[Piece, ...]]:
    """Answer text, citations and ordered (quote, n) pieces, best first.

    Sentences that lean on the one before are widened to include it;
    sentences next to each other in one paragraph become one quote. Every
    quote is one verbatim span: ``document.text[start:end] == quote``.
    """
    spans: list[Candidate] = []
    for s in chosen:
        c = _with_context(s.candidate, index.documents[s.candidate.doc_id].text)
        spans = _merge_into(spans, c, index.documents[c.doc_id].text)
    distinct: dict[str, list[Candidate]] = {}  # one quote per distinct sentence, with all its places
    for c in spans:
        distinct.setdefault(" ".join(c.text.split()).casefold(), []).append(c)
    citations = tuple(replace(_citation(n, first), also=tuple(_citation(n, o) for o in others))
                      for n, (first, *others) in enumerate(distinct.values(), start=1))
    pieces = tuple(Piece(c.quote, c.n) for c in citations)
    return cited_text(pieces), citations, pieces


def _merge_into(spans: list[Candidate], c: Candidate, text: str) -> list[Candidate]:
    """Add c to the quotes so far, joined with every quote it overlaps or sits right next to
    in the same paragraph; a joined quote takes the place of its best-ranked part."""
    spans = list(spans)
    place = len(spans)
    while (i := next((i for i, o in enumerate(spans) if _touches(o, c, text)), None)) is not None:
        other = spans.pop(i)
        start, end = min(other.start, c.start), max(other.end, c.end)
        c = replace(other, start=start, end=end, text=text[start:end], page=other.page or c.page)
        place = min(place, i)
    spans.insert(place, c)
    return spans


def _touches(a: Candidate, b: Candidate, text: str) -> bool:
    if a.doc_id != b.doc_id:
        return False
    lo, hi = (a, b) if a.start <= b.start else (b, a)
    if lo.end >= hi.start:
        return True
    gap = text[lo.end:hi.start]
    return not gap.strip() and "\n" not in gap  # only spaces between: same paragraph, adjacent


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
        row = index.row_of(chunk)
        sentences = index.sentences_of(row)
        previous = _last_sentence_before(index, row, chunk.doc_id, sentences[0][1]) if sentences else None
        for sentence_row, start, end in sentences:
            before, previous = previous, (start, end)
            text = doc.text[start:end]
            if sentence_row in seen or not _informative(text, doc.title, doc.text, start) or doc.is_heading(start, end):
                continue
            seen.add(sentence_row)
            out.append(Candidate(chunk.doc_id, chunk.title, chunk.chunk_id, doc.page_at(start),
                                 start, end, text, rank, sentence_row, heading=chunk.section or chunk.title,
                                 previous=_same_paragraph(doc.text, before, start), before=before))
    return out


def _last_sentence_before(index: Index, row: int, doc_id: str, start: int) -> tuple[int, int] | None:
    """The stored sentence ending before ``start``, from the chunk before (a document's chunks
    are consecutive rows); None at the document's start."""
    if row == 0 or index.chunks[row - 1].doc_id != doc_id:
        return None
    earlier = [(a, b) for _, a, b in index.sentences_of(row - 1) if b <= start]
    return earlier[-1] if earlier else None


def _same_paragraph(text: str, span: tuple[int, int] | None, start: int) -> tuple[int, int] | None:
    """``span`` if only spaces part it from ``start`` (the same paragraph), else None."""
    if span is None or start - span[1] > 200 or "\n" in text[span[1]:start]:
        return None
    return span


_ATTRIBUTION = re.compile(r"\b(said|says|say|stated|states|according to|told|wrote)\b", re.I)
_ANAPHOR = re.compile(r"^[“\"]|^(that|this|these|those|it|its|they|their|he|she|his|her|however|but|"
                      r"additionally|meanwhile|also|as a result)\b", re.I)


def _with_context(c: Candidate, text: str) -> Candidate:
    """Widen a sentence that leans on the one before it: an unattributed quote
    continuing someone's words, or one that opens with "That"/"However"...
    The widened quote is still one verbatim span of the document."""
    if not _ANAPHOR.search(c.text) or (c.text.startswith(("“", '"')) and _ATTRIBUTION.search(c.text)):
        return c
    if c.previous is None:
        return c
    start = c.previous[0]
    return replace(c, start=start, text=text[start:c.end], previous=None)


def _informative(sentence: str, title: str, text: str, start: int) -> bool:
    """Headings, headlines, list lead-ins ("Kaiser wants to:") and fragments answer nothing alone; a
    short line holding a figure ("2026-2027 - $14.04") does, read under its section
    (Candidate.read). A headline is a line in Title Case without a sentence's end, of any length,
    among the document's first lines (``_in_opening``): the deck under a page's title ("Kaiser
    Permanente Mental Health Therapists in Northern California and Central Valley Voting on Strike
    Authorization"). Further down such a line may be a list (a contract's holidays, "Family Day
    National Day of Truth and Reconciliation Good Friday") and is kept. ``sentence`` is
    ``text[start:...]``."""
    words = sentence.split()
    figure = any(ch.isdigit() for ch in sentence)
    heading_like = not _SENTENCE_END.search(sentence) and not figure and (
        len(words) < FRAGMENT_WORDS or (is_title_case(sentence, max_words=None) and _in_opening(text, start)))
    return ((len(words) >= 4 or (figure and len(words) >= 2)) and not sentence.rstrip().endswith(":")
            and not heading_like and not _QUESTION_END.search(sentence) and sentence.strip() != title.strip())


def _in_opening(text: str, start: int) -> bool:
    """Whether ``start`` lies among the document's first HEADLINE_LINES non-empty lines (they lie
    well within 2,000 characters, so nothing further in is counted)."""
    return start <= 2000 and sum(1 for line in text[:start].split("\n") if line.strip()) < HEADLINE_LINES


def _overlaps(a: Candidate, b: Candidate) -> bool:
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end
