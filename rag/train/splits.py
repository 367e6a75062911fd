"""Stable splits: which examples a model may learn from and which are kept to measure it.

Each split is a hash of a key (never Python's salted ``hash``), so it is the same on every
machine and every run, and the kept part is always spelled ``HELDOUT``. The rule differs per
data set because each was fixed when that set's first figures were published: changing one
would move examples across the line and void those figures (tests/test_training.py checks
every split against the rule it was published with, on the real data).
"""
from __future__ import annotations

import hashlib

HELDOUT = "heldout"
SQUAD_HELDOUT_PERCENT = 25  # of SQuAD articles, by title
UNION_DEV_PERCENT = 20  # of the written union questions' documents, by path


def bucket(key: str, buckets: int, algorithm: str = "sha256") -> int:
    """``key``'s bucket in [0, buckets): its hash read as one big-endian integer, modulo ``buckets``."""
    if buckets <= 0:
        raise ValueError(f"buckets must be > 0, got {buckets}")
    return int(hashlib.new(algorithm, key.encode("utf-8")).hexdigest(), 16) % buckets


def squad_split(title: str) -> str:
    """'train' or HELDOUT for a SQuAD article: a whole article goes one way, so no held-out
    passage was ever read in training."""
    return HELDOUT if bucket(title, 100) < SQUAD_HELDOUT_PERCENT else "train"


def half(key: str) -> str:
    """'calib' or 'test' for a held-out question: thresholds and calibrations are fit on
    'calib', figures are reported on 'test'."""
    return "calib" if bucket(key, 2) == 0 else "test"


def union_split(doc: str) -> str:
    """'train' or 'dev' for a document of the written union questions (all its questions go
    the same way); the dev split is where the reader's threshold is chosen."""
    return "dev" if bucket(f"reader-dev:{doc}", 100) < UNION_DEV_PERCENT else "train"


def crisis_split(text: str) -> str:
    """'train' or HELDOUT for a message or question of the crisis screen's data: half of it,
    by the SHA-1 of its lower-cased text, is kept for rag.evaluate.bench_crisis."""
    return HELDOUT if bucket(text.strip().lower(), 2, "sha1") == 1 else "train"


def query_split(query_id: str) -> str:
    """'dev' or HELDOUT for a BEIR query: fusion settings are tuned on dev queries only.
    The parity of the SHA-256's first byte (not of the whole integer), as first published."""
    return "dev" if hashlib.sha256(query_id.encode("utf-8")).digest()[0] % 2 == 0 else HELDOUT


def stable_sample(texts: list[str], n: int | None) -> list[str]:
    """``n`` of ``texts`` picked by hash (the same ones on every run), or all of them."""
    if n is None or len(texts) <= n:
        return texts
    return sorted(texts, key=lambda t: hashlib.sha1(t.encode()).hexdigest())[:n]
