"""The one path every question takes, from the CLI, the chat UI, the API and the eval.

    question ─▶ clean ─▶ safety (rules + detector) ─▶ standalone rewrite ─▶ retrieve ─▶ answer
"""
from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .answer.answering import HEURISTIC_MIN_SCORE, Answerer, compose, related
from .answer.conversation import previous_answer, standalone
from .answer.crisis import CrisisDetector, CrisisHead, encoder_for
from .answer.crisis_reread import CrisisRereader
from .answer.reader import load_reader
from .answer.retrieval import Retriever
from .answer.crisis import with_history
from .answer.names import initialisms, unknown_names
from .answer.personal import asks_own_records
from .answer.safety import screen, storable
from .answer.spelling import Spelling
from .answer.updates import annotate, date_labels, label_pieces, prefer_recent, reconcile
from .config import Settings
from .errors import IndexCorruptError, InvalidQuestionError
from .ingest import index as index_store
from .ingest.embedding import Embedder, load_embedder
from .ingest.index import Index
from .types import SENSITIVE, Answer, Kind, Turn, cited_text

if TYPE_CHECKING:
    from .answer.cross import CrossReader

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_question(text: object) -> str:
    """Normalised question text, or InvalidQuestionError saying what to change."""
    if not isinstance(text, str):
        raise InvalidQuestionError("The question must be text.")
    if _SURROGATE.search(text):  # half of a UTF-16 pair: no character at all, and unencodable
        raise InvalidQuestionError("The question contains an invalid character; please retype it.")
    text = " ".join(unicodedata.normalize("NFC", _CONTROL.sub(" ", text)).split())
    if not text:
        raise InvalidQuestionError("Please type a question.")
    return text


def _check_length(text: str, max_chars: int) -> str:
    if len(text) > max_chars:
        raise InvalidQuestionError(
            f"That question is {len(text):,} characters long; please keep it under {max_chars:,}.")
    return text


def _screened(text: str, max_chars: int) -> str:
    """What the safety check reads of an overlong message: its start and its end, a bounded window.

    A megabyte of text must not hold a worker for seconds before the length check
    refuses it; a long message tends to say what matters first or last.
    """
    if len(text) <= 2 * max_chars:
        return text
    return text[:max_chars] + "\n" + text[-max_chars:]


