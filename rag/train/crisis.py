"""Train the crisis head: ``rag train-crisis`` (``make crisis-model``) writes models/crisis/head.npz.

Data, all ours or question sets (never the public crisis sets, which only measure):
  - training/crisis/written.jsonl: messages we wrote, labelled crisis / concern / none;
  - the eval sets' questions (eval/*.jsonl) and SQuAD 2.0 dev questions, as "none",
    each split by a stable hash (``splits.crisis_split``) so half stays out of training for
    rag.evaluate.bench_crisis.

Two heads are compared by 5-fold cross-validation on this data (folds by original
message, so a message and its augmented copies never straddle a fold): logistic
regression and a one-hidden-layer MLP on the bundled MiniLM vectors. The better
one is refitted on everything. Thresholds are picked from the out-of-fold scores of the
"none" messages: the crisis threshold lets through at most 0.25% of questions (half the
0.5% target, for margin) and 5% of the other "none" messages we wrote (figures of speech,
news about suicide); crisis-or-concern at most 3% of questions.
Fixed seed; the same data gives the same file.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..answer.crisis import FORMAT, LABELS, with_history
from ..types import Turn
from ..config import ROOT, shared_dir
from .questions import UNION_LABELS  # members' questions: "none"
from .splits import HELDOUT, crisis_split

SEED = 13
WRITTEN = ROOT / "training" / "crisis" / "written.jsonl"
# The written sets of issue #24, each by its benchmark name: their held-out halves (crisis_split) are
# kept for the benchmark, the other halves trained on.
WRITTEN_2 = ROOT / "training" / "crisis" / "written-2.jsonl"
WRITTEN_3 = ROOT / "training" / "crisis" / "written-3.jsonl"
HALVED = {"Written-2": WRITTEN_2, "Written-3": WRITTEN_3}
# The Spanish head (multilingual-e5-small) learns from the sets before Written-3: trained with it,
# it gave a resources line to ordinary Spanish questions ("mi papá murió el martes, ¿cuántos días
# de duelo me tocan?", P 0.043 against its concern threshold 0.032; docs/crisis-screen.md).
E5_HALVED = ("Written-2",)
SQUAD = shared_dir("datasets", "squad2-dev-half", "dev-v2.0-half.json")
# SQuAD questions using the words a crisis message uses: the hardest "none" cases.
HARD_WORDS = re.compile(r"\b(death|deaths|die|died|dies|dying|dead|suicid\w*|kill\w*|murder\w*|overdos\w*|"
                        r"poison\w*|shot|shoot\w*|hang\w*|drown\w*|wound\w*|injur\w*|fatal\w*|execut\w*|"
                        r"crisis|pain\w*|harm\w*|hurt\w*|blood\w*|weapon\w*|gun\w*|attack\w*)\b", re.I)
MAX_CRISIS_FP_QUESTIONS = 0.0025
MAX_CRISIS_FP_OTHER = 0.05
MAX_FLAG_FP_QUESTIONS = 0.03
PREFIXES = ["honestly ", "idk ", "ok so ", "hey ", "i just need to say ", "sorry but ", "tbh "]


def trained_on(text: str) -> bool:
    """Whether this text is on the training side of the crisis split."""
    return crisis_split(text) != HELDOUT


def eval_questions() -> list[str]:
    """The questions of every eval file (eval/claims.jsonl holds claims, not questions: skipped)."""
    out = []
    for path in sorted((ROOT / "eval").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out += [row["question"] for row in rows if "question" in row]
    return out


def written_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def written_2() -> list[dict]:
    return written_rows(WRITTEN_2)


def data_sha256(halved: tuple[str, ...] = tuple(HALVED)) -> str:
    """The written messages a model learned from, as one hash for its record."""
    return hashlib.sha256(b"".join(path.read_bytes() for path in (WRITTEN, *(HALVED[n] for n in halved)))).hexdigest()


def screened_text(row: dict) -> str:
    """A written message as the screen reads it: with the member's previous message, if any."""
    return with_history(row["text"], [Turn("user", t) for t in row.get("turns", ())])


