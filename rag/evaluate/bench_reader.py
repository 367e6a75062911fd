"""The heuristic and the trained reader (the shipped cross-encoder), side by side, in one run.

    python -m rag.evaluate.bench_reader [--model models/reader] [--final]

- held-out SQuAD 2.0 articles (``rag.train.splits.squad_split``), each question's paragraph and 4
  sentences of other paragraphs of its article as the candidates: answer-sentence accuracy and
  no-answer precision/recall;
- WikiQA test: MAP and MRR over the 243 questions with an answer sentence;
  (both: the heuristic, the cross-encoder reading every candidate, and the shipped fusion)
- the strike eval set (eval/questions.jsonl) and the seiu503 set, through the real
  pipeline: answer accuracy, refusal recall/precision, `rag ask` latency p50/p95.

Held-out SQuAD questions are halved (``rag.train.splits.half``): thresholds are fit on the
"calib" half and every SQuAD figure printed is on the "test" half. The eval sets'
``split: dev`` halves are where the reader's threshold is chosen (the grid is printed);
their held-out halves are scored only with --final. Sentence vectors are cached under
.cache/bench_reader/ (keyed by text), so a second run is quick.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..answer.answering import TYPE_MISMATCH, first_stage_features
from ..answer.reader import THRESHOLD_CHOSEN_ON, load_reader, save_threshold
from ..config import ROOT, Settings, offline_environment, shared_dir
from ..ingest.sentences import idf_table
from ..train.questions import article_idf, default_squad, group_by_article, load_squad
from ..train.reader import window_candidates
from ..train.splits import HELDOUT, half, squad_split

SQUAD = default_squad()
WIKIQA = shared_dir("datasets", "wikiqa-test", "WikiQA-test.tsv")
SEIU_CORPUS = shared_dir("corpora", "seiu503-higher-ed")
CACHE = ROOT / ".cache" / "bench_reader"
HEURISTIC_MIN = 0.44  # the heuristic's calibrated threshold


class Scorer:
    """Sentence vectors of the base model (as ingest stores them), cached on disk by content."""

    def __init__(self, embedder):
        self.embedder = embedder
        CACHE.mkdir(parents=True, exist_ok=True)
        self._vec_path = CACHE / "vectors.npz"
        self._vecs = dict(np.load(self._vec_path)) if self._vec_path.exists() else {}

    def vectors(self, texts: list[str]) -> np.ndarray:
        keys = [_key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in self._vecs}.items())
        for i in range(0, len(todo), 64):
            part = todo[i:i + 64]
            for (k, _), v in zip(part, self.embedder.embed_batch([t for _, t in part])):
                self._vecs[k] = v
        return np.stack([self._vecs[k] for k in keys]) if keys else np.zeros((0, self.embedder.dim))

    def save(self) -> None:
        np.savez(self._vec_path, **self._vecs)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


# ── SQuAD held-out ───────────────────────────────────────────────────────────

def squad_metrics(records: list[dict], best: list[tuple[int, float]], threshold: float) -> dict:
    answerable = [(r, b) for r, b in zip(records, best) if r["item"].answerable]
    unanswerable = [(r, b) for r, b in zip(records, best) if not r["item"].answerable]
    top1 = [b[0] in r["item"].positives for r, b in answerable]
    answered_right = [b[1] >= threshold and b[0] in r["item"].positives for r, b in answerable]
    refused = [b[1] < threshold for _, b in zip(records, best)]
    refused_unans = sum(b[1] < threshold for _, b in unanswerable)
    return {"sentence_acc": np.mean(top1), "answered_right": np.mean(answered_right),
            "noans_recall": refused_unans / max(len(unanswerable), 1),
            "noans_precision": refused_unans / max(sum(refused), 1)}


def best_threshold(records: list[dict], best: list[tuple[int, float]]) -> float:
    """The cut-off that makes the most right decisions (right answer, or refusal of the unanswerable)."""
    grid = np.round(np.arange(0.02, 0.99, 0.01), 2)
    def right(t):
        return sum((b[1] >= t and b[0] in r["item"].positives) if r["item"].answerable else b[1] < t
                   for r, b in zip(records, best))
    return float(max(grid, key=right))


# ── WikiQA ───────────────────────────────────────────────────────────────────

def heuristic(cos: np.ndarray, cov: np.ndarray, typed: np.ndarray) -> np.ndarray:
    """The old answerer's score (rag.answer.answering.Answerer.rank without a reader)."""
    mixed = 0.6 * cos + 0.4 * cov
    return np.where(typed, mixed, mixed * TYPE_MISMATCH)


