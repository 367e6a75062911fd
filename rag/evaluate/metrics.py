"""Eval metrics: pure functions from (eval items, result lines, documents) to numbers.

A result line is the ``rag ask --json`` object plus ``"id"``, so every figure
here can be recomputed from a results file alone. Each definition is also
written out in words in the report (``DEFINITIONS``), so a reader never has to
open this file to know what a number means.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..answer.conversation import standalone
from ..types import Kind, Turn

# Gate direction: most metrics must reach a minimum; latencies must stay under a maximum.
HIGHER_IS_BETTER = {
    "hit_at_1": True, "hit_at_5": True, "mrr": True, "answer_retrieved": True,
    "answer_accuracy": True,
    "citation_source": True, "citation_verbatim": True, "citation_recall": True,
    "refusal_precision": True, "refusal_recall": True,
    "latency_p50_ms": False, "latency_p95_ms": False,
}

DEFINITIONS = {
    "hit_at_1": "Answerable questions whose top retrieved chunk comes from a gold source document.",
    "hit_at_5": "Answerable questions with a gold-source chunk among the first 5 retrieved.",
    "mrr": "Mean over answerable questions of 1/rank of the first retrieved chunk from a gold source (0 if none).",
    "answer_retrieved": "Answerable questions where some retrieved chunk (the top-k handed to the answerer) "
                        "contains an expected string: the answer was there to be picked.",
    "answer_accuracy": "Answerable questions answered (not refused) with an answer containing at least one "
                       "expected string, compared case- and whitespace-insensitively.",
    "citation_source": "Answerable questions that were answered (not refused) and cite at least one gold source document.",
    "citation_verbatim": "Quotes shown to the user (citations, and the closest passages shown beside a refusal) "
                         "for which document.text[start:end] == quote exactly. Must be 100%.",
    "citation_recall": "ALCE-style, extractive: every answer that was not refused is taken piece by piece "
                       "(the answer's ordered (text, citation) pieces). A piece is supported when its citation's "
                       "quote contains its text (case- and whitespace-insensitive). Share of supported pieces; "
                       "a date label piece (\"(2023)\") is ours, not a claim, and is skipped; other text with no citation is unsupported.",
    "refusal_precision": "Of the questions the bot refused, the share that were unanswerable.",
    "refusal_recall": "Of the unanswerable questions, the share the bot refused.",
    "latency_p50_ms": "Median time of Pipeline.ask per question, in ms (the result's latency_ms).",
    "latency_p95_ms": "95th percentile of latency_ms (linear interpolation between ranks).",
}

# The counts key each share is taken over, so a table can print "61/69" beside 0.884.
DENOMINATORS = {
    "hit_at_1": "answerable", "hit_at_5": "answerable", "mrr": "answerable", "answer_retrieved": "answerable",
    "answer_accuracy": "answerable", "citation_source": "answered", "citation_verbatim": "quotes",
    "citation_recall": "sentences", "refusal_precision": "refused", "refusal_recall": "unanswerable",
}

_WORDY = re.compile(r"\w")
# "(Aug 7, 2026) " / "(2022) ": the date label opening a quote when dated sources disagree (rag.answer.updates).
_DATE_LABEL = re.compile(r"^\((?:[A-Z][a-z]{2} \d{1,2}, )?\d{4}\)\s+")


@dataclass(frozen=True)
class EvalItem:
    """One line of an eval file."""

    id: str
    question: str
    answerable: bool
    answers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    history: tuple[Turn, ...] = ()
    category: str = "uncategorized"
    split: str = ""  # "dev" | "heldout" | "" (unsplit)
    line: int = 0  # where it came from, for error messages


@dataclass(frozen=True)
class Gate:
    """One threshold from eval/thresholds.json against its measured value."""

    metric: str
    threshold: float
    value: float | None

    @property
    def op(self) -> str:
        return ">=" if HIGHER_IS_BETTER[self.metric] else "<="

    @property
    def passed(self) -> bool | None:
        """None when there was nothing to measure it on (e.g. no unanswerable questions)."""
        if self.value is None:
            return None
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold


@dataclass
class Judged:
    """What the metrics saw in one result, and why it failed, if it did."""

    item: EvalItem
    result: dict
    correct: bool  # answerable: right answer; unanswerable: refused
    gold_rank: int | None  # 1-based rank of the first gold-source chunk
    answer_rank: int | None  # 1-based rank of the first chunk containing an expected string
    cites_gold: bool
    quotes: int
    bad_quotes: list[str] = field(default_factory=list)  # chunk ids whose quote is not verbatim
    sentences: int = 0
    unsupported: list[str] = field(default_factory=list)
    searched_as: str = ""  # the follow-up as rewritten with its history
    causes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        r, it = self.result, self.item
        return {
            "id": it.id, "category": it.category, "question": it.question,
            "history": [t.to_json() for t in it.history], "searched_as": self.searched_as,
            "expected": expected_text(it), "got": r["answer"], "kind": r["kind"], "refused": r["refused"],
            "correct": self.correct, "gold_rank": self.gold_rank, "answer_rank": self.answer_rank,
            "causes": self.causes, "retrieved": [x["chunk_id"] for x in r.get("retrieved", [])],
        }


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def expected_text(item: EvalItem) -> str:
    if not item.answerable:
        return "a refusal"
    return " | ".join(item.answers) + f"  (in {', '.join(item.sources)})"


def gold_rank(retrieved: Sequence[dict], sources: Sequence[str]) -> int | None:
    for rank, hit in enumerate(retrieved, start=1):
        if hit["doc_id"] in sources:
            return rank
    return None


def answer_is_correct(item: EvalItem, result: dict) -> bool:
    if not item.answerable:
        return bool(result["refused"])
    answer = normalize(result["answer"])
    return not result["refused"] and any(normalize(a) in answer for a in item.answers)


def unsupported_sentences(result: dict) -> tuple[int, list[str]]:
    """(pieces, those not supported by the quote they cite) for an answer that was given."""
    quotes = {c["n"]: normalize(c["quote"]) for c in result.get("citations", [])}
    pieces = [p for p in result.get("pieces", [])
              if _WORDY.search(p["text"]) and not (p["n"] is None and _DATE_LABEL.match(p["text"] + " "))]
    bad = [p["text"] for p in pieces if not (p["n"] in quotes and normalize(p["text"]) in quotes[p["n"]])]
    return len(pieces), bad


def is_verbatim(quote: dict, documents: Mapping) -> bool:
    doc = documents.get(quote["doc_id"])
    if doc is None:
        return False
    start, end = quote["start"], quote["end"]
    return 0 <= start <= end <= len(doc.text) and doc.text[start:end] == quote["quote"]


def answer_rank(retrieved: Sequence[dict], answers: Sequence[str], chunks: Mapping) -> int | None:
    wanted = [normalize(a) for a in answers]
    for rank, hit in enumerate(retrieved, start=1):
        chunk = chunks.get(hit["chunk_id"])
        if chunk is not None and any(w in normalize(chunk.text) for w in wanted):
            return rank
    return None


def judge(item: EvalItem, result: dict, documents: Mapping, chunks: Mapping | None = None) -> Judged:
    refused = bool(result["refused"])
    shown = list(result.get("citations", [])) + list(result.get("related", []))
    retrieved = result.get("retrieved", [])
    j = Judged(
        item, result, correct=answer_is_correct(item, result),
        gold_rank=gold_rank(retrieved, item.sources) if item.answerable else None,
        answer_rank=answer_rank(retrieved, item.answers, chunks) if item.answerable and chunks is not None else None,
        cites_gold=any(c["doc_id"] in item.sources for c in result.get("citations", [])),
        quotes=len(shown), bad_quotes=[q["chunk_id"] for q in shown if not is_verbatim(q, documents)],
    )
    if not refused:
        j.sentences, j.unsupported = unsupported_sentences(result)
    if item.history:
        j.searched_as = standalone(" ".join(item.question.split()), item.history)
    j.causes = _causes(j, chunks is not None)
    return j


def _causes(j: Judged, know_chunks: bool) -> list[str]:
    """The main reason first: what a person fixing it should look at."""
    item, refused, kind = j.item, bool(j.result["refused"]), j.result["kind"]
    causes = []
    if item.answerable and not j.correct:
        if item.history and normalize(j.searched_as) == normalize(item.question):
            causes.append("follow-up not rewritten")
        if refused and kind != Kind.NOT_FOUND:
            causes.append(f"false refusal ({kind})")  # safety or validation, before retrieval
        elif j.gold_rank is None or (know_chunks and j.answer_rank is None):
            causes.append("retrieval miss")
        else:
            causes.append("false refusal" if refused else "wrong sentence chosen")
    elif not item.answerable and not refused:
        causes.append("answered an unanswerable")
    if j.bad_quotes:
        causes.append("quote not verbatim")
    if j.unsupported:
        causes.append("sentence without a supporting citation")
    return causes


def check_thresholds(metrics: Mapping[str, float | None], thresholds: Mapping[str, float]) -> list[Gate]:
    return [Gate(name, limit, metrics.get(name)) for name, limit in thresholds.items()]


def _share(hits: Sequence[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def compute_metrics(items: Sequence[EvalItem], results: Sequence[dict], documents: Mapping,
                    chunks: Mapping | None = None) -> dict:
    """Every metric, per-category figures and a diagnosis of each question.

    Args:
        items: the eval questions.
        results: one result per item, matched by ``"id"``.
        documents: doc_id -> Document (anything with ``.text``), for the verbatim check.
        chunks: chunk_id -> Chunk (anything with ``.text``); optional. With it, answer_retrieved is
            measured and a failure is a retrieval miss when no retrieved chunk held the answer.

    Returns:
        ``{"metrics": {name: value or None}, "counts": {...}, "categories": [...],
        "questions": [Judged.to_json()...], "failures": [those with a cause], "latencies": [...]}``;
        a metric is None when there is nothing to measure it on.
    """
    by_id = {r["id"]: r for r in results}
    missing = [it.id for it in items if it.id not in by_id]
    if missing:
        raise ValueError(f"no result for {len(missing)} question(s): {', '.join(missing[:5])}")
    judged = [judge(it, by_id[it.id], documents, chunks) for it in items]
    answerable = [j for j in judged if j.item.answerable]
    answered = [j for j in answerable if not j.result["refused"]]
    refused = [j for j in judged if j.result["refused"]]
    unanswerable = [j for j in judged if not j.item.answerable]
    ranks = [j.gold_rank for j in answerable]
    quotes = sum(j.quotes for j in judged)
    sentences = sum(j.sentences for j in judged)
    latencies = [float(j.result["latency_ms"]) for j in judged]
    metrics = {
        "hit_at_1": _share([r is not None and r <= 1 for r in ranks]),
        "hit_at_5": _share([r is not None and r <= 5 for r in ranks]),
        "mrr": sum(1 / r for r in ranks if r) / len(ranks) if ranks else None,
        "answer_retrieved": _share([j.answer_rank is not None for j in answerable]) if chunks is not None else None,
        "answer_accuracy": _share([j.correct for j in answerable]),
        "citation_source": _share([j.cites_gold for j in answered]),
        "citation_verbatim": (quotes - sum(len(j.bad_quotes) for j in judged)) / quotes if quotes else None,
        "citation_recall": (sentences - sum(len(j.unsupported) for j in judged)) / sentences if sentences else None,
        "refusal_precision": _share([not j.item.answerable for j in refused]),
        "refusal_recall": _share([bool(j.result["refused"]) for j in unanswerable]),
        "latency_p50_ms": _percentile(latencies, 50),
        "latency_p95_ms": _percentile(latencies, 95),
    }
    counts = {"questions": len(judged), "answerable": len(answerable), "unanswerable": len(unanswerable),
              "answered": len(answered), "refused": len(refused), "quotes": quotes, "sentences": sentences}
    questions = [j.to_json() for j in judged]
    return {"metrics": metrics, "counts": counts, "categories": _categories(judged),
            "questions": questions, "failures": [q for q in questions if q["causes"]],
            "latencies": latencies}


def _categories(judged: Sequence[Judged]) -> list[dict]:
    rows = []
    for name in dict.fromkeys(j.item.category for j in judged):  # first-seen order
        group = [j for j in judged if j.item.category == name]
        ans = [j.correct for j in group if j.item.answerable]
        una = [j.correct for j in group if not j.item.answerable]
        rows.append({"category": name, "questions": len(group),
                     "answerable": len(ans), "accuracy": _share(ans),
                     "unanswerable": len(una), "refusal_correctness": _share(una),
                     "correct": _share([j.correct for j in group])})
    return rows
