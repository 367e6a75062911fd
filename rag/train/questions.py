"""The questions the reader learns from and is measured on, as ``QAItem``s.

SQuAD 2.0 (the dev half in ../shared/datasets/squad2-dev-half), split by article
(``splits.squad_split``), and the questions we wrote over other unions' documents
(training/reader/labels.jsonl), split by document (``splits.union_split``).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import ROOT, shared_dir
from ..ingest.chunking import split_sentences

UNION_LABELS = ROOT / "training" / "reader" / "labels.jsonl"
WINDOW = 12  # sentences around the evidence: about what a question's top chunks hold


def default_squad() -> Path:
    return shared_dir("datasets", "squad2-dev-half", "dev-v2.0-half.json")


@dataclass(frozen=True)
class QAItem:
    """One question with the sentences of its passage; ``positives`` are indices into them."""

    qid: str
    article: str
    question: str
    heading: str
    sentences: tuple[str, ...]
    positives: frozenset[int]  # empty: the passage does not answer (SQuAD 2.0 "impossible")
    paragraph: int
    answers: tuple[str, ...] = ()  # the answer spans' texts (none for an unanswerable question)
    traps: frozenset[int] = frozenset()  # sentences written down as tempting a wrong answer
    contexts: tuple[str, ...] = ()  # per sentence, where it sits (answering.reading_context); SQuAD: none

    @property
    def answerable(self) -> bool:
        return bool(self.positives)


def load_squad(path: Path) -> list[QAItem]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    items = []
    for article in data:
        heading = article["title"].replace("_", " ")
        for p_no, para in enumerate(article["paragraphs"]):
            context = para["context"]
            spans = split_sentences(context)
            sentences = tuple(context[a:b] for a, b in spans)
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa["answers"]
                hit = set()
                for ans in answers:
                    lo, hi = ans["answer_start"], ans["answer_start"] + len(ans["text"])
                    hit.update(i for i, (a, b) in enumerate(spans) if a < hi and lo < b)
                if answers and not hit:
                    continue  # an answer our splitter cannot place: skip, don't mislabel
                items.append(QAItem(qa["id"], article["title"], qa["question"], heading, sentences,
                                    frozenset(hit), p_no, tuple(sorted({a["text"] for a in answers}))))
    return items


def load_union(labels: Path = UNION_LABELS) -> list[QAItem]:
    """The written questions as QAItems: a window of WINDOW sentences of the document around
    the labelled span (placed by a hash, so the answer is not always in the middle); the
    span's sentences are the positives (for an unanswerable question, the traps). A follow-up
    is read as the pipeline reads it, rewritten with its history (conversation.standalone).
    A document whose bytes differ from the label's SHA-256 is an error: its offsets would lie."""
    from ..answer.answering import reading_context
    from ..answer.conversation import standalone
    from ..types import turns
    from ..ingest.loaders import load_file
    from ..ingest.structure import section_path

    corpora = shared_dir("corpora")
    docs: dict[str, tuple[str, list[tuple[int, int]], tuple]] = {}
    items = []
    for n, line in enumerate(Path(labels).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        doc = row["doc"]
        if doc not in docs:
            path = corpora / doc
            if hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
                raise ValueError(f"{labels}:{n}: {path} is not the document the label was written on")
            document = load_file(path, doc).document
            docs[doc] = (document.text, split_sentences(document.text), document.headings)
        text, spans, headings = docs[doc]
        hit = [i for i, (a, b) in enumerate(spans) if a < row["end"] and row["start"] < b]
        if not hit:
            raise ValueError(f"{labels}:{n}: offsets {row['start']}-{row['end']} hold no sentence of {doc}")
        size = max(WINDOW, hit[-1] - hit[0] + 1)  # a long span (a PDF's short lines) is kept whole
        shift = int(hashlib.sha256(f"{doc}#{n}".encode()).hexdigest(), 16) % (size - (hit[-1] - hit[0]))
        first = max(0, min(hit[0] - shift, len(spans) - size))
        window = spans[first:first + size]
        inside = frozenset(i - first for i in hit)
        question = standalone(row["question"], turns(row.get("history")))
        contexts = tuple(reading_context(text, headings, spans[i][0], spans[i - 1] if i else None)
                         for i in range(first, first + len(window)))
        items.append(QAItem(f"{doc}#{n}", doc, question, section_path(headings, spans[hit[0]][0]),
                            tuple(text[a:b] for a, b in window), inside if row["answerable"] else frozenset(),
                            first, (row["answer"],) if row["answerable"] else (),
                            traps=frozenset() if row["answerable"] else inside, contexts=contexts))
    return items


def group_by_article(items: Iterable[QAItem]) -> dict[str, list[QAItem]]:
    """The questions of each article, in order."""
    groups: dict[str, list[QAItem]] = {}
    for it in items:
        groups.setdefault(it.article, []).append(it)
    return groups


def article_idf(items: Iterable[QAItem]) -> dict[str, tuple[dict[str, float], float]]:
    """Per article, the term weights of its paragraphs (``idf_table``), as an index would hold them."""
    from ..ingest.sentences import idf_table

    return {article: idf_table(" ".join(s) for s in {o.paragraph: o.sentences for o in its}.values())
            for article, its in group_by_article(items).items()}
