"""Newer documents update older ones: prefer them for questions about the present, and
show both figures, newest first, when documents of different dates disagree.

Two small pieces that sit beside the answerer rather than inside it:

- ``prefer_recent``: for a question about the present ("latest", "now", "yet",
  "still", "current", "has ... been"), a retrieval tie-break that lifts chunks
  of newer documents by at most ``Settings.recency_boost`` (fused scores are spread
  over ~0-4, so this settles near-ties and never overrides a clear match);
- ``reconcile``: when the chosen answer states a figure ($, %, a count) and a
  closely matching sentence of another document states a different figure
  for the same thing, answer with both, newest first, each labelled with its
  date ("(2023) ... [1] (2022) ... [2]"). A statement's date is the year it
  names itself ("a record $50 million fine against Kaiser in 2023"), else its
  document's date;
- ``date_labels``: for "when" and present-tense questions, each quote opens with
  its document's date ("(Aug 7, 2026) Our bargaining team declared impasse"),
  so an answer says how current it is.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..ingest.dates import display
from ..ingest.lexical import content_terms
from ..types import Citation, Document, Hit, Piece

RIVAL_SCORE = 0.7  # a rival statement must score at least this share of the chosen one
_PRESENT = re.compile(
    r"\b(latest|newest|most recent|recent(ly)?|now|right now|yet|still|current(ly)?|today|so far|"
    r"at the moment|as of|up to date|any (news|update)s?)\b|\b(has|have|is|are)\b.{0,60}\b(been|begun|started|"
    r"declared|set|called|announced|reached|ratified|signed|scheduled)\b", re.I)
_FIGURE = re.compile(
    r"(?P<money>\$\s?\d[\d,]*(?:\.\d+)?\s*(?:million|billion|thousand|[mbk]\b)?|"
    r"\b\d[\d,]*(?:\.\d+)?\s*(?:million|billion|thousand)?\s*dollars\b)|"
    r"(?P<percent>\b\d+(?:\.\d+)?\s*(?:%|percent\b))", re.I)
_SCALE = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "b": 1e9}
_YEAR = re.compile(r"\b(?:in|since|during|of)\s+((?:19|20)\d\d)\b")


def is_about_present(question: str) -> bool:
    return bool(_PRESENT.search(question))


def prefer_recent(question: str, hits: list[Hit], documents: dict[str, Document],
                  boost: float) -> list[Hit]:
    """Hits re-ranked with a small lift for newer documents, for questions about the present only."""
    if boost <= 0 or not hits or not is_about_present(question):
        return hits
    dated = sorted({d.date for d in documents.values() if d.date})
    if len(dated) < 2:
        return hits
    rank = {iso: i / (len(dated) - 1) for i, iso in enumerate(dated)}  # oldest 0 .. newest 1
    lifted = [replace(h, score=h.score + boost * rank.get(documents[h.chunk.doc_id].date or "", 0.0))
              for h in hits]
    return sorted(lifted, key=lambda h: -h.score)


@dataclass(frozen=True)
class Figure:
    kind: str  # "money" | "percent"
    value: float


def figures(text: str) -> list[Figure]:
    out = []
    for m in _FIGURE.finditer(text):
        kind = "money" if m.group("money") else "percent"
        raw = m.group(kind).lower()
        number = float(re.search(r"\d[\d,]*(?:\.\d+)?", raw).group().replace(",", ""))
        scale = re.search(r"(million|billion|thousand|\b[mbk]\b)", raw)
        out.append(Figure(kind, number * (_SCALE[scale.group(1)] if scale else 1.0)))
    return out


def statement_date(text: str, document: Document) -> str | None:
    """The year a sentence dates itself to ("... fine against Kaiser in 2023"), else its document's date."""
    years = _YEAR.findall(text)
    return max(years) if years else document.date


