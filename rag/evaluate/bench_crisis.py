"""How well the crisis screen does on messages it was never trained on.

    python -m rag.evaluate.bench_crisis                      # the shipped screen, default samples
    python -m rag.evaluate.bench_crisis --head /tmp/mlp.npz  # add another head as a column
    python -m rag.evaluate.bench_crisis --full               # every message of every set (slow)
    python -m rag.evaluate.bench_crisis --latency 200        # also time the screen per message
    python -m rag.evaluate.bench_crisis --reread models/crisis/reread  # add the screen with its second look

Prints, for the rules alone, rules + the English head on every message, rules + the screen as
it ships (Spanish messages read by the Spanish head) and rules + each extra head, the share of
each set flagged "crisis" and "crisis or concern":
  - Fei-X tweets (all contain "suicidal"): label 2 (suicidal) recall, label 0 false alarms;
  - SDCNL Reddit posts: r/SuicideWatch recall, r/depression for information;
  - C-SSRS 500 Reddit users: recall by level (Supportive users are not at risk);
  - document questions: the eval sets (held-out half and all), held-out SQuAD questions
    with crisis words, and all held-out SQuAD questions: false alarms.
The public crisis sets only measure; nothing here trains or tunes. Messages are read as
the server reads them (first SCAN_CHARS characters, sentence by sentence); sampled sets
are sampled by a stable hash, so every run reads the same messages. The held-out halves
are rag.train.crisis's: ``splits.crisis_split``.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..answer.crisis import CrisisDetector, CrisisHead, encoder_for, language, pieces, summarize
from ..answer.safety import SCAN_CHARS, check, combine, screen
from ..config import ROOT, offline_environment, shared_dir
from ..train.crisis import HALVED, HARD_WORDS, SQUAD, screened_text, union_questions, written_2, written_rows
from ..train.splits import HELDOUT, crisis_split, stable_sample

csv.field_size_limit(10**8)
CRISIS = shared_dir("datasets", "crisis")
DEFAULT_HEAD = ROOT / "models" / "crisis" / "head.npz"
DEFAULT_SPANISH = ROOT / "models" / "crisis" / "head-es.npz"
CSSRS_LEVELS = ("Supportive", "Indicator", "Ideation", "Behavior", "Attempt")


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def held_out(text: str) -> bool:
    """Whether rag.train.crisis left this text out of training."""
    return crisis_split(text) == HELDOUT


def _cssrs_text(cell: str) -> str:
    """A user's posts, stored as a Python list literal (some cut off mid-string)."""
    try:
        return "\n".join(ast.literal_eval(cell))
    except (ValueError, SyntaxError):
        return cell.strip("[]'\" ").replace("', '", "\n").replace('", "', "\n")