def wikiqa_groups() -> list[list[dict]]:
    """WikiQA test's candidate rows, one list per question that has an answer sentence."""
    import csv

    groups: dict[str, list[dict]] = {}
    with WIKIQA.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            groups.setdefault(row["QuestionID"], []).append(row)
    return [rows for rows in groups.values() if any(r["Label"] == "1" for r in rows)]


def add_ranking(ap: list[float], rr: list[float], hits: np.ndarray) -> None:
    """One question's average precision and reciprocal rank, from its labels in ranked order."""
    ranks = np.flatnonzero(hits) + 1
    ap.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    rr.append(1 / ranks[0])


def map_mrr(ap: dict[str, list[float]], rr: dict[str, list[float]], questions: int) -> dict:
    return {s: {"MAP": float(np.mean(ap[s])), "MRR": float(np.mean(rr[s])), "questions": questions} for s in ap}


# ── eval sets through the real pipeline ──────────────────────────────────────

def eval_set(eval_file: Path, index_dir: Path, embedder, reader, min_score: float, split: str | None):
    from ..pipeline import Pipeline
    from .evaluation import load_questions, run_eval
    from .metrics import compute_metrics

    raw = {json.loads(l)["id"]: json.loads(l) for l in eval_file.read_text(encoding="utf-8").splitlines() if l.strip()}
    items = [it for it in load_questions(eval_file) if split is None or raw[it.id].get("split") == split]
    settings = Settings.from_env(index_dir=index_dir, min_answer_score=min_score,
                                 reader_model="shipped" if reader else "none")
    pipeline = Pipeline(settings, embedder=embedder, reader=reader)
    best, at = {}, [0]
    select = pipeline.answerer.select

    def recording(ranked):
        best[items[at[0]].id] = ranked[0].score if ranked else 0.0
        return select(ranked)

    def advance():
        at[0] += 1

    pipeline.answerer.select = recording  # measurement only: remember each question's best score
    results = run_eval(items, pipeline, progress=advance)
    index = pipeline.index
    scored = compute_metrics(items, results, index.documents, {c.chunk_id: c for c in index.chunks})
    lat = [r["latency_ms"] for r in results if r["kind"] in ("answer", "not_found")]
    return scored, results, best, items, lat


def threshold_grid(items, results, best) -> list[tuple[float, float, float, float]]:
    """(t, answer accuracy, refusal recall, refusal precision) as if refusing below t."""
    from .metrics import normalize

    rows = []
    by_id = {r["id"]: r for r in results}
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        ok = refused_un = refused = 0
        n_ans = sum(it.answerable for it in items)
        for it in items:
            refuse = best.get(it.id, 0.0) < t or by_id[it.id]["kind"] != "answer"
            refused += refuse
            if it.answerable:
                ok += (not refuse) and any(normalize(a) in normalize(by_id[it.id]["answer"]) for a in it.answers)
            else:
                refused_un += refuse
        n_un = len(items) - n_ans
        rows.append((float(t), ok / max(n_ans, 1), refused_un / max(n_un, 1), refused_un / max(refused, 1)))
    return rows


