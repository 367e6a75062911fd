"""rag.answer.retrieval: score fusion, by hand."""
from __future__ import annotations

import numpy as np
import pytest

from rag.answer.retrieval import fuse


def test_convex_fusion_by_hand():
    dense = [(1, 0.9), (2, 0.7), (3, 0.5)]  # std 0.1633: scaled 2.449, 1.225, 0
    lexical = [(3, 12.0), (4, 6.0)]  # std 3.0: scaled 2, 0
    fused = dict(fuse(dense, lexical, dense_weight=0.6))
    spread = np.std([0.9, 0.7, 0.5])
    assert fused[1] == pytest.approx(0.6 * 0.4 / spread)
    assert fused[2] == pytest.approx(0.6 * 0.2 / spread)
    assert fused[3] == pytest.approx(0.4 * 2.0)  # last in dense (0), top of BM25
    assert fused[4] == pytest.approx(0.0)
    assert [row for row, _ in fuse(dense, lexical, 0.6)] == [1, 3, 2, 4]
    assert [row for row, _ in fuse(dense, lexical, 0.2)] == [3, 1, 2, 4]  # BM25 weighs more


def test_rrf_fusion_by_hand_and_ties_break_by_row():
    fused = dict(fuse([(7, 0.9), (8, 0.1)], [(8, 30.0)], 0.5, method="rrf"))
    assert fused[7] == pytest.approx(0.5 / 61)
    assert fused[8] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert fuse([(5, 1.0), (4, 1.0)], [], 1.0) == [(4, 1.0), (5, 1.0)]  # equal scores: lower row first
    assert fuse([], [], 0.6) == []