def load_sets(args) -> list[tuple[str, str, list[str]]]:
    """(group, name, messages) for every set that is present."""
    sets = []
    fei = CRISIS / "fei-x" / "tweets.csv"
    if fei.exists():
        rows = _rows(fei)
        n = None if args.full else args.sample
        sets.append(("Fei-X", "label 2 suicidal", stable_sample([r["tweet"] for r in rows if r["label"] == "2"], n)))
        if args.full:
            sets.append(("Fei-X", "label 1 ambiguous", [r["tweet"] for r in rows if r["label"] == "1"]))
        sets.append(("Fei-X", "label 0 not suicidal", stable_sample([r["tweet"] for r in rows if r["label"] == "0"], n)))
    sdcnl = CRISIS / "sdcnl"
    if sdcnl.exists():
        files = ["testing-set.csv", "training-set.csv"] if args.full else ["testing-set.csv"]
        rows = [r for f in files for r in _rows(sdcnl / f)]
        text = lambda r: f"{r['title']}\n{r['selftext']}".strip()  # noqa: E731
        n = None if args.full else args.sample_posts
        split = "all" if args.full else f"test split, {n} sampled"
        sets.append(("SDCNL", f"r/SuicideWatch ({split})", stable_sample([text(r) for r in rows if r["is_suicide"] == "1"], n)))
        sets.append(("SDCNL", f"r/depression ({split})", stable_sample([text(r) for r in rows if r["is_suicide"] == "0"], n)))
    cssrs = CRISIS / "reddit-cssrs-500" / "posts.csv"
    if cssrs.exists():
        rows = _rows(cssrs)
        n = None if args.full else args.sample_cssrs
        for level in CSSRS_LEVELS:
            sets.append(("C-SSRS", level, stable_sample([_cssrs_text(r["Post"]) for r in rows if r["Label"] == level], n)))
    for path in [*sorted((ROOT / "eval").glob("*.jsonl")), *(args.questions or [])]:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        qs = [row["question"] for row in rows if "question" in row]  # eval/claims.jsonl holds claims
        if not qs:
            continue
        if path.parent == ROOT / "eval":  # rag.train.crisis trains on the other half
            sets.append(("Documents", f"{path.name} held-out half", [q for q in qs if held_out(q)]))
            sets.append(("Documents", f"{path.name} all (half trained on)", qs))
        else:
            sets.append(("Documents", f"{path.name} (not trained on)", qs))
    # The written messages' held-out half (rag.train.crisis trains on the other), and the written
    # reader questions (members' questions over other unions' documents) as ordinary messages.
    for name, path in HALVED.items():
        kept = [r for r in written_rows(path) if held_out(screened_text(r))]
        for label in ("crisis", "concern", "none"):
            for lang in ("en", "es"):
                texts = [screened_text(r) for r in kept if r["label"] == label and r["lang"] == lang]
                sets.append((name, f"held-out {label} ({lang})", texts))
    union = list(dict.fromkeys(union_questions()))
    sets.append(("Documents", "written union questions, held-out half", [q for q in union if held_out(q)]))
    if SQUAD.exists():
        data = json.loads(SQUAD.read_text(encoding="utf-8"))
        qs = [q["question"].strip() for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
        kept = [q for q in dict.fromkeys(qs) if held_out(q)]
        sets.append(("Documents", "SQuAD held-out, crisis words", [q for q in kept if HARD_WORDS.search(q)]))
        if args.full:
            sets.append(("Documents", "SQuAD held-out, all", kept))
    return sets


class VectorCache:
    """Piece vectors kept between runs, so a new head is measured in seconds."""

    def __init__(self, path: Path | None):
        self.path = path
        self.known: dict[str, np.ndarray] = {}
        if path and path.exists():
            with np.load(path, allow_pickle=False) as data:
                self.known = dict(zip(data["texts"].tolist(), data["vectors"]))

    def vectors(self, embedder, texts: list[str]) -> np.ndarray:
        from ..ingest.embedding import embed_all

        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            print(f"  embedding {len(missing)} new pieces…", file=sys.stderr, flush=True)
            self.known.update(zip(missing, embed_all(embedder, missing, batch_size=64)))
            if self.path:
                np.savez(self.path, texts=np.array(list(self.known)), vectors=np.stack(list(self.known.values())))
        return np.stack([self.known[t] for t in texts]) if texts else np.zeros((0, embedder.dim), np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", type=Path, action="append", help="extra detector heads to compare, each alone")
    parser.add_argument("--spanish", type=Path, default=DEFAULT_SPANISH, help="the head that reads Spanish messages")
    # Defaults sized for a shared 2-core machine (~15 minutes the first time, seconds after).
    parser.add_argument("--sample", type=int, default=300, help="tweets per Fei-X label (stable sample)")
    parser.add_argument("--sample-posts", type=int, default=100, help="SDCNL posts per subreddit")
    parser.add_argument("--sample-cssrs", type=int, default=12, help="users per C-SSRS level (stable sample)")
    parser.add_argument("--full", action="store_true", help="every message of every set")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/crisis-bench-vectors.npz"))
    parser.add_argument("--questions", type=Path, action="append", help="more eval files of document questions")
    parser.add_argument("--only", action="append", help="only these groups (Fei-X, SDCNL, C-SSRS, Written-2, Written-3, Documents)")
    parser.add_argument("--latency", type=int, default=0,
                        help="also time the screen (rules + each head) on this many held-out union questions")
    parser.add_argument("--reread", type=Path,
                        help="a second-look model (rag train-crisis --reread): adds the column 'reread', the screen "
                             "with it reading the English messages the head flags")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    offline_environment()
    from ..ingest.embedding import load_embedder

    english, spanish = CrisisHead(DEFAULT_HEAD), CrisisHead(args.spanish)
    heads = [english, spanish, *(CrisisHead(p) for p in args.head or [])]
    embedder = load_embedder()
    # Each head reads the vectors of the encoder it was trained on, each kept in its own cache.
    encoders: dict[str, tuple] = {}
    for head in heads:
        name = _encoder_name(head, embedder)
        if name not in encoders:
            path = args.cache if not encoders else args.cache.with_name(f"{args.cache.stem}-{len(encoders)}.npz")
            encoders[name] = (encoder_for(head, embedder), VectorCache(path))
    # The columns: the English head alone (the screen before the Spanish head), the screen as it
    # ships (Spanish messages to the Spanish head), and each extra head alone.
    systems = {"english head": lambda text: english,
               "screen": lambda text: spanish if language(text) == "es" else english}
    for i, head in enumerate(heads[2:]):
        systems[f"{head.meta['kind']}#{i + 1}"] = lambda text, head=head: head
    rereader = None
    if args.reread:
        from ..answer.crisis_reread import CrisisRereader

        rereader = CrisisRereader(args.reread)
    if args.latency:
        print(latency(english, spanish, embedder, args.latency, rereader), file=sys.stderr, flush=True)
    results = []
    for group, name, texts in load_sets(args):
        if args.only and group not in args.only:
            continue
        started = time.perf_counter()
        rules = [(v.kind if (v := check(t)) else None) for t in texts]
        split = [pieces(t, SCAN_CHARS) for t in texts]
        flat = [p.text for parts in split for p in parts]
        vectors = {n: cache.vectors(enc, flat) for n, (enc, cache) in encoders.items()}
        probs = {id(h): h.probabilities(vectors[_encoder_name(h, embedder)]) for h in heads}
        row = {"group": group, "set": name, "n": len(texts),
               "rules": _rates(["crisis" if k == "crisis" else "none" for k in rules])}
        verdicts, distress = {}, []
        for column, choose in systems.items():
            at, verdicts[column] = 0, []
            for text, parts in zip(texts, split):
                head = choose(text)
                scores = summarize(probs[id(head)][at:at + len(parts)], parts, head.concern_threshold)
                verdicts[column].append(head.decide(scores))
                if column == "screen":
                    distress.append(scores.distress / head.concern_threshold)
                at += len(parts)
        if rereader is not None:  # English messages in the grey zone read again, as CrisisDetector.verdict does
            english_texts = [i for i, t in enumerate(texts) if language(t) != "es"]
            again = dict(zip(english_texts, rereader.readings([texts[i][:SCAN_CHARS] for i in english_texts])))
            verdicts["reread"] = [rereader.decide(v, again[i]) if i in again and distress[i] >= rereader.zone
                                  else v for i, v in enumerate(verdicts["screen"])]
        for column, kinds in verdicts.items():
            row[column] = _rates([combine(rule if rule == "crisis" else None, k) for rule, k in zip(rules, kinds)])
        row["seconds"] = round(time.perf_counter() - started, 1)
        results.append(row)
        rates = " ".join(f"{k} {v['crisis']:.3f}/{v['flagged']:.3f}" for k, v in row.items() if isinstance(v, dict))
        print(f"  {group} / {name}: {len(texts)} messages, {row['seconds']} s; {rates}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    elif results:
        print(table(results))
    return 0


def _encoder_name(head: CrisisHead, embedder) -> str:
    return head.meta.get("embedder", embedder.name)


def latency(english: CrisisHead, spanish: CrisisHead, embedder, n: int, rereader=None) -> str:
    """What the screen adds to ``rag ask`` per message, p50 and p90 in milliseconds, on ``n`` held-out
    union questions (English) and the held-out written Spanish messages (with a second look, also
    the held-out written English ones, most of them in its grey zone).

    Each system is timed as the pipeline runs it: the screen, then the question's own vector for
    retrieval (which the MiniLM screen shares through the embedder's memo, emptied before each
    turn so no system reuses another's work); "no screen" is that vector alone. The systems take
    turns on each message, so a busy moment of a shared machine falls on all of them alike."""
    detectors = {"no screen": None, "rules": None, "english head": CrisisDetector(embedder, english),
                 "screen": CrisisDetector(embedder, english,
                                          spanish=CrisisDetector(encoder_for(spanish, embedder), spanish))}
    if rereader is not None:
        detectors["reread"] = CrisisDetector(embedder, english, second=rereader,
                                             spanish=detectors["screen"].spanish)
    for d in list(detectors.values())[2:]:
        d.verdict("warm up")
        d.verdict("hola, ¿qué tal?")
    if rereader is not None:
        rereader.verdict("warm up", "concern")
    sets = {"union questions (en)": stable_sample([q for q in dict.fromkeys(union_questions()) if held_out(q)], n),
            "written messages (es)": [screened_text(r) for r in written_2()
                                      if r["lang"] == "es" and held_out(screened_text(r))]}
    if rereader is not None:  # what a message in the grey zone pays: most of these are flagged
        sets["written messages (en)"] = [screened_text(r) for r in written_2()
                                         if r["lang"] == "en" and held_out(screened_text(r))]
    lines = []
    for set_name, texts in sets.items():
        times: dict[str, list[float]] = {name: [] for name in detectors}
        for text in texts:
            for name, d in detectors.items():
                _forget(embedder)
                t = time.perf_counter()
                if name != "no screen":
                    screen(text, d)
                embedder.embed_batch([text])
                times[name].append((time.perf_counter() - t) * 1000)
        base = np.percentile(times["no screen"], 50)
        lines += [f"{set_name} ({len(texts)}), {name}: p50 {np.percentile(t, 50):.1f} ms (adds "
                  f"{np.percentile(t, 50) - base:.1f}), p90 {np.percentile(t, 90):.1f}" for name, t in times.items()]
    return "\n".join(lines)


def _forget(embedder) -> None:
    """Empty the embedder's memo of recent texts (a benchmark's reach into its internals: the
    embedder offers no way, as nothing else needs one)."""
    with embedder._memo_lock:
        embedder._memo.clear()


def _rates(kinds: list[str]) -> dict:
    n = max(len(kinds), 1)
    crisis = sum(k == "crisis" for k in kinds)
    flagged = sum(k in ("crisis", "concern") for k in kinds)
    return {"crisis": round(crisis / n, 4), "flagged": round(flagged / n, 4)}


def table(results: list[dict]) -> str:
    systems = [k for k in results[0] if k not in ("group", "set", "n", "seconds")]
    head = f"{'set':46s} {'n':>5s} " + " ".join(f"{s + ' crisis':>17s} {s + ' c|c':>15s}" for s in systems)
    lines = [head, "-" * len(head)]
    for r in results:
        cells = " ".join(f"{r[s]['crisis']:>17.3f} {r[s]['flagged']:>15.3f}" for s in systems)
        lines.append(f"{(r['group'] + ' / ' + r['set'])[:46]:46s} {r['n']:>5d} {cells}")
    lines.append("crisis: share given the crisis response; c|c: crisis or concern (resources line).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