def squad_section(reader, scorer: Scorer) -> None:
    """Held-out SQuAD: each question's paragraph plus 4 sentences of other paragraphs of its
    article (rag.train.reader.window_candidates), every system scored on the very same
    candidates; thresholds chosen on the calib half, figures on the test half. "cross-encoder"
    reads every candidate (its best probability decides); "reader" is the shipped design
    (CrossReader.fuse: it reads the heuristic's best 8, and the sum of their probabilities decides)."""
    import random

    t0 = time.perf_counter()
    items = load_squad(SQUAD)
    by_article = group_by_article(items)
    held = [it for it in items if squad_split(it.article) == HELDOUT]
    idf = article_idf(o for its in by_article.values() for o in its)
    rng = random.Random(13)
    records = []
    for it in held:
        sentences, _, _ = window_candidates(it, by_article, rng)
        cov, typed = first_stage_features(it.question, sentences, *idf[it.article])
        h = heuristic(scorer.vectors(sentences) @ scorer.vectors([it.question])[0], cov, typed)
        order = sorted(range(len(sentences)), key=lambda i: -h[i])
        fused_order, _, answers = reader.fuse(it.question, sentences, h, order)
        p = reader.probabilities(it.question, sentences)
        # The paragraph's sentences come first among the candidates, so ``positives`` index them as they are.
        records.append({"item": it, "heuristic": (order[0], float(h[order[0]])),
                        "cross-encoder": (int(np.argmax(p)), float(p.max())), "reader": (fused_order[0], answers)})
    scorer.save()
    calib = [r for r in records if half(r["item"].qid) == "calib"]
    test = [r for r in records if half(r["item"].qid) == "test"]
    print(f"SQuAD 2.0 held-out articles, paragraph + 4 same-article distractors ({len(calib)} calib / "
          f"{len(test)} test questions; scored in {time.perf_counter() - t0:.0f} s)")
    print(f"{'system':<18} {'t':>9} {'sent acc':>9} {'answered+right':>15} {'no-ans P':>9} {'no-ans R':>9}")
    rows = [(system, best_threshold(calib, [r[system] for r in calib]), "(calib)")
            for system in ("heuristic", "cross-encoder", "reader")]
    rows.append(("reader", reader.threshold, "(shipped)"))
    for system, t, how in rows:
        m = squad_metrics(test, [r[system] for r in test], t)
        print(f"{system:<18} {t:>4.2f} {how:<9} {m['sentence_acc']:>9.3f} {m['answered_right']:>15.3f} "
              f"{m['noans_precision']:>9.3f} {m['noans_recall']:>9.3f}")


def wikiqa(reader, scorer: Scorer) -> dict:
    """WikiQA MAP/MRR: the heuristic, the cross-encoder reading every candidate, and the shipped
    fusion (it reads the heuristic's best 8)."""
    groups = wikiqa_groups()
    systems = ("heuristic", "cross-encoder", "reader")
    ap = {s: [] for s in systems}
    rr = {s: [] for s in systems}
    for rows in groups:
        question = rows[0]["Question"]
        sents = [r["Sentence"] for r in rows]
        labels = np.array([r["Label"] == "1" for r in rows])
        cos = scorer.vectors(sents) @ scorer.vectors([question])[0]
        cov, typed = first_stage_features(question, sents, *idf_table(sents))
        h = heuristic(cos, cov, typed)
        order = sorted(range(len(sents)), key=lambda i: -h[i])
        fused_order, _, _ = reader.fuse(question, sents, h, order)
        ranked = {"heuristic": np.array(order), "reader": np.array(fused_order),
                  "cross-encoder": np.argsort(-reader.probabilities(question, sents), kind="stable")}
        for system, at in ranked.items():
            add_ranking(ap[system], rr[system], labels[at])
    return map_mrr(ap, rr, len(groups))


