"""The `rag` command: ingest, ask, eval, bench-retrieval, bench-scale, serve, feedback, train-reader, train-crisis, staff."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .config import Settings, offline_environment
from .errors import DatabaseUnavailableError, RagError


def main(argv: list[str] | None = None) -> int:
    offline_environment()
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        index = getattr(args, "index", None)  # a flag's path is relative to where you are, not to home
        settings = Settings.from_env(index_dir=index.resolve() if index else None)
        _quiet_libraries(settings)
        return args.run(args, settings) or 0
    except DatabaseUnavailableError as exc:  # a setting to fix, like a bad flag
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad settings or flags
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the previous index is unchanged", file=sys.stderr)
        return 130


NOISY_LIBRARIES = ("pypdf", "bm25s")  # a damaged PDF logs hundreds of lines ("Ignoring wrong pointing object")


def _quiet_libraries(settings: Settings) -> None:
    """Libraries' own log lines go to data/debug.log, not the console: the console keeps the one
    warning per file that ingest prints itself (with its pages)."""
    import logging

    path = settings.data_dir / "debug.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        handler = logging.NullHandler()  # a read-only data folder: drop them rather than fail
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in NOISY_LIBRARIES:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Answers questions from a union's strike documents, with citations.")
    sub = p.add_subparsers(dest="command")

    ing = sub.add_parser("ingest", help="build or update the index from corpus folders")
    ing.add_argument("corpus", nargs="*", type=Path, help="corpus folders (default: corpus/)")
    ing.add_argument("--index", type=Path, help="index folder (default: index/)")
    ing.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="chunk and embed on a Ray cluster (HOST:PORT, ray://HOST:PORT or auto); without an "
                          "address, on a local Ray (pip install -e '.[scale]')")
    ing.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray (default 2)")
    ing.add_argument("--ray-workers", type=int, help="model workers on Ray, one CPU each (default: one per CPU)")
    ing.set_defaults(run=_ingest)

    ask = sub.add_parser("ask", help="answer one question from the documents")
    ask.add_argument("question")
    ask.add_argument("--index", type=Path)
    ask.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    ask.add_argument("--top-k", type=int, help="chunks to retrieve (default 8)")
    ask.set_defaults(run=_ask)

    ev = sub.add_parser("eval", help="run an eval set and report answer fidelity")
    ev.add_argument("eval_file", nargs="?", type=Path, help="eval set (default eval/questions.jsonl under home)")
    ev.add_argument("--index", type=Path)
    ev.add_argument("--out", type=Path, help="results JSONL (default eval/results.jsonl)")
    ev.add_argument("--report", type=Path, help="HTML report (default eval/report.html)")
    ev.add_argument("--thresholds", type=Path, help="gate thresholds (default eval/thresholds.json)")
    ev.add_argument("--split", choices=("dev", "heldout"), help="score only the questions of this split")
    ev.add_argument("--llm", action="store_true",
                    help="also answer with the model at RAG_LLM_URL and report both modes side by side")
    ev.set_defaults(run=_eval)

    bench = sub.add_parser("bench-retrieval", help="nDCG@10 / recall@100 on a BEIR dataset")
    bench.add_argument("dataset", type=Path)
    bench.add_argument("--limit", type=int, help="use only the first N corpus documents")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=_bench)

    scale = sub.add_parser("bench-scale", help="dense and BM25 index build, memory, latency, recall at 100k-1M chunks")
    scale.add_argument("--sizes", type=int, nargs="+", help="chunk counts (default 100000 1000000)")
    scale.add_argument("--types", help="dense index types, comma-separated (default flat,ivf-sq8,hnsw-sq8)")
    scale.add_argument("--queries", type=int, default=200, help="SciFact queries searched per index")
    scale.add_argument("--no-bm25", action="store_true", help="skip the BM25 measurements")
    scale.add_argument("--work", type=Path, help="folder for the built indexes (default: a temp folder)")
    scale.add_argument("--from-builds", type=Path, nargs="+",
                       help="take real chunk vectors from these index build folders instead of embedding "
                            "SciFact and ../shared/corpora (much faster on a busy machine)")
    scale.add_argument("--json", action="store_true")
    scale.set_defaults(run=_bench_scale)

    serve = sub.add_parser("serve", help="start the chat UI, API and widget")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--index", type=Path)
    serve.add_argument("--workers", type=int, help="server processes sharing the index (default 1)")
    serve.set_defaults(run=_serve)

    tr = sub.add_parser("train-reader", help="rebuild the reader: the cross-encoder, trained on the written union "
                                             "questions' train split (training/reader/labels.jsonl); seeded, CPU")
    tr.add_argument("--out", type=Path, default=Path("models/reader"), help="model folder (default models/reader)")
    tr.add_argument("--seed", type=int, default=13)
    tr.add_argument("--union", type=Path, default=Path("training/reader/labels.jsonl"),
                    help="the written union questions (default training/reader/labels.jsonl; their train split)")
    tr.add_argument("--questions", type=int, help="cap on training questions (a seeded sample; default: all)")
    tr.add_argument("--epochs", type=int, default=2, help="passes over the data (default 2)")
    tr.add_argument("--threshold", type=float,
                    help="record this refusal threshold (a probability, chosen on the eval sets' dev halves with "
                         "python -m rag.evaluate.bench_reader) in reader.json; without it the reader refuses below 0.5")
    tr.set_defaults(run=_train_reader)

    tc = sub.add_parser("train-crisis", help="rebuild the crisis detector's head (models/crisis/head.npz; seeded, ~3 min)")
    tc.add_argument("--out", type=Path, help="head file (default: the crisis model in settings, models/crisis/head.npz)")
    tc.add_argument("--cache", type=Path, help="reuse text vectors from this .npz (speeds up re-runs)")
    tc.add_argument("--head", choices=["auto", "logreg", "mlp"], default="auto",
                    help="auto (the default): the better of the two by 5-fold cross-validation")
    tc.add_argument("--encoder", choices=["minilm", "e5"], default="minilm",
                    help="minilm: the bundled model (models/crisis/head.npz); e5: multilingual-e5-small, "
                         "the Spanish head (models/crisis/head-es.npz, built with --head mlp)")
    tc.add_argument("--reread", action="store_true",
                    help="build the second look instead: all of MiniLM fine-tuned on the same data "
                         "(models/crisis/reread/; seeded, ~15 min on 2 busy cores)")
    tc.set_defaults(run=_train_crisis)

    fb = sub.add_parser("feedback", help="list recent dislikes and unanswered questions")
    fb.add_argument("--limit", type=int, default=20)
    fb.add_argument("--json", action="store_true")
    fb.set_defaults(run=_feedback)

    staff = sub.add_parser("staff", help="staff accounts for the console at /admin: add, list, remove")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_sub.add_parser("add", help="add an account (asks for its password twice)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input (scripts)")
    add.set_defaults(run=_staff_add)
    staff_sub.add_parser("list", help="list the accounts").set_defaults(run=_staff_list)
    rm = staff_sub.add_parser("remove", help="remove an account and end its sessions")
    rm.add_argument("name")
    rm.set_defaults(run=_staff_remove)
    return p


def _ingest(args, settings: Settings) -> int:
    from .ingest.run import ingest

    # The console's documents (data/documents) are indexed beside the corpus, as the console does.
    folders = args.corpus or settings.corpus_dirs()
    if args.ray is not None:
        from .ingest.ray_ingest import RayOptions, ingest_on_ray

        if args.ray and args.ray_cpus is not None:
            raise ValueError("--ray-cpus sizes a local Ray; a cluster at an address has its own")
        options = RayOptions(address=args.ray or None, cpus=2 if args.ray_cpus is None else args.ray_cpus, workers=args.ray_workers)
        report = ingest_on_ray(folders, settings, options)
    elif args.ray_cpus is not None or args.ray_workers is not None:
        raise ValueError("--ray-cpus and --ray-workers go with --ray")
    else:
        report = ingest(folders, settings)
    for item in report.skipped:
        print(f"warning: skipped {item.path}: {item.reason}", file=sys.stderr)
    for doc_id, note in report.notes:
        print(f"warning: {doc_id}: {note}", file=sys.stderr)
    print(report.summary())
    return 0


def _ask(args, settings: Settings) -> int:
    from .ingest.dates import display
    from .pipeline import Pipeline
    from .types import read_as

    if args.top_k is not None and args.top_k <= 0:
        raise ValueError(f"--top-k must be > 0, got {args.top_k}")
    answer = Pipeline(settings).ask(args.question, top_k=args.top_k)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
        return 0
    if answer.corrected:
        print(read_as(answer.corrected) + "\n")
    print(answer.text)
    if answer.contact:
        c = answer.contact
        print(f"You can ask {c.name}: " + " · ".join(w for w in (c.url, c.phone, c.email) if w))
    if answer.notice:
        print(f"\n{answer.notice.replace('**', '')}")
    shown = answer.citations or answer.related
    if answer.related and not answer.citations:
        print("\nClosest passages:")
    for c in shown:
        page = f", page {c.page}" if c.page else ""
        where = " · ".join(p for p in (c.section, display(c.date)) if p)
        print(f"\n[{c.n}] {c.title} ({c.doc_id}{page}, chars {c.start}-{c.end})"
              + (f"\n    {where}" if where else "") + f"\n    > {c.quote}")
        for a in c.also:
            print(f"    also in {a.title} ({a.doc_id}{f', page {a.page}' if a.page else ''}, chars {a.start}-{a.end})")
    return 0


def _eval(args, settings: Settings) -> int:
    from .evaluate.evaluation import run_cli

    return run_cli(args, settings)


def _bench(args, settings: Settings) -> int:
    from .evaluate.benchmark import report, run_benchmark

    print(report(run_benchmark(args.dataset, settings, limit=args.limit), args.json))
    return 0


def _bench_scale(args, settings: Settings) -> int:
    from .evaluate.bench_scale import main as bench_scale

    return bench_scale(args, settings)


def _serve(args, settings: Settings) -> int:
    from .serve.server import serve

    serve(replace(settings, **{k: v for k, v in (("host", args.host), ("port", args.port),
                                                 ("workers", args.workers)) if v is not None}))
    return 0


def _train_reader(args, settings: Settings) -> int:
    import time

    from .train.questions import load_union
    from .train.reader import train_cross

    for flag, value in (("--questions", args.questions), ("--epochs", args.epochs)):
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold is a probability in [0, 1], got {args.threshold}")
    started = time.monotonic()

    def progress(step: int, steps: int, loss: float) -> None:
        if step % 20 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {loss:.3f}  {time.monotonic() - started:.0f} s", file=sys.stderr)

    union = load_union(settings.path(args.union))
    report = train_cross(args.out, union, seed=args.seed, epochs=args.epochs, max_questions=args.questions,
                         progress=progress)
    print(f"trained on {report.examples} questions ({report.positives} answerable) in {report.seconds:.0f} s; "
          f"model in {args.out}")
    return _record_threshold(args)


def _record_threshold(args) -> int:
    """The refusal threshold chosen on the dev sets (--threshold), written into reader.json."""
    if args.threshold is not None:
        from .answer.reader import THRESHOLD_CHOSEN_ON, save_threshold

        save_threshold(args.out, args.threshold, THRESHOLD_CHOSEN_ON)
        print(f"refusal threshold {args.threshold} recorded")
    return 0


def _train_crisis(args, settings: Settings) -> int:
    from .train.crisis import train

    if args.reread:
        from .train.crisis_reread import train_reread

        train_reread(args.out or settings.crisis_reread, log=lambda line: print(line, flush=True))
        return 0
    out = args.out or (settings.crisis_model_es if args.encoder == "e5" else settings.crisis_model)
    train(out, cache=args.cache, head=args.head, encoder=args.encoder, log=lambda line: print(line, flush=True))
    return 0


def _feedback(args, settings: Settings) -> int:
    from .serve.feedback import print_report

    print_report(settings, limit=args.limit, as_json=args.json)
    return 0


def _staff_add(args, settings: Settings) -> int:
    import getpass

    from .errors import StaffError
    from .serve.admin.accounts import check_name, check_password, open_staff

    check_name(args.name)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("the same password again: ") != password:
            raise StaffError("the two passwords differ; nothing was changed")
    check_password(password)
    open_staff(settings).add(args.name, password)
    print(f"added staff account {args.name}; sign in at /admin")
    return 0


def _staff_list(args, settings: Settings) -> int:
    from .serve.admin.accounts import open_staff

    rows = open_staff(settings).names()
    for name, created in rows:
        print(f"{name}\tadded {created}")
    if not rows:
        print("no staff accounts; add one with `rag staff add NAME`", file=sys.stderr)
    return 0


def _staff_remove(args, settings: Settings) -> int:
    from .serve.admin.accounts import open_staff

    open_staff(settings).remove(args.name)
    print(f"removed staff account {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
