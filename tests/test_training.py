"""rag/train: the written union questions (training/reader/labels.jsonl) on the real documents,
and every held-out split, checked against the rule its figures were published with."""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter

import pytest

from rag.config import ROOT, shared_dir
from rag.train import splits
from rag.train.questions import UNION_LABELS, default_squad, group_by_article, load_squad, load_union
from rag.train.reader import cross_groups, window_candidates

CORPORA = shared_dir("corpora")
SQUAD = default_squad()
SCIFACT = shared_dir("datasets", "scifact")
needs_corpora = pytest.mark.skipif(not (CORPORA / "training-pool").is_dir(),
                                   reason=f"needs the shared union documents at {CORPORA}")
needs_squad = pytest.mark.skipif(not SQUAD.is_file(), reason=f"needs the shared SQuAD 2.0 file at {SQUAD}")
FORBIDDEN = ("seiu503-higher-ed/", "corpus/")  # eval documents: never trained on


def _rows() -> list[dict]:
    return [json.loads(line) for line in UNION_LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]


@needs_corpora
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
    if not (CORPORA / "training-pool").is_dir():
        pytest.skip(f"needs the shared union documents at {CORPORA}")
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
    by_doc = {doc: {splits.union_split(doc)} for doc in {it.article for it in items}}
    assert Counter(s for v in by_doc.values() for s in v).keys() == {"train", "dev"}


def test_an_unanswerable_question_meets_its_tempting_sentence_and_must_pick_none(items):
    """The reader learns "none" with the sentence written down as a trap among the candidates."""
    unanswerable = [it for it in items if not it.answerable][:50]
    by_article = group_by_article(items)
    rng = random.Random(13)
    for it in unanswerable:
        sentences, labels, _ = window_candidates(it, by_article, rng)
        assert not any(labels) and {it.sentences[i] for i in it.traps} <= set(sentences), it.qid
    groups = cross_groups(unanswerable, by_article, random.Random(13))
    assert [target for _, _, _, target in groups] == [0] * len(unanswerable)  # "none of these"
    assert all(len(sents) == 8 and len(set(sents)) > 1 for _, sents, _, _ in groups)


# ── Splits: one helper (rag.train.splits), every membership exactly as published ─────────────
# The rules as each module spelled them before rag.train.splits existed, copied verbatim:
# the models in models/ were trained, and the README's figures measured, on these memberships.

def _old_squad_split(key: str) -> str:  # rag/answer/training.py split_of
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100
    return "heldout" if bucket < 25 else "train"


def _old_half_of(key: str) -> str:  # rag/answer/training.py half_of
    return "calib" if int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "test"


def _old_union_split(doc: str) -> str:  # rag/answer/training.py union_split
    bucket = int(hashlib.sha256(f"reader-dev:{doc}".encode("utf-8")).hexdigest(), 16) % 100
    return "dev" if bucket < 20 else "train"


def _old_held_out(text: str) -> bool:  # scripts/train_crisis.py held_out
    return int(hashlib.sha1(text.strip().lower().encode()).hexdigest(), 16) % 2 == 1


def _old_query_split(query_id: str) -> str:  # rag/evaluate/benchmark.py split_of ("held-out")
    return "dev" if hashlib.sha256(query_id.encode("utf-8")).digest()[0] % 2 == 0 else "held-out"


def _old_sample(texts: list[str], n: int | None) -> list[str]:  # scripts/bench_crisis.py _sample
    if n is None or len(texts) <= n:
        return texts
    return sorted(texts, key=lambda t: hashlib.sha1(t.encode()).hexdigest())[:n]


def _same(old: str) -> str:
    return splits.HELDOUT if old in ("heldout", "held-out") else old


@needs_squad
def test_squad_splits_keep_their_published_membership():
    items = load_squad(SQUAD)
    titles = sorted({it.article for it in items})
    assert [splits.squad_split(t) for t in titles] == [_old_squad_split(t) for t in titles]
    assert Counter(map(splits.squad_split, titles)) == {"train": 10, "heldout": 6}
    assert [splits.half(it.qid) for it in items] == [_old_half_of(it.qid) for it in items]
    train = [it for it in items if splits.squad_split(it.article) == "train"]
    assert len(train) == 3938  # the shipped reader's SQuAD questions (models/reader/reader.json)


def test_union_splits_keep_their_published_membership(items):
    docs = sorted({it.article for it in items})
    assert [splits.union_split(d) for d in docs] == [_old_union_split(d) for d in docs]
    assert [splits.half(it.qid) for it in items] == [_old_half_of(it.qid) for it in items]
    assert sum(splits.union_split(it.article) == "train" for it in items) == 2182  # models/reader/reader.json


@needs_squad
def test_crisis_splits_and_samples_keep_their_published_membership():
    from rag.train import crisis

    texts = [crisis.screened_text(r) for r in crisis.written_2()] + crisis.eval_questions() + crisis.union_questions()
    hard, other = crisis.squad_questions()
    texts += hard + other
    assert len(texts) > 10_000
    assert [splits.crisis_split(t) == splits.HELDOUT for t in texts] == [_old_held_out(t) for t in texts]
    assert [crisis.trained_on(t) for t in texts] == [not _old_held_out(t) for t in texts]
    unique = sorted(set(texts))
    for n in (None, 12, 300, len(unique) + 1):
        assert splits.stable_sample(unique, n) == _old_sample(unique, n)


@pytest.mark.skipif(not (SCIFACT / "queries.jsonl").is_file(), reason=f"needs BEIR SciFact at {SCIFACT}")
def test_beir_query_split_keeps_its_published_membership():
    ids = [json.loads(line)["_id"] for line in (SCIFACT / "queries.jsonl").open(encoding="utf-8") if line.strip()]
    assert [splits.query_split(q) for q in ids] == [_same(_old_query_split(q)) for q in ids]
    assert {splits.query_split(q) for q in ids} == {"dev", splits.HELDOUT}


def test_every_split_spells_held_out_one_way():
    keys = [str(i) for i in range(200)]
    seen = {f(k) for f in (splits.squad_split, splits.crisis_split, splits.query_split) for k in keys}
    assert splits.HELDOUT == "heldout" and seen == {"train", "dev", "heldout"}
    # Where data is split (training and measuring), no other spelling is left as a value.
    files = [*ROOT.glob("rag/train/*.py"), *ROOT.glob("rag/evaluate/*.py")]
    spelled_apart = [p.name for p in files if re.search(r"""["']held[-_ ]out["']""", p.read_text(encoding="utf-8"))]
    assert not spelled_apart
    with pytest.raises(ValueError, match="buckets must be > 0"):
        splits.bucket("x", 0)


def test_each_shipped_crisis_model_records_the_written_sets_its_command_trains_on():
    """make crisis-model's data, as each shipped model recorded it: the Spanish head without
    Written-3 (rag.train.crisis.E5_HALVED), the English head and the second look with every set."""
    import numpy as np

    from rag.train import crisis

    recorded = {name: json.loads(str(np.load(ROOT / "models" / "crisis" / name)["meta"]))["data_sha256"]
                for name in ("head.npz", "head-es.npz")}
    recorded["reread"] = json.loads((ROOT / "models" / "crisis" / "reread" / "reread.json").read_text())["data_sha256"]
    everything, spanish = crisis.data_sha256(), crisis.data_sha256(crisis.E5_HALVED)
    assert everything != spanish
    assert recorded == {"head.npz": everything, "head-es.npz": spanish, "reread": everything}