def reconcile(question: str, chosen: Sequence[Any], ranked: Sequence[Any],
              documents: dict[str, Document], limit: int = 3,
              min_score: float = 0.0) -> tuple[list[Any], dict[int, str]]:
    """(chosen, {position: date label}): a disagreeing newer/older figure added and ordered newest first.

    ``chosen`` and ``ranked`` hold the answerer's scored sentences: anything with
    ``.score`` and ``.candidate`` (``.doc_id``, ``.text``, ``.start``, ``.end``).
    A rival must score at least RIVAL_SCORE of the chosen sentence and ``min_score``
    (the answerer's own bar). Returns them unchanged, with no labels, unless two documents disagree.
    """
    if not chosen:
        return list(chosen), {}
    top = chosen[0]
    mine = figures(top.candidate.text)
    if not mine:
        return list(chosen), {}
    asked = content_terms(question)
    topic = (content_terms(top.candidate.text) & asked) or content_terms(top.candidate.text)
    rival = None
    for s in ranked:
        c = s.candidate
        if c.doc_id == top.candidate.doc_id or s.score < max(min_score, RIVAL_SCORE * top.score):
            continue
        theirs = figures(c.text)
        same_kind = {f.kind for f in theirs} & {f.kind for f in mine}
        if not same_kind or {f.value for f in theirs if f.kind in same_kind} & {f.value for f in mine}:
            continue  # no comparable figure, or the same figure: nothing to reconcile
        if not (content_terms(c.text) & topic):
            continue  # a figure about something else
        rival = s
        break
    if rival is None:
        return list(chosen), {}
    pair = [top, rival]
    dates = [statement_date(s.candidate.text, documents[s.candidate.doc_id]) for s in pair]
    order = sorted(range(2), key=lambda i: (dates[i] is None, _negate(dates[i])))
    merged = [pair[i] for i in order]
    merged += [s for s in chosen[1:] if s is not rival and not _same_doc_overlap(s, merged)][:max(0, limit - 2)]
    labels = {pos: display(dates[i]) for pos, i in enumerate(order) if dates[i]}
    return merged, labels


_WHEN = re.compile(r"\bwhen\b|\bwhat (date|day)\b|\bhow long ago\b", re.I)


def date_labels(question: str, citations: Sequence[Citation]) -> dict[int, str]:
    """{position: date} for quotes to open with their document's date: only for questions about
    the present or asking "when", and only where the quote does not state a full date itself."""
    if not (is_about_present(question) or _WHEN.search(question)):
        return {}
    from ..ingest.dates import parse_date

    return {pos: display(c.date) for pos, c in enumerate(citations) if c.date and not parse_date(c.quote)}


def label_pieces(pieces: Sequence[Piece], citations: Sequence[Citation],
                 labels: dict[int, str]) -> tuple[Piece, ...]:
    """The answer's pieces with each labelled quote opened by a "(date)" piece of our own (n=None)."""
    by_n = {citations[pos].n: label for pos, label in labels.items()}
    out: list[Piece] = []
    for piece in pieces:
        if piece.n in by_n:
            out.append(Piece(f"({by_n.pop(piece.n)})"))
        out.append(piece)
    return tuple(out)


def annotate(citations: Sequence[Citation], documents: dict[str, Document]) -> tuple[Citation, ...]:
    """Citations with their section path, their document's date and whether their page is a scan
    read by OCR filled in."""
    out = []
    for c in citations:
        doc = documents.get(c.doc_id)
        if doc is None:
            out.append(c)
            continue
        out.append(replace(c, section=c.section or doc.section_at(c.start), date=c.date or doc.date,
                           ocr=c.ocr or any(p.ocr and p.start <= c.start < p.end for p in doc.pages),
                           also=annotate(c.also, documents)))
    return tuple(out)


def _negate(iso: str | None) -> tuple:
    """Sort key putting later ISO dates (any precision) first."""
    if not iso:
        return ()
    return tuple(-int(p) for p in iso.split("-"))


def _same_doc_overlap(s, merged) -> bool:
    return any(s.candidate.doc_id == m.candidate.doc_id and s.candidate.start < m.candidate.end
               and m.candidate.start < s.candidate.end for m in merged)