def union_questions() -> list[str]:
    """The questions written for the reader over other unions' documents (training/reader)."""
    return [json.loads(line)["question"] for line in UNION_LABELS.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def squad_questions() -> tuple[list[str], list[str]]:
    """(questions with crisis words, other questions)."""
    if not SQUAD.exists():
        return [], []
    data = json.loads(SQUAD.read_text(encoding="utf-8"))
    qs = [q["question"].strip() for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
    hard = [q for q in qs if HARD_WORDS.search(q)]
    return hard, [q for q in qs if not HARD_WORDS.search(q)]


def augment(text: str, rng: random.Random) -> list[str]:
    """Spellings a real message might have: no punctuation, a filler word, a typo, shouting."""
    plain = re.sub(r"[^\w\s']", "", text.lower()).strip()
    out = [text, plain, rng.choice(PREFIXES) + plain]
    words = plain.split()
    long = [i for i, w in enumerate(words) if len(w) > 4]
    if long:
        i = rng.choice(long)
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        words[i] = w[:j] + w[j + 1:] if rng.random() < 0.5 else w[:j - 1] + w[j] + w[j - 1] + w[j + 1:]
        out.append(" ".join(words))
    if rng.random() < 0.2:
        out.append(text.upper())
    return list(dict.fromkeys(out))


def dataset(rng: random.Random, halved: tuple[str, ...] = tuple(HALVED)
            ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict]:
    """Texts, labels (index into LABELS), group ids (the original message) and which are questions;
    of the halved written sets, those named in ``halved`` (their train halves)."""
    rows = written_rows(WRITTEN)
    rows += [row for name in halved for row in written_rows(HALVED[name]) if trained_on(screened_text(row))]
    texts, labels, groups, questions = [], [], [], []
    for g, row in enumerate(rows):
        for variant in augment(row["text"], rng):
            variant = with_history(variant, [Turn("user", t) for t in row.get("turns", ())])
            texts.append(variant)
            labels.append(LABELS.index(row["label"]))
            groups.append(g)
            questions.append(row["label"] == "none" and "question" in row["group"])
    hard, other = squad_questions()
    doc = eval_questions() + union_questions()
    kept_other = [q for q in other if trained_on(q)]
    rng.shuffle(kept_other)
    negatives = ([q for q in doc if trained_on(q)] + [q for q in hard if trained_on(q)] + kept_other[:400])
    for q in dict.fromkeys(negatives):
        g += 1
        texts.append(q)
        labels.append(0)
        groups.append(g)
        questions.append(True)
    counts = {"written": len(rows), "written_by_label": {lab: sum(r["label"] == lab for r in rows) for lab in LABELS},
              "eval_questions": sum(trained_on(q) for q in doc), "squad_hard": sum(trained_on(q) for q in hard),
              "squad_other": min(400, len(kept_other)), "examples_after_augmentation": len(texts)}
    return texts, np.array(labels), np.array(groups), np.array(questions), counts


def make_head(kind: str):
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced", random_state=SEED)
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=400, early_stopping=False,
                         random_state=SEED)


def out_of_fold(kind: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    probs = np.zeros((len(y), len(LABELS)))
    for train, test in GroupKFold(n_splits=5).split(x, y, groups):
        head = make_head(kind).fit(x[train], y[train])
        probs[test] = head.predict_proba(x[test])
    return probs


def _threshold(scores: np.ndarray, budget: float) -> float:
    """The lowest threshold that at most ``budget`` of these scores reach."""
    ranked = np.sort(scores)[::-1]
    return float(min(0.95, ranked[int(budget * len(ranked))] + 1e-6))


def pick_thresholds(probs: np.ndarray, y: np.ndarray, questions: np.ndarray) -> tuple[float, float]:
    """The lowest thresholds whose false-alarm rates on "none" stay within the budgets."""
    asked, other = (y == 0) & questions, (y == 0) & ~questions
    t_crisis = max(_threshold(probs[asked, 2], MAX_CRISIS_FP_QUESTIONS),
                   _threshold(probs[other, 2], MAX_CRISIS_FP_OTHER))
    return t_crisis, _threshold(probs[asked, 1] + probs[asked, 2], MAX_FLAG_FP_QUESTIONS)


def report(probs: np.ndarray, y: np.ndarray, questions: np.ndarray, t_crisis: float, t_flag: float) -> dict:
    crisis_p, flag_p = probs[:, 2], probs[:, 1] + probs[:, 2]
    is_crisis, is_flag = crisis_p >= t_crisis, (crisis_p >= t_crisis) | (flag_p >= t_flag)
    asked, other = (y == 0) & questions, (y == 0) & ~questions
    return {"crisis_recall": round(float(is_crisis[y == 2].mean()), 4),
            "crisis_or_concern_recall_on_crisis": round(float(is_flag[y == 2].mean()), 4),
            "flag_recall_on_concern": round(float(is_flag[y == 1].mean()), 4),
            "false_crisis_on_questions": round(float(is_crisis[asked].mean()), 4),
            "false_flag_on_questions": round(float(is_flag[asked].mean()), 4),
            "false_crisis_on_other_none": round(float(is_crisis[other].mean()), 4),
            "false_flag_on_other_none": round(float(is_flag[other].mean()), 4)}


def layers(head) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fitted head as (weights, bias) layers the numpy runtime in rag/answer/crisis.py reads."""
    if hasattr(head, "coefs_"):
        return [(w.astype(np.float32), b.astype(np.float32)) for w, b in zip(head.coefs_, head.intercepts_)]
    return [(head.coef_.T.astype(np.float32), head.intercept_.astype(np.float32))]


def cached_vectors(embedder, texts: list[str], path: Path) -> np.ndarray:
    from ..ingest.embedding import embed_all

    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            known = dict(zip(data["texts"].tolist(), data["vectors"]))
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        known.update(zip(missing, embed_all(embedder, missing, batch_size=64)))
        np.savez(path, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[t] for t in texts])


ENCODERS = ("minilm", "e5")  # the bundled MiniLM, or multilingual-e5-small (answer.crisis.E5Encoder)


def load_encoder(encoder: str):
    from ..answer.crisis import E5Encoder
    from ..ingest.embedding import load_embedder

    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
    return E5Encoder() if encoder == "e5" else load_embedder()


def train(out: Path, *, cache: Path | None = None, head: str = "auto", encoder: str = "minilm",
          log: Callable[[str], None] = print) -> dict:
    """Build the head from the data above and write it to ``out``; returns what was written's metadata."""
    from ..ingest.embedding import embed_all

    if head not in ("auto", "logreg", "mlp"):
        raise ValueError(f"head must be auto, logreg or mlp, got {head!r}")
    started = time.perf_counter()
    rng = random.Random(SEED)
    np.random.seed(SEED)
    halved = E5_HALVED if encoder == "e5" else tuple(HALVED)
    texts, y, groups, questions, counts = dataset(rng, halved)
    log(f"{len(texts)} training texts: {counts}")
    embedder = load_encoder(encoder)
    x = cached_vectors(embedder, texts, cache) if cache else embed_all(embedder, texts, batch_size=64)
    log(f"embedded in {time.perf_counter() - started:.0f} s")

    results = {}
    for kind in ("logreg", "mlp") if head == "auto" else (head,):
        probs = out_of_fold(kind, x, y, groups)
        t_crisis, t_flag = pick_thresholds(probs, y, questions)
        results[kind] = {"thresholds": [round(t_crisis, 4), round(t_flag, 4)],
                         **report(probs, y, questions, t_crisis, t_flag)}
        log(f"{kind:7s} 5-fold: {results[kind]}")
    # Pick on recall of crisis messages as crisis-or-concern, then crisis recall.
    kind = head if head != "auto" else max(
        results, key=lambda k: (results[k]["crisis_or_concern_recall_on_crisis"], results[k]["crisis_recall"]))
    t_crisis, t_flag = results[kind]["thresholds"]
    fitted = make_head(kind).fit(x, y)
    meta = {"format": FORMAT, "kind": kind, "labels": list(LABELS), "embedder": embedder.name,
            "crisis_threshold": t_crisis, "concern_threshold": t_flag, "seed": SEED,
            "data_sha256": data_sha256(halved), "counts": counts,
            "cross_validation": results}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, (w, b) in enumerate(layers(fitted)):
        arrays[f"w{i}"], arrays[f"b{i}"] = w, b
    np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)
    log(f"chose {kind}; wrote {out} ({out.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - started:.0f} s")
    return meta
