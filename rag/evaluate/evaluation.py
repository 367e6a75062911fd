"""`rag eval`: run an eval file through the pipeline, score it, report it, gate on thresholds.

    questions.jsonl ─load─▶ [EvalItem] ─Pipeline.ask─▶ results.jsonl ─metrics─▶ table, report.html, exit code

Any file in this format works, so a union can bring its own questions for its own documents.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from ..config import Settings
from ..errors import EvalFileError, InvalidQuestionError, ThresholdsError
from ..types import Answer, Kind, Mode, Turn
from .metrics import HIGHER_IS_BETTER, EvalItem, Gate, check_thresholds, compute_metrics
from .report import format_table, format_value, write_report

__all__ = ["EvalItem", "EvalFileError", "ThresholdsError", "Gate", "run_eval", "compute_metrics",
           "write_report", "run_cli", "load_questions", "parse_questions", "check_sources",
           "load_thresholds", "check_thresholds"]

DEFAULT_FILE = Path("eval/questions.jsonl")
DEFAULT_OUT = Path("eval/results.jsonl")
DEFAULT_REPORT = Path("eval/report.html")
DEFAULT_THRESHOLDS = Path("eval/thresholds.json")

_REQUIRED = {"id": str, "question": str, "answerable": bool, "answers": list, "sources": list}
_OPTIONAL = {"history": list, "category": str, "split": str}
SPLITS = ("dev", "heldout")  # tune on dev; score heldout only at the end


# ── loading ──────────────────────────────────────────────────────────────────

def load_questions(path: Path) -> list[EvalItem]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalFileError(f"eval file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"eval file {path} is unreadable: {exc}") from None
    return parse_questions(text.splitlines(), str(path))


def parse_questions(lines: Iterable[str], name: str = "eval file") -> list[EvalItem]:
    """EvalItems from JSONL lines; blank lines are skipped, line numbers are 1-based."""
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = _parse_line(line, number)
        except ValueError as exc:
            raise EvalFileError(f"{name}, line {number}: {exc}") from None
        if item.id in seen:
            raise EvalFileError(f"{name}, line {number}: id {item.id!r} is already used on line {seen[item.id]}")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise EvalFileError(f"{name} has no questions; write one JSON object per line")
    return items


def _parse_line(line: str, number: int) -> EvalItem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join([*_REQUIRED, *_OPTIONAL])}")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in row:
            if key in _REQUIRED:
                raise ValueError(f"missing field {key!r}")
        elif not isinstance(row[key], kind):
            raise ValueError(f"{key!r} must be a {_JSON_NAME[kind]}, got {_json_type(row[key])}")
    for key in ("id", "question", "category"):
        if key in row and not row[key].strip():
            raise ValueError(f"{key!r} is empty")
    if row.get("split", "dev") not in SPLITS:
        raise ValueError(f"'split' must be one of {', '.join(map(repr, SPLITS))}, got {row['split']!r}")
    for key in ("answers", "sources"):
        if not all(isinstance(x, str) and x.strip() for x in row[key]):
            raise ValueError(f"{key!r} must be a list of non-empty strings")
    if row["answerable"] and not (row["answers"] and row["sources"]):
        raise ValueError("an answerable question needs at least one of 'answers' and one of 'sources'")
    if not row["answerable"] and (row["answers"] or row["sources"]):
        raise ValueError("an unanswerable question ('answerable': false) must have empty 'answers' and 'sources'")
    history = []
    for i, turn in enumerate(row.get("history", []), start=1):
        try:
            if not (isinstance(turn, dict) and set(turn) == {"role", "content"}):
                raise ValueError
            history.append(Turn.from_json(turn))
        except ValueError:
            raise ValueError(f"history turn {i} must be {{\"role\": \"user\"|\"assistant\", \"content\": str}}") from None
    return EvalItem(id=row["id"], question=row["question"], answerable=row["answerable"],
                    answers=tuple(row["answers"]), sources=tuple(row["sources"]),
                    history=tuple(history), category=row.get("category", "uncategorized"),
                    split=row.get("split", ""), line=number)


_JSON_NAME = {str: "string", bool: "boolean", list: "list"}


def _json_type(value) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def check_sources(items: Sequence[EvalItem], documents: Iterable[str], name: str = "eval file") -> None:
    """A source the index does not hold would silently count as a retrieval miss: refuse to run."""
    known = set(documents)
    for item in items:
        unknown = [s for s in item.sources if s not in known]
        if unknown:
            raise EvalFileError(
                f"{name}, line {item.line}: source(s) {', '.join(map(repr, unknown))} not in the index "
                f"(it holds {len(known)} document(s), e.g. {', '.join(sorted(known)[:3]) or 'none'}); "
                "check the doc id or run `rag ingest`")


def load_thresholds(path: Path) -> dict[str, float]:
    """{metric: threshold} for any subset of the known metrics; unknown names are an error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ThresholdsError(f"thresholds file {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ThresholdsError(f"thresholds file {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ThresholdsError(f"{path}: expected a JSON object of metric: number")
    unknown = sorted(set(data) - set(HIGHER_IS_BETTER))
    if unknown:
        raise ThresholdsError(f"{path}: unknown metric(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(HIGHER_IS_BETTER)}")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ThresholdsError(f"{path}: {name!r} must be a number, got {value!r}")
        if HIGHER_IS_BETTER[name] and not 0 <= value <= 1:
            raise ThresholdsError(f"{path}: {name!r} is a share and must be between 0 and 1, got {value}")
        if not HIGHER_IS_BETTER[name] and value <= 0:
            raise ThresholdsError(f"{path}: {name!r} is a time in ms and must be > 0, got {value}")
    return {name: float(value) for name, value in data.items()}


# ── running ──────────────────────────────────────────────────────────────────

def run_eval(questions: Sequence[EvalItem], pipeline, progress: Callable[[], None] | None = None) -> list[dict]:
    """One result per question: the `rag ask --json` object plus "id", via the UI's own Pipeline.ask."""
    results = []
    for item in questions:
        try:
            answer = pipeline.ask(item.question, item.history)
        except InvalidQuestionError as exc:  # the UI shows this message; so do we
            answer = Answer(item.question, str(exc), refused=True, kind=Kind.INVALID)
        results.append({"id": item.id, **answer.to_json()})
        if progress:
            progress()
    return results


def write_results(results: Sequence[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in results:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def run_cli(args, settings: Settings) -> int:
    """`rag eval`: 0 when every gate passes, 1 when any metric is below its threshold."""
    from tqdm import tqdm

    from ..pipeline import Pipeline

    # Defaults live under settings.home, like the corpus and the index; paths given are taken as given.
    eval_file = Path(args.eval_file) if args.eval_file else settings.path(DEFAULT_FILE)
    out = Path(args.out) if args.out else settings.path(DEFAULT_OUT)
    report = Path(args.report) if args.report else settings.path(DEFAULT_REPORT)
    items = load_questions(eval_file)  # fail on a bad file before loading the model
    if getattr(args, "split", None):
        items = [item for item in items if item.split == args.split]
        if not items:
            raise EvalFileError(f"{eval_file} has no questions with split {args.split!r}")
    thresholds_path = Path(args.thresholds) if args.thresholds else settings.path(DEFAULT_THRESHOLDS)
    if args.thresholds or thresholds_path.exists():
        thresholds = load_thresholds(thresholds_path)
    else:
        print(f"note: no {thresholds_path}; reporting without gates", file=sys.stderr)
        thresholds = {}

    if getattr(args, "llm", False) and not settings.llm_url:
        raise EvalFileError("--llm needs a model: set RAG_LLM_URL (and RAG_LLM_MODEL if the server asks for one)")
    if not getattr(args, "llm", False):
        # The gates are defined on extractive answers (quotes contain the sentence); a model is measured with --llm.
        settings = replace(settings, llm_url="")
    pipeline = Pipeline(settings)
    check_sources(items, pipeline.index.documents, str(eval_file))
    if getattr(args, "llm", False):
        return compare_generated(items, pipeline, out, str(eval_file))
    with tqdm(total=len(items), desc="eval", unit="q", disable=not sys.stderr.isatty(), leave=False) as bar:
        results = run_eval(items, pipeline, progress=lambda: bar.update(1))
    write_results(results, out)
    index = pipeline.index
    scored = compute_metrics(items, results, index.documents, {c.chunk_id: c for c in index.chunks})
    gates = check_thresholds(scored["metrics"], thresholds)
    write_report(report, scored, gates, title=f"strike-qa eval: {eval_file.name}", source=str(eval_file))
    print(format_table(scored, gates, source=str(eval_file)))
    print(f"\nresults: {out}\nreport:  {report}")
    failed = [g for g in gates if g.passed is False]
    if failed:
        print("\nFAILED: " + "; ".join(f"{g.metric} {format_value(g.metric, g.value)} "
                                      f"(needs {g.op} {format_value(g.metric, g.threshold)})"
                                      for g in failed))
        return 1
    print("\nall gates passed" if gates else "\nno gates set")
    return 0




# ── `rag eval --llm`: generated answers beside the extractive ones ───────────

def compare_generated(items: Sequence[EvalItem], pipeline, out: Path, source: str) -> int:
    """Both modes on the same questions, one model load: 0 when every generated quote is verbatim."""
    index = pipeline.index
    chunks = {c.chunk_id: c for c in index.chunks}
    extractive, generated, kept, dropped, fallbacks = [], [], 0, 0, 0
    for item in items:
        extractive.append({"id": item.id, **_ask(lambda: pipeline.ask(item.question, item.history,
                                                                       generate=False), item).to_json()})
        events = []
        try:
            events = list(pipeline.stream(item.question, item.history))
        except InvalidQuestionError as exc:
            events = [Answer(item.question, str(exc), refused=True, kind=Kind.INVALID)]
        final = events[-1]
        asked = "generate" in final.timings_ms
        kept += len(events) - 1 if final.mode == Mode.GENERATED else 0
        dropped += final.dropped
        fallbacks += asked and final.mode != Mode.GENERATED
        generated.append({"id": item.id, **final.to_json()})
    write_results(generated, out.with_name(out.stem + "-llm.jsonl"))
    a = compute_metrics(items, extractive, index.documents, chunks)
    b = compute_metrics(items, generated, index.documents, chunks)
    rows = [("answer accuracy", "answer_accuracy"), ("citation grounding (verbatim)", "citation_verbatim"),
            ("cites a gold source", "citation_source"), ("refusal recall", "refusal_recall"),
            ("latency p50 (ms)", "latency_p50_ms"), ("latency p95 (ms)", "latency_p95_ms")]
    print(f"eval {source}: {len(items)} questions, extractive vs generated ({pipeline.settings.llm_url})\n")
    print(f"{'metric':<32}{'extractive':>12}{'generated':>12}")
    for label, name in rows:
        print(f"{label:<32}{format_value(name, a['metrics'][name]):>12}{format_value(name, b['metrics'][name]):>12}")
    answered = sum(r["mode"] == Mode.GENERATED for r in generated)
    share = dropped / (kept + dropped) if kept + dropped else 0.0
    print(f"\ngenerated answers: {answered}/{len(items)}; fell back to extractive: {fallbacks}")
    print(f"generated sentences kept: {kept}, dropped as unsupported: {dropped} ({share:.1%} dropped)")
    print(f"results: {out.with_name(out.stem + '-llm.jsonl')}")
    if b["metrics"]["citation_verbatim"] not in (None, 1.0):
        print("\nFAILED: a generated answer's quote is not verbatim")
        return 1
    return 0


def _ask(call, item: EvalItem) -> Answer:
    try:
        return call()
    except InvalidQuestionError as exc:
        return Answer(item.question, str(exc), refused=True, kind=Kind.INVALID)
