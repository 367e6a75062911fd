"""Old heuristic vs trained reader, side by side, in one run.

    python scripts/bench_reader.py [--model models/reader] [--calibrate reader+features] [--final]

- held-out SQuAD 2.0 articles (rag.answer.training.split_of): answer-sentence accuracy and
  no-answer precision/recall, each question's own paragraph as the candidates;
- WikiQA test: MAP and MRR over the 243 questions with an answer sentence (the reader
  ranks every candidate sentence, as the benchmark asks);
- the strike eval set (eval/questions.jsonl) and the seiu503 set, through the real
  pipeline: answer accuracy, refusal recall/precision, `rag ask` latency p50/p95.

Held-out SQuAD questions are halved (rag.answer.training.half_of): ``--calibrate`` fits the
reader's calibration on the "calib" half only and writes it into the model's
reader.json; every SQuAD figure printed is on the "test" half. The eval sets'
``split: dev`` halves are where min_answer_score is chosen (the grid is printed).
Sentence vectors and reader scores are cached under .cache/bench_reader/ (keyed by
text and by model weights), so a second run is quick.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.answer.answering import TYPE_MISMATCH, first_stage_features  # noqa: E402
from rag.ingest.sentences import idf_table  # noqa: E402
from rag.config import Settings, offline_environment  # noqa: E402
from rag.answer.reader import QuestionTower, Reader, candidate_text, load_reader  # noqa: E402
from rag.answer.training import (QAItem, article_idf, default_squad, group_by_article, half_of, load_squad,  # noqa: E402
                          shared_data, split_of)

SQUAD = default_squad()
WIKIQA = shared_data("datasets", "wikiqa-test", "WikiQA-test.tsv")
SEIU_CORPUS = shared_data("corpora", "seiu503-higher-ed")
CACHE = ROOT / ".cache" / "bench_reader"
HEURISTIC_MIN = 0.44  # the old answerer's calibrated threshold
CAL_FEATURES = ("logit", "cosine", "coverage", "type_ok")


class Scorer:
    """Sentence vectors and reader logits, cached on disk by content."""

    def __init__(self, embedder, reader: Reader | None):
        self.embedder, self.reader = embedder, reader
        CACHE.mkdir(parents=True, exist_ok=True)
        self._vec_path = CACHE / "vectors.npz"
        self._vecs = dict(np.load(self._vec_path)) if self._vec_path.exists() else {}
        tag = _model_tag(reader.path) if reader else "none"
        self._logit_path = CACHE / f"logits-{tag}.json"
        self._logits = json.loads(self._logit_path.read_text()) if self._logit_path.exists() else {}

    def vectors(self, texts: list[str]) -> np.ndarray:
        keys = [_key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in self._vecs}.items())
        for i in range(0, len(todo), 64):
            part = todo[i:i + 64]
            for (k, _), v in zip(part, self.embedder.embed_batch([t for _, t in part])):
                self._vecs[k] = v
        return np.stack([self._vecs[k] for k in keys]) if keys else np.zeros((0, self.embedder.dim))

    def logits(self, question: str, texts: list[str]) -> np.ndarray:
        keys = [_key(question + "\x00" + t) for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self._logits]
        if todo:
            for i, v in zip(todo, self.reader.logits(question, [texts[i] for i in todo])):
                self._logits[keys[i]] = float(v)
        return np.array([self._logits[k] for k in keys])

    def save(self) -> None:
        np.savez(self._vec_path, **self._vecs)
        self._logit_path.write_text(json.dumps(self._logits))


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _model_tag(path: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(Path(path).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


# ── SQuAD held-out ───────────────────────────────────────────────────────────

def squad_records(scorer: Scorer, items: list[QAItem], read_top: int) -> list[dict]:
    """Per question: first-stage features for every sentence of its paragraph, reader logits for the top."""
    idf_by_article = article_idf(items)
    qvecs = scorer.vectors([it.question for it in items])
    records = []
    for it, qv in zip(items, qvecs):
        sents = list(it.sentences)
        cos = scorer.vectors(sents) @ qv
        cov, typed = first_stage_features(it.question, sents, *idf_by_article[it.article])
        heur = heuristic(cos, cov, typed)
        top = list(np.argsort(-heur, kind="stable")[:read_top])
        logits = np.full(len(sents), np.nan)
        if scorer.reader:
            logits[top] = scorer.logits(it.question, [it.text(i) for i in top])
        records.append({"item": it, "cos": cos, "cov": cov, "typed": typed.astype(float), "heur": heur,
                        "top": top, "logit": logits})
    return records


def fit_calibration(records: list[dict], features: tuple[str, ...]):
    from sklearn.linear_model import LogisticRegression

    x, y = [], []
    for r in records:
        for i in r["top"]:
            x.append(_row(r, i, features))
            y.append(i in r["item"].positives)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(np.array(x), np.array(y))
    return model.coef_[0], float(model.intercept_[0])


def _row(r: dict, i: int, features) -> list[float]:
    cols = {"logit": r["logit"], "cosine": r["cos"], "coverage": r["cov"], "type_ok": r["typed"]}
    return [float(cols[f][i]) for f in features]


def squad_scores(records: list[dict], system: str, cal: dict) -> list[tuple[int, float]]:
    """(best sentence index, its score) per question, for one system."""
    out = []
    for r in records:
        if system == "heuristic":
            best = int(np.argmax(r["heur"]))
            out.append((best, float(r["heur"][best])))
            continue
        feats, w, b = cal[system]
        p = [1 / (1 + np.exp(-(np.dot(_row(r, i, feats), w) + b))) for i in r["top"]]
        j = int(np.argmax(p))
        out.append((r["top"][j], float(p[j])))
    return out


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


def wikiqa(scorer: Scorer, cal: dict) -> dict:
    groups = wikiqa_groups()
    ap = {s: [] for s in ["heuristic", *cal]}
    rr = {s: [] for s in ap}
    for rows in groups:
        question = rows[0]["Question"]
        sents = [r["Sentence"] for r in rows]
        labels = np.array([r["Label"] == "1" for r in rows])
        cos = scorer.vectors(sents) @ scorer.vectors([question])[0]
        cov, typed = first_stage_features(question, sents, *idf_table(sents))
        heur = heuristic(cos, cov, typed)
        order = list(np.argsort(-heur, kind="stable"))
        top = order  # answer-sentence selection: the reader ranks every candidate sentence
        texts = [candidate_text(sents[i], rows[i]["DocumentTitle"], sents[i - 1] if i else "") for i in top]
        logit = np.full(len(sents), np.nan)
        if scorer.reader:
            logit[top] = scorer.logits(question, texts)
        r = {"logit": logit, "cos": cos, "cov": cov, "typed": typed.astype(float)}
        for system in ap:
            if system == "heuristic":
                ranking = order
            else:
                feats, w, b = cal[system]
                ranking = sorted(top, key=lambda i: -np.dot(_row(r, i, feats), w))
            add_ranking(ap[system], rr[system], labels[ranking])
    return map_mrr(ap, rr, len(groups))


# ── eval sets through the real pipeline ──────────────────────────────────────

def eval_set(eval_file: Path, index_dir: Path, embedder, reader, min_score: float, split: str | None):
    from rag.evaluate.evaluation import load_questions, run_eval
    from rag.evaluate.metrics import compute_metrics
    from rag.pipeline import Pipeline

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
    from rag.evaluate.metrics import normalize

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


def squad_section(scorer: Scorer, reader: Reader, read_top: int, args) -> dict:
    """Print the held-out SQuAD table; return the calibrations fit on the calib half."""
    t0 = time.perf_counter()
    items = [it for it in load_squad(SQUAD) if split_of(it.article) == "heldout"]
    rng = np.random.default_rng(13)
    items = [items[i] for i in sorted(rng.choice(len(items), min(args.squad_limit, len(items)), replace=False))]
    records = squad_records(scorer, items, read_top)
    scorer.save()
    calib = [r for r in records if half_of(r["item"].qid) == "calib"]
    test = [r for r in records if half_of(r["item"].qid) == "test"]
    cal = {"reader": (("logit",), *fit_calibration(calib, ("logit",))),
           "reader+features": (CAL_FEATURES, *fit_calibration(calib, CAL_FEATURES)),
           "features (LR)": (CAL_FEATURES[1:], *fit_calibration(calib, CAL_FEATURES[1:]))}
    print(f"SQuAD 2.0 held-out articles ({len(calib)} calib / {len(test)} test questions; "
          f"scored in {time.perf_counter() - t0:.0f} s)")
    print(f"{'system':<18} {'t (calib)':>9} {'sent acc':>9} {'answered+right':>15} {'no-ans P':>9} {'no-ans R':>9}")
    for system in ["heuristic", *cal]:
        t = best_threshold(calib, squad_scores(calib, system, cal))
        m = squad_metrics(test, squad_scores(test, system, cal), t)
        print(f"{system:<18} {t:>9.2f} {m['sentence_acc']:>9.3f} {m['answered_right']:>15.3f} "
              f"{m['noans_precision']:>9.3f} {m['noans_recall']:>9.3f}")
    m = squad_metrics(test, squad_scores(test, "heuristic", cal), HEURISTIC_MIN)
    print(f"{'heuristic @0.44':<18} {HEURISTIC_MIN:>9.2f} {m['sentence_acc']:>9.3f} {m['answered_right']:>15.3f} "
          f"{m['noans_precision']:>9.3f} {m['noans_recall']:>9.3f}")

    return cal


def tower_squad_section(tower, scorer: Scorer) -> None:
    """Held-out SQuAD for the question tower: each question's paragraph plus 4 sentences of
    other paragraphs of its article (rag.answer.training.tower_candidates), the heuristic scored
    on the very same candidates; thresholds chosen on the calib half, figures on the test half."""
    from rag.answer.training import tower_records

    t0 = time.perf_counter()
    items = load_squad(SQUAD)
    held = [it for it in items if split_of(it.article) == "heldout"]
    records = tower_records(tower, scorer.vectors, held, group_by_article(items))
    qvecs = scorer.vectors([r["item"].question for r in records])
    for r, qv in zip(records, qvecs):
        cos = scorer.vectors(r["sentences"]) @ qv
        r["heuristic"] = heuristic(cos, r["coverage"], r["type_ok"] > 0)
        r["tower"] = tower.probabilities(r["view"], r["cosine"], r["coverage"], r["type_ok"])
        r["tower cosine"] = r["cosine"]
    scorer.save()
    calib = [r for r in records if half_of(r["item"].qid) == "calib"]
    test = [r for r in records if half_of(r["item"].qid) == "test"]
    print(f"SQuAD 2.0 held-out articles, paragraph + 4 same-article distractors ({len(calib)} calib / "
          f"{len(test)} test questions; scored in {time.perf_counter() - t0:.0f} s)")
    print(f"{'system':<18} {'t (calib)':>9} {'sent acc':>9} {'answered+right':>15} {'no-ans P':>9} {'no-ans R':>9}")
    # The paragraph's sentences come first among a record's candidates, so each item's
    # ``positives`` index them as they are.
    best = lambda rs, system: [(j := int(np.argmax(r[system])), float(r[system][j])) for r in rs]
    for system in ("heuristic", "tower cosine", "tower"):
        t = best_threshold(calib, best(calib, system))
        m = squad_metrics(test, best(test, system), t)
        print(f"{system:<18} {t:>9.2f} {m['sentence_acc']:>9.3f} {m['answered_right']:>15.3f} "
              f"{m['noans_precision']:>9.3f} {m['noans_recall']:>9.3f}")


def tower_wikiqa(tower, scorer: Scorer) -> dict:
    """WikiQA MAP/MRR: the heuristic, the tower's cosine alone, and the tower's probability."""
    groups = wikiqa_groups()
    systems = ("heuristic", "tower cosine", "tower")
    ap = {s: [] for s in systems}
    rr = {s: [] for s in systems}
    for rows in groups:
        question = rows[0]["Question"]
        sents = [r["Sentence"] for r in rows]
        labels = np.array([r["Label"] == "1" for r in rows])
        vecs = scorer.vectors(sents)
        cos = vecs @ scorer.vectors([question])[0]
        cov, typed = first_stage_features(question, sents, *idf_table(sents))
        view = tower.view(question)
        tuned = vecs @ view.vector
        scores = {"heuristic": heuristic(cos, cov, typed),
                  "tower cosine": tuned, "tower": tower.probabilities(view, tuned, cov, typed.astype(float))}
        for system, sc in scores.items():
            add_ranking(ap[system], rr[system], labels[np.argsort(-sc, kind="stable")])
    return map_mrr(ap, rr, len(groups))


def main() -> int:
    offline_environment()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "reader")
    ap.add_argument("--squad-limit", type=int, default=400, help="held-out questions used (a seeded sample)")
    ap.add_argument("--strike-index", type=Path, default=Path("/tmp/reader-strike-index"))
    ap.add_argument("--seiu-index", type=Path, default=Path("/tmp/reader-seiu-index"))
    ap.add_argument("--seiu-file", type=Path, default=ROOT / "eval" / "seiu503.jsonl")
    ap.add_argument("--no-grid", action="store_true", help="skip the threshold grid on the dev halves")
    ap.add_argument("--calibrate", choices=["reader", "reader+features"],
                    help="write that calibration (fit on the SQuAD calib half) into the model's reader.json")
    ap.add_argument("--threshold", type=float,
                    help="record this refusal threshold (chosen from the dev-half grid) in the model's reader.json")
    ap.add_argument("--final", action="store_true",
                    help="also score the held-out halves and list their questions still wrong (the closing run only)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["squad", "wikiqa", "strike", "seiu"])
    args = ap.parse_args()
    from rag.ingest.embedding import load_embedder

    for needed in (SQUAD, WIKIQA):
        if not needed.exists():
            print(f"missing {needed}: the shared datasets folder is needed", file=sys.stderr)
            return 2
    embedder = load_embedder()
    reader = load_reader(str(args.model))
    tower = isinstance(reader, QuestionTower)
    read_top = Settings().reader_candidates
    scorer = Scorer(embedder, None if tower else reader)
    cal = {}
    if "squad" not in args.skip:
        if tower:
            tower_squad_section(reader, scorer)
        else:
            cal = squad_section(scorer, reader, read_top, args)
    if args.calibrate and not tower:
        from rag.answer.reader import save_calibration

        feats, w, b = cal[args.calibrate]
        save_calibration(args.model, feats, list(w), b,
                         fit_on=f"logistic regression on the calib half of held-out SQuAD ({args.calibrate}), "
                                f"the first stage's top {read_top} sentences per question")
        reader = Reader(args.model)
        scorer.reader = reader
    print(f"(the pipeline's reader calibration: {tuple(reader.features)}, threshold {reader.threshold:.2f})")

    if "wikiqa" not in args.skip:
        t0 = time.perf_counter()
        w = tower_wikiqa(reader, scorer) if tower else wikiqa(scorer, cal)
        scorer.save()
        print(f"\nWikiQA test ({w['heuristic']['questions']} answered questions; {time.perf_counter() - t0:.0f} s)")
        for system, m in w.items():
            print(f"{system:<18} MAP {m['MAP']:.3f}  MRR {m['MRR']:.3f}")

    if args.threshold is not None:
        from rag.answer.reader import THRESHOLD_CHOSEN_ON, save_threshold

        save_threshold(args.model, args.threshold, THRESHOLD_CHOSEN_ON)
        reader = QuestionTower(args.model) if tower else Reader(args.model)
    settings_min = Settings.from_env().min_answer_score
    settings_min = reader.threshold if settings_min is None else settings_min
    sets = []
    if "strike" not in args.skip:
        if not (args.strike_index / "CURRENT").exists():
            from rag.ingest.run import ingest
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
            for split in ("dev", "heldout", "all") if args.final else ("dev",):
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
                 and (args.final or json.loads(raw[q["id"]]).get("split") != "heldout")]
        print(f"  still wrong with the reader ({len(wrong)}{'' if args.final else ', dev half only'}):")
        for q in wrong:
            print(f"    [{json.loads(raw[q['id']]).get('split', '-')}] {q['id']}: {q.get('causes')} | {q['question']!r} "
                  f"-> {q['got'][:110]!r} (best p={rows['reader'][2].get(q['id'], 0):.2f})")
    scorer.save()
    return 0


def _raw(path: Path) -> dict[str, str]:
    return {json.loads(l)["id"]: l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()}


def _split_metrics(items, results, ids):
    from rag.evaluate.metrics import answer_is_correct

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