def main() -> int:
    offline_environment()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "reader")
    ap.add_argument("--strike-index", type=Path, default=Path("/tmp/reader-strike-index"))
    ap.add_argument("--seiu-index", type=Path, default=Path("/tmp/reader-seiu-index"))
    ap.add_argument("--seiu-file", type=Path, default=ROOT / "eval" / "seiu503.jsonl")
    ap.add_argument("--no-grid", action="store_true", help="skip the threshold grid on the dev halves")
    ap.add_argument("--threshold", type=float,
                    help="record this refusal threshold (chosen from the dev-half grid) in the model's reader.json")
    ap.add_argument("--final", action="store_true",
                    help="also score the held-out halves and list their questions still wrong (the closing run only)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["squad", "wikiqa", "strike", "seiu"])
    args = ap.parse_args()
    from ..ingest.embedding import load_embedder

    for needed in (SQUAD, WIKIQA):
        if not needed.exists():
            print(f"missing {needed}: the shared datasets folder is needed", file=sys.stderr)
            return 2
    embedder = load_embedder()
    reader = load_reader(str(args.model))
    scorer = Scorer(embedder)
    if "squad" not in args.skip:
        squad_section(reader, scorer)
    print(f"(the reader's threshold {reader.threshold:.2f})")

    if "wikiqa" not in args.skip:
        t0 = time.perf_counter()
        w = wikiqa(reader, scorer)
        scorer.save()
        print(f"\nWikiQA test ({w['heuristic']['questions']} answered questions; {time.perf_counter() - t0:.0f} s)")
        for system, m in w.items():
            print(f"{system:<18} MAP {m['MAP']:.3f}  MRR {m['MRR']:.3f}")

    if args.threshold is not None:
        save_threshold(args.model, args.threshold, THRESHOLD_CHOSEN_ON)
        reader = type(reader)(args.model)
    settings_min = Settings.from_env().min_answer_score
    settings_min = reader.threshold if settings_min is None else settings_min
    sets = []
    if "strike" not in args.skip:
        if not (args.strike_index / "CURRENT").exists():
            from ..ingest.run import ingest
            ingest([ROOT / "corpus"], Settings(index_dir=args.strike_index), embedder_factory=lambda: embedder,
                   progress=False)
        sets.append(("strike", ROOT / "eval" / "questions.jsonl", args.strike_index))
    if "seiu" not in args.skip:
        if args.seiu_file.exists() and (args.seiu_index / "CURRENT").exists():
            sets.append(("seiu503", args.seiu_file, args.seiu_index))
        else:
            print(f"\nseiu503: skipped (need {args.seiu_file} and an index at {args.seiu_index}: "
                  f"rag ingest {SEIU_CORPUS} --index {args.seiu_index})")
    for name, path, index_dir in sets:
        print(f"\n{name}: {path}")
        rows = {}
        for system, rd, t in [("heuristic", None, HEURISTIC_MIN), ("reader", reader, settings_min)]:
            scored, results, best, items, lat = eval_set(path, index_dir, embedder, rd, t, None)
            rows[system] = (scored, results, best, items, lat)
            m = scored["metrics"]
            # The held-out half is scored once, at the end (--final): printing it every run invites tuning on it.
            for split in ("dev", HELDOUT, "all") if args.final else ("dev",):
                ids = {it.id for it in items if split == "all" or json.loads(_raw(path)[it.id]).get("split") == split}
                sub = _split_metrics(items, results, ids)
                print(f"  {system:<10} t={t:.2f} {split:<8} answer acc {sub[0]:.3f} ({sub[1]})  "
                      f"refusal R {sub[2]:.3f}  P {sub[3]:.3f}")
            print(f"  {system:<10} citation verbatim {m['citation_verbatim']:.3f}  latency p50 "
                  f"{np.percentile(lat, 50):.0f} ms  p95 {np.percentile(lat, 95):.0f} ms (in-process)")
        raw = _raw(path)
        if not args.no_grid:
            _, results, best, dev, _ = eval_set(path, index_dir, embedder, reader, 0.0, "dev")
            print("  reader threshold grid on the dev half (t: answer acc/refusal R/refusal P):")
            grid = threshold_grid(dev, results, best)
            for i in range(0, len(grid), 5):
                print("   " + "  ".join(f"{t:.2f}: {a:.2f}/{r:.2f}/{p:.2f}" for t, a, r, p in grid[i:i + 5]))
        wrong = [q for q in rows["reader"][0]["questions"] if not q["correct"]
                 and (args.final or json.loads(raw[q["id"]]).get("split") != HELDOUT)]
        print(f"  still wrong with the reader ({len(wrong)}{'' if args.final else ', dev half only'}):")
        for q in wrong:
            print(f"    [{json.loads(raw[q['id']]).get('split', '-')}] {q['id']}: {q.get('causes')} | {q['question']!r} "
                  f"-> {q['got'][:110]!r} (best p={rows['reader'][2].get(q['id'], 0):.2f})")
    scorer.save()
    return 0


def _raw(path: Path) -> dict[str, str]:
    return {json.loads(l)["id"]: l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()}


def _split_metrics(items, results, ids):
    from .metrics import answer_is_correct

    by_id = {r["id"]: r for r in results}
    sel = [it for it in items if it.id in ids]
    ans = [it for it in sel if it.answerable]
    un = [it for it in sel if not it.answerable]
    right = sum(answer_is_correct(it, by_id[it.id]) for it in ans)
    refused = [it for it in sel if by_id[it.id]["refused"]]
    r_un = sum(1 for it in un if by_id[it.id]["refused"])
    return (right / max(len(ans), 1), f"{right}/{len(ans)}", r_un / max(len(un), 1),
            r_un / max(len(refused), 1))


if __name__ == "__main__":
    sys.exit(main())
