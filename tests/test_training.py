"""rag/answer/training.py's written union questions (training/reader/labels.jsonl) on the real documents."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from rag.answer.training import UNION_LABELS, build_pairs, load_union, shared_data, union_split

CORPORA = shared_data("corpora")
pytestmark = pytest.mark.skipif(not (CORPORA / "training-pool").is_dir(),
                                reason=f"needs the shared union documents at {CORPORA}")
FORBIDDEN = ("seiu503-higher-ed/", "corpus/")  # eval documents: never trained on


def _rows() -> list[dict]:
    return [json.loads(line) for line in UNION_LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_labels_point_into_documents_no_eval_set_uses():
    rows = _rows()
    assert len(rows) >= 2000 and len({r["doc"] for r in rows}) >= 30
    assert sum(bool(r.get("history")) for r in rows) >= 300
    assert not [r["doc"] for r in rows if r["doc"].startswith(FORBIDDEN)]
    for r in rows:  # labels, not copies: offsets and a short phrase
        assert set(r) <= {"doc", "sha256", "start", "end", "question", "answerable", "answer", "category", "history"}
        assert len(r["answer"].split()) <= 25  # a phrase, not a passage


@pytest.fixture(scope="module")
def items():
    return load_union()


def test_every_label_holds_its_answer_and_the_split_is_by_document(items):
    assert len(items) == len(_rows())
    squash = lambda s: re.sub(r"\s+", " ", s).lower()  # noqa: E731
    for it in items:
        marked = it.positives or it.traps
        assert marked, it.qid
        if it.answerable:
            held = squash(" ".join(it.sentences[i] for i in sorted(marked)))
            assert squash(it.answers[0]) in held, it.qid
    splits = {doc: {union_split(doc)} for doc in {it.article for it in items}}
    assert Counter(s for v in splits.values() for s in v).keys() == {"train", "dev"}


def test_unanswerable_questions_train_on_their_tempting_sentence(items):
    items = [it for it in items if not it.answerable][:50]
    pairs = build_pairs(items)
    for it in items:
        traps = {it.text(i) for i in it.traps}
        assert any(p.question == it.question and p.text in traps and p.label == 0.0 for p in pairs)