class Pipeline:
    """Shares one model and one index between threads; picks up a new index build by itself."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 reader: "CrossReader | None" = None):
        self.settings = settings
        index = index_store.load(settings.index_dir)  # fail now, clearly, before the slow model load
        self.embedder = embedder or load_embedder(settings.model, settings.precision)
        if reader is None and settings.reader_model != "none":
            reader = load_reader(settings.reader_model)
        # The cross-encoder reads the sentences' text, so it serves an index built with any model.
        # Unset, the threshold belongs to the scorer: the one stored with the reader, or the heuristic's.
        min_score = settings.min_answer_score
        if min_score is None:
            min_score = reader.threshold if reader else HEURISTIC_MIN_SCORE
        self.answerer = Answerer(self.embedder, min_score=min_score, reader=reader)
        # Under a crisis response only the first stage's confident answers are quoted: the reader
        # answers more near-topic questions than it did ("I want to die. When does the strike
        # start?" got a passage that lacks a date), and a wrong quote under the crisis text costs
        # more than none. With no reader it is the same answerer.
        self.cautious = Answerer(self.embedder, min_score=HEURISTIC_MIN_SCORE) if reader else self.answerer
        spanish = CrisisHead(settings.crisis_model_es)
        self.detector = CrisisDetector(self.embedder, CrisisHead(settings.crisis_model),
                                       spanish=CrisisDetector(encoder_for(spanish, self.embedder), spanish),
                                       second=CrisisRereader(settings.crisis_reread))
        self.contact = settings.contact()
        self.generator = _generator(settings, self.embedder)  # None: extractive answers only
        self._lock = threading.Lock()
        self._initialisms: tuple[str, frozenset[str]] = ("", frozenset())
        self._retriever: Retriever | None = self._make_retriever(index)
        self._checked = time.monotonic()

    def retriever(self) -> Retriever:
        """The retriever over the live index build, reloading when CURRENT changes.

        A reload happens beside the old index, so questions keep being answered
        from it until the new one is fully loaded; then one reference is swapped.
        """
        current = self._retriever
        if current and time.monotonic() - self._checked < 1.0:
            return current
        self._checked = time.monotonic()
        version = index_store.current_version(self.settings.index_dir)
        if current and version == current.index.version:
            return current
        with self._lock:
            if self._retriever is None or version != self._retriever.index.version:
                try:
                    index = index_store.load(self.settings.index_dir)
                except IndexCorruptError:
                    if self._retriever is None:
                        raise
                    return self._retriever  # keep serving the build we have
                self._retriever = self._make_retriever(index)
            return self._retriever

    def _make_retriever(self, index: Index) -> Retriever:
        return Retriever.configured(index, self.embedder, self.settings)

    @property
    def index(self) -> Index:
        return self.retriever().index

    def ask(self, question: str, history: Sequence[Turn] = (), top_k: int | None = None,
            generate: bool = True) -> Answer:
        started = time.perf_counter()
        # Safety first, even before the length limit: someone in crisis who
        # pastes a long message must get the crisis resources, not an error.
        text = clean_question(question)
        verdict = screen(_screened(text, self.settings.max_question_chars), self.detector)
        if history and not (verdict and verdict.kind == Kind.CRISIS):
            # Read with the member's previous message, an intent stated one turn earlier still
            # counts ("i've been thinking about ending it" ... "how do i change my beneficiary").
            # It only ever raises a crisis: a medical question is not referred again next turn.
            joined = screen(_screened(with_history(text, history), self.settings.max_question_chars), self.detector)
            verdict = joined if joined and joined.kind == Kind.CRISIS else verdict
        if verdict and verdict.kind == Kind.CRISIS:
            return self._crisis_first(text, verdict.message, history, top_k, started)
        if verdict and verdict.kind != Kind.CONCERN:  # fixed, human-written text; never retrieved or generated
            return Answer(text[:self.settings.max_question_chars], verdict.message, refused=True,
                          kind=verdict.kind, timings_ms={"safety": _ms(started)})
        notice = verdict.message if verdict else ""  # "concern": answer, with resources under it
        return self._look_up(text, history, top_k, notice, started, generate)

    def _crisis_first(self, text: str, message: str, history: Sequence[Turn], top_k: int | None,
                      started: float) -> Answer:
        """The crisis response, and under it the documents' answer when the message also asks
        something they answer: a screen that mistakes strike talk ("when do we go back in?") for
        a crisis must not send a member to a crisis line *instead of* an answer. A message they
        do not answer gets the crisis response alone. Never generated: quoted passages only."""
        alone = Answer(text[:self.settings.max_question_chars], message, refused=True, kind=Kind.CRISIS,
                       timings_ms={"safety": _ms(started)})
        if len(text) > self.settings.max_question_chars:
            return alone
        found = self._look_up(text, history, top_k, "", started, generate=False, answerer=self.cautious)
        if found.kind != Kind.ANSWER:
            return alone
        return replace(found, text=message, kind=Kind.CRISIS, notice="")

    def _look_up(self, text: str, history: Sequence[Turn], top_k: int | None, notice: str, started: float,
                 generate: bool, answerer: Answerer | None = None) -> Answer:
        """The documents' answer to a screened message (``notice``: the resources line under it)."""
        answerer = answerer or self.answerer
        question = _check_length(text, self.settings.max_question_chars)
        retriever = self.retriever()
        speller = retriever.speller if self.settings.spelling else None
        spelling = speller.correct(question) if speller else Spelling(question)
        typed = spelling.text  # what the member meant to type: searched and read in their place
        if notice and spelling.fixes and screen(typed, self.detector) is None:
            # Misspelt words alone made the detector hear distress ("how much sick leve do i
            # acrue": P(distress) 0.56; spelled right, 0.09). Only "concern" is ever dropped
            # so: a crisis verdict returned above, on the words as typed.
            notice = ""
        query = standalone(typed, history)
        if speller and query != typed:
            query = speller.correct(query).text  # earlier turns' typos too
        timings = {"prepare": _ms(started)}
        t = time.perf_counter()
        vector = retriever.embed_query(query)
        # A follow-up is searched for beside the previous answer's passage, but read (ranked) as
        # the rewritten question alone, or the previous answer would simply be chosen again.
        near = previous_answer(history) if query != typed else ""
        searched = f"{query} {near}" if near else query
        searched_vector = retriever.embed_query(searched) if near else vector
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        hits = retriever.search(searched, top_k or self.settings.top_k, vector=searched_vector)
        hits = prefer_recent(query, hits, retriever.index.documents, self.settings.recency_boost)
        timings["retrieve"] = _ms(t)
        t = time.perf_counter()
        ranked = answerer.rank(query, hits, retriever.index, vector,
                                    focus=typed if query != typed else None)
        chosen = answerer.select(ranked)
        chosen, labels = reconcile(query, chosen, ranked, retriever.index.documents,
                                   min_score=answerer.min_score)
        if unknown_names(typed, retriever.index.words, self._spelled_out(retriever.index)) \
                or asks_own_records(typed):
            chosen = []  # it names another union, employer, person or place; or asks for the asker's own record
        timings["answer"] = _ms(t)
        documents = retriever.index.documents
        if not chosen:
            return Answer(question, self.settings.not_found_text, refused=True, kind=Kind.NOT_FOUND, retrieved=tuple(hits),
                          related=annotate(related(ranked), documents), standalone_question=query,
                          timings_ms=timings, notice=notice, contact=self.contact, corrected=spelling.fixes,
                          storable=not notice and storable(text, self.detector))
        _, citations, pieces = compose(chosen, retriever.index)
        citations = annotate(citations, documents)
        labels = labels or date_labels(query, citations)
        pieces = label_pieces(pieces, citations, labels)
        text = cited_text(pieces)  # the plain text is always the pieces', never edited on its own
        answer = Answer(question, text, refused=False, kind=Kind.ANSWER, citations=citations, pieces=pieces,
                        retrieved=tuple(hits), standalone_question=query, timings_ms=timings, notice=notice,
                        corrected=spelling.fixes)
        if generate and self.generator:  # only once safety, retrieval and the answerer said "answer"
            return _last(self.generator.stream(answer, retriever.index))
        return answer

    def _spelled_out(self, index: Index) -> frozenset[str]:
        """The initials of the documents' capitalised names, once per index build."""
        version, known = self._initialisms
        if version != index.version:
            known = initialisms(c.text for c in index.chunks)
            self._initialisms = (index.version, known)
        return known

    def private_kind(self, question: str, answer: str = "") -> Kind | None:
        """Why an exchange may not be stored, or None if it may: the screen's sensitive verdict
        on the question or the answer ("crisis", "medical", "concern"), else "private" where
        safety.storable refuses the member's question. The store keeps the vote without its text."""
        for text in (question, answer):
            verdict = screen(text, self.detector) if text else None
            if verdict and verdict.kind in SENSITIVE:
                return verdict.kind
        return None if storable(question, self.detector) else Kind.PRIVATE

    def stream(self, question: str, history: Sequence[Turn] = (),
               top_k: int | None = None) -> Iterator:
        """As ask(), but yields each generated sentence (generation.Sentence) once verified; the Answer last."""
        answer = self.ask(question, history, top_k, generate=False)
        if self.generator is None or answer.kind != Kind.ANSWER:
            yield answer
            return
        yield from self.generator.stream(answer, self.index)


def _generator(settings: Settings, embedder: Embedder):
    if not settings.llm_url:
        return None
    from .answer.generation import Generator

    return Generator(settings, embedder)


def _last(events):
    for event in events:
        pass
    return event


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
