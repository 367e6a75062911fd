"""Split documents into sentence-respecting, token-bounded, overlapping chunks.

Sentence splitting is a small regex splitter rather than a library: pysbd is
unmaintained and slow, and NLTK's punkt needs a data download we cannot make
offline. What we need from it is modest: spans (offsets), paragraph breaks as
hard boundaries, and not breaking on common abbreviations.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ..types import Chunk, Document
from .structure import chunk_section, section_breaks

TokenCounter = Callable[[str], int]

# Words that end with a period without ending a sentence ("Aug. 15", "Dr. Lee").
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "inc", "ltd", "co",
    "corp", "no", "fig", "approx", "dept", "gov", "sen", "rep", "gen", "lt", "col",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "e.g", "i.e", "u.s", "a.m", "p.m", "ca", "calif",
}
# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_PARAGRAPH = re.compile(r"\n\s*\n|\n")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences in text[start:end], whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for p_start, p_end in _paragraphs(text, start, end):
        cut = p_start
        for match in _END.finditer(text, p_start, p_end):
            if _is_abbreviation(text, cut, match.start()):
                continue
            spans.append((cut, match.end()))
            cut = match.end()
        spans.append((cut, p_end))
    return [s for s in (_trim(text, a, b) for a, b in spans) if s[1] > s[0]]


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cut = start
    for match in _PARAGRAPH.finditer(text, start, end):
        yield cut, match.start()
        cut = match.end()
    yield cut, end


def _is_abbreviation(text: str, sent_start: int, dot: int) -> bool:
    if text[dot] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)$", text[sent_start:dot])
    if not word:
        return False
    token = word.group(1).lower().strip(".")
    # Single initials ("J. Smith") and listed abbreviations don't end sentences.
    return len(token) == 1 or token in _ABBREVIATIONS


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def chunk_document(
    doc: Document,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int,
    hard_limit: TokenCounter | None = None,
) -> list[Chunk]:
    """Chunks of whole sentences, each within max_tokens, overlapping by about overlap_tokens.

    ``hard_limit(text)`` returns how far over the embedder's own limit a text
    is (<= 0 when it fits); oversize chunks are split further by words.
    """
    if max_tokens <= 0 or overlap_tokens < 0 or overlap_tokens >= max_tokens:
        raise ValueError(f"need 0 <= overlap ({overlap_tokens}) < max_tokens ({max_tokens})")
    # A chunk never runs from one article (or top-level section) into the next;
    # it may run over a page break, as the sentences themselves do.
    cuts = sorted({0, *section_breaks(doc.headings), len(doc.text)})
    regions = [(a, b) for a, b in zip(cuts, cuts[1:]) if doc.text[a:b].strip()]
    spans: list[tuple[int, int]] = []
    for start, end in regions:
        sentences = _fit_sentences(doc.text, split_sentences(doc.text, start, end), count_tokens, max_tokens)
        spans.extend(_group(doc.text, sentences, count_tokens, max_tokens, overlap_tokens))
    if hard_limit is not None:
        spans = [s for span in spans for s in _enforce(doc.text, span, hard_limit)]
    return [
        Chunk(f"{doc.doc_id}:{i}", doc.doc_id, doc.title, doc.text[a:b], a, b, doc.page_at(a),
              chunk_section(doc.headings, doc.text, a, b))
        for i, (a, b) in enumerate(spans)
    ]


def _group(text, sentences, count, max_tokens, overlap) -> list[tuple[int, int]]:
    """Greedily pack sentences; start the next chunk a few sentences back for overlap."""
    sizes = [count(text[a:b]) for a, b in sentences]
    chunks, i = [], 0
    while i < len(sentences):
        j, total = i, 0
        while j < len(sentences) and (j == i or total + sizes[j] <= max_tokens):
            total += sizes[j]
            j += 1
        chunks.append((sentences[i][0], sentences[j - 1][1]))
        if j >= len(sentences):
            break
        # Back up over trailing sentences worth up to `overlap` tokens, but always advance.
        k, carried = j, 0
        while k - 1 > i and carried + sizes[k - 1] <= overlap:
            k -= 1
            carried += sizes[k]
        i = k
    return chunks


def _fit_sentences(text, sentences, count, max_tokens) -> list[tuple[int, int]]:
    """Split any single sentence longer than the budget at word boundaries."""
    out = []
    for a, b in sentences:
        if count(text[a:b]) <= max_tokens:
            out.append((a, b))
        else:
            out.extend(_split_words(text, a, b, lambda s: count(s) > max_tokens))
    return out


def _enforce(text, span, over_limit: TokenCounter) -> list[tuple[int, int]]:
    a, b = span
    if over_limit(text[a:b]) <= 0:
        return [span]
    return _split_words(text, a, b, lambda s: over_limit(s) > 0)


def _split_words(text, a, b, too_long) -> list[tuple[int, int]]:
    """Cut text[a:b] into the fewest word-aligned pieces that are not too long."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[a:b])]
    pieces, first = [], 0
    while first < len(words):
        lo, hi = first + 1, len(words)  # binary search the longest piece that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if too_long(text[a + words[first][0]: a + words[mid - 1][1]]):
                hi = mid - 1
            else:
                lo = mid
        pieces.append((a + words[first][0], a + words[lo - 1][1]))
        first = lo
    return pieces
