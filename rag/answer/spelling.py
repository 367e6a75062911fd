"""Typo-tolerant questions: a word neither the documents nor English know is read as
the document word one edit away ("sick leve" -> "sick leave", "impase" -> "impasse").

Members type on phones. A misspelt word matches no BM25 term and leaves the
answerer's term coverage short, so "how much sick leve do i acrue" was refused
while "sick leave … accrue" is answered from the contract.

pyspellchecker (Norvig's method, maintained, offline dictionaries in the wheel)
does the two things this needs: its English word list says which words are real
words (those are never changed: "rental" must not become "dental" because only
"dental" is in the contract), and its one-edit candidate search (insert, delete,
replace, transpose) runs over the corpus's own words, counted once at ingest
(``rag.ingest.lexical.word_counts``). A real word absent from the documents is left as typed, so a
question about something the documents don't cover still gets an honest refusal.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from ..types import Fix
from .names import TYPED_WORD, name_like

MIN_LENGTH = 4  # shorter words are one edit from too many others ("osu", "pto", "ceo")


@dataclass(frozen=True)
class Spelling:
    """A question as read: its text with the fixes applied, and the fixes."""

    text: str  # the question with every fix applied
    fixes: tuple[Fix, ...] = ()


@lru_cache(maxsize=1)
def _english():
    from spellchecker import SpellChecker

    return SpellChecker(language="en", distance=1)


class Speller:
    """Corrects a question's unknown words to the most frequent document word one edit away."""

    def __init__(self, counts: Mapping[str, int], min_length: int = MIN_LENGTH):
        from spellchecker import SpellChecker

        if min_length < 1:
            raise ValueError(f"min_length must be >= 1, got {min_length}")
        self.min_length = min_length
        self._corpus = SpellChecker(language=None, distance=1, case_sensitive=True)
        self._corpus.word_frequency.load_json(dict(counts))
        self._english = _english()

    def correct(self, question: str) -> Spelling:
        fixes = []
        first, shouting = True, question.isupper()  # all in capitals: no word is an acronym
        for m in TYPED_WORD.finditer(question):
            shown, opens = m.group(0), first
            typed = shown.lower().replace("’", "'")
            first = False
            if len(typed) < self.min_length or typed in self._corpus or typed in self._english:
                continue
            if not shouting and name_like(shown, opens):
                continue
            word = self._best(typed)
            if word:
                fixes.append(Fix(m.start(), m.end(), shown, _like(shown, word)))
        if not fixes:
            return Spelling(question)
        out, at = [], 0
        for f in fixes:
            out += [question[at:f.start], f.word]
            at = f.end
        out.append(question[at:])
        return Spelling("".join(out), tuple(fixes))

    def _best(self, typed: str) -> str | None:
        """The most frequent corpus word one edit from ``typed`` (ties: alphabetical, so every
        process agrees), or None."""
        found = [w for w in self._corpus.candidates(typed) or () if w != typed]
        return min(found, key=lambda w: (-self._corpus[w], w)) if found else None


def _like(typed: str, word: str) -> str:
    """``word`` in the typed word's case: "Impase" -> "Impasse", "IMPASE" -> "IMPASSE"."""
    if typed.isupper() and len(typed) > 1:
        return word.upper()
    if typed[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
