"""BM25 over chunks, with the tokenisation both indexing and queries share.

bm25s was chosen over rank-bm25: it is maintained, stores the index as sparse
matrices (fast to score, saved and loaded with numpy), and matches the
Lucene/Elasticsearch scoring that published BEIR BM25 figures use. PyStemmer
gives Snowball stemming so "striking" finds "strike".
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

_WORD = re.compile(r"[\w$%]+(?:[.,']\w+)*")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


# Words that carry no topic in a question ("how much does ... have"): BM25's
# short list keeps them, which is right for ranking chunks but wrong when we ask
# "how much of the question does this sentence cover?".
QUESTION_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each either else ever
few for from further get gets getting got had has have having he her here hers herself him himself
his how i if in into is it its itself just know let like many me might more most much must my
myself no nor not now of off on once only or other our ours out over own per please really said
same say says she should so some still such tell than that the their theirs them themselves then
there these they thing things this those through to too under until up us very want was we well
were what whats when where whether which while who whom whose why will with within would yet you
your yours anything something anyone someone ever actually exactly even going gonna wanna
""".split())


def content_terms(text: str) -> set[str]:
    """Stemmed topic words of a question or sentence, question words removed."""
    words = [w for w in _WORD.findall(text.lower().replace("’", "'"))
             if w not in QUESTION_STOPWORDS and w not in _stopwords()]
    words = [w[:-2] if w.endswith("'s") else w for w in words]
    return set(_stemmer().stemWords(words))


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed terms; numbers keep their commas ("111,803")."""
    words = [w for w in _WORD.findall(text.lower().replace("’", "'")) if w not in _stopwords()]
    return _stemmer().stemWords(words)


class LexicalIndex:
    def __init__(self, bm25):
        self._bm25 = bm25
        self._vocab = bm25.vocab_dict

    @classmethod
    def build(cls, texts: list[str]) -> "LexicalIndex":
        import bm25s

        # BEIR's BM25 baseline is Elasticsearch with k1=0.9, b=0.4.
        bm25 = bm25s.BM25(k1=0.9, b=0.4)
        bm25.index([tokenize(t) or [""] for t in texts], show_progress=False)
        return cls(bm25)

    def save(self, folder: Path) -> None:
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> "LexicalIndex":
        """mmap: map the score matrix from disk, shared by every process that loads it."""
        import bm25s

        return cls(bm25s.BM25.load(str(folder), show_progress=False, verbosity=0, mmap=mmap))

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row, score) pairs, best first; rows with no query term are left out."""
        terms = [t for t in tokenize(query) if t in self._vocab]
        n_docs = int(self._bm25.scores["num_docs"])
        if not terms or k <= 0 or n_docs == 0:
            return []
        scores = self._bm25.get_scores(terms)
        k = min(k, n_docs)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


# A lower-case word as the spelling corrector (rag.answer.spelling) counts and reads it.
SPELLING_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def word_counts(texts: Iterable[str]) -> dict[str, int]:
    """How often each lower-case word occurs in the texts: the corrector's vocabulary."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(SPELLING_WORD.findall(text.lower().replace("’", "'")))
    return dict(counts)
