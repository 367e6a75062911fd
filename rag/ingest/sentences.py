"""Answer candidates: the sentences of each chunk, found once at ingest and stored in the index.

The answerer quotes sentences, so the spans it may quote, their vectors and
the corpus's term statistics depend only on the documents: computing them per
question (as before format v2) cost ~250 ms an answer on a 2,600-chunk index.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from ..types import Chunk, Document
from .chunking import split_sentences
from .lexical import content_terms

_BULLET = re.compile(r"[-•*–]\s+")  # match() anchors at the sentence start


def chunk_sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of the sentences in text[start:end], a leading bullet mark left out."""
    out = []
    for a, b in split_sentences(text, start, end):
        bullet = _BULLET.match(text, a, b)
        a = bullet.end() if bullet else a  # quote the item, not its bullet mark
        if b > a:
            out.append((a, b))
    return out


def document_sentences(doc: Document, chunks: list[Chunk]) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """A document's distinct sentence spans, and for each chunk the indexes of its own.

    Chunks overlap, so a sentence is stored once and shared: the first span
    found at a start offset is the one kept, as the answerer always did.
    """
    spans: list[tuple[int, int]] = []
    at: dict[int, int] = {}
    per_chunk = []
    for chunk in chunks:
        ids = []
        for a, b in chunk_sentence_spans(doc.text, chunk.start, chunk.end):
            if a not in at:
                at[a] = len(spans)
                spans.append((a, b))
            ids.append(at[a])
        per_chunk.append(ids)
    return spans, per_chunk


def idf_table(chunk_texts: Iterable[str]) -> tuple[dict[str, float], float]:
    """BM25-style idf of every content term over the chunks, and the weight of an unseen term."""
    df: Counter[str] = Counter()
    n = 0
    for text in chunk_texts:
        df.update(content_terms(text))
        n += 1
    n = max(n, 1)
    idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    # A word the corpus never uses weighs as much as its rarest word: it is
    # often the very thing asked about ("CEO"), so a sentence lacking it
    # should not look like a full answer. No more than that, or a typo would.
    return idf, max(idf.values(), default=1.0)
