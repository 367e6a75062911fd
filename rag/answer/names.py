"""Names in a question: what is one, and which ones the documents never mention.

"How much strike pay does the Teamsters local give?" over one local's documents was answered
with that local's own figure: every other word of it is on topic. A name (an acronym, or a
capitalised word inside the question) that appears nowhere in the documents names something
they do not cover, so the question is refused, with the closest passages beside the refusal.
The same test keeps the speller from "correcting" names (rag/answer/spelling.py).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

TYPED_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")  # found in the question itself, so offsets are its own


def name_like(word: str, opens: bool) -> bool:
    """An acronym ("OPEC") or a capitalised word inside the question ("Tugh Temur", "Qwest");
    the question's first word (``opens``) is capitalised by grammar, so it counts only as an acronym."""
    if word.isupper() and len(word) > 1:
        return True
    return not opens and any(ch.isupper() for ch in word)


_CAPITALISED_RUN = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:(?:of|and|for|the|de)\s+)?[A-Z][a-z]+)+")
_SMALL = frozenset({"of", "and", "for", "the", "de"})


def initialisms(texts: Iterable[str]) -> frozenset[str]:
    """The initials of every run of capitalised words in the texts ("National Union of Healthcare
    Workers" -> "NUHW" and "NUOHW"): a question's acronym may stand for a name the documents spell out."""
    out = set()
    for text in texts:
        for m in _CAPITALISED_RUN.finditer(text):
            words = m.group(0).split()
            out.add("".join(w[0] for w in words if w not in _SMALL))
            out.add("".join(w[0].upper() for w in words))
    return frozenset(out)


def unknown_names(question: str, words: Mapping[str, int], spelled_out: frozenset[str] = frozenset()
                  ) -> tuple[str, ...]:
    """The names in ``question`` that the documents never contain, in order: ``words`` are their
    lower-case word counts (stored at ingest), ``spelled_out`` the initials of their capitalised
    names (``initialisms``). Two-letter acronyms ("AI", "OT") are too ambiguous to count, and a
    question typed all in capitals has no names."""
    if question.isupper():
        return ()
    out = []
    for i, m in enumerate(TYPED_WORD.finditer(question)):
        shown = m.group(0)
        plain = shown.lower().replace("’", "'")
        if not name_like(shown, opens=i == 0) or plain in words or plain.split("'")[0] in words:
            continue
        if shown.isupper() and (len(shown) < 3 or shown in spelled_out):
            continue
        out.append(shown)
    return tuple(dict.fromkeys(out))
