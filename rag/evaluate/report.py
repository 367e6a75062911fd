"""The eval's two faces: a plain-text table for the terminal and one self-contained HTML file.

The HTML embeds its plots as base64 PNGs (matplotlib, Agg canvas, no pyplot
global state) and escapes every piece of text, since questions, answers and
quotes come from files we do not control.
"""
from __future__ import annotations

import base64
import io
import time
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

import numpy as np

from .metrics import DEFINITIONS, DENOMINATORS, Gate

SECTIONS = {
    "retrieval": ["hit_at_1", "hit_at_5", "mrr", "answer_retrieved"],
    "answers": ["answer_accuracy"],
    "citations": ["citation_source", "citation_verbatim", "citation_recall"],
    "refusals": ["refusal_precision", "refusal_recall"],
    "latency": ["latency_p50_ms", "latency_p95_ms"],
}
LABELS = {
    "hit_at_1": "hit@1", "hit_at_5": "hit@5", "mrr": "MRR", "answer_retrieved": "answer in retrieved chunks",
    "answer_accuracy": "answer accuracy",
    "citation_source": "cites a gold source", "citation_verbatim": "verbatim quotes",
    "citation_recall": "citation recall (ALCE)", "refusal_precision": "refusal precision",
    "refusal_recall": "refusal recall", "latency_p50_ms": "latency p50 (ms)", "latency_p95_ms": "latency p95 (ms)",
}


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if metric.endswith("_ms") else f"{value:.3f}"


def _fraction(metric: str, value: float | None, counts: Mapping[str, int]) -> str:
    key = DENOMINATORS.get(metric)
    if key is None or value is None or metric == "mrr":
        return ""
    n = counts[key]
    return f"{round(value * n)}/{n} {key}"


def _gate_text(gate: Gate | None) -> str:
    if gate is None:
        return ""
    status = {True: "ok", False: "FAIL", None: "not measured"}[gate.passed]
    return f"{gate.op} {format_value(gate.metric, gate.threshold)}  {status}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


# ── terminal ─────────────────────────────────────────────────────────────────

def format_table(scored: dict, gates: Sequence[Gate] = (), source: str = "") -> str:
    c, metrics = scored["counts"], scored["metrics"]
    by_metric = {g.metric: g for g in gates}
    lines = [f"eval {source}: {c['questions']} questions ({c['answerable']} answerable, "
             f"{c['unanswerable']} unanswerable)", "",
             f"{'metric':<28}{'value':>9}  {'over':<22}gate"]
    for section, names in SECTIONS.items():
        lines.append(section)
        for name in names:
            lines.append(f"  {LABELS[name]:<26}{format_value(name, metrics[name]):>9}  "
                         f"{_fraction(name, metrics[name], c):<22}{_gate_text(by_metric.get(name))}".rstrip())
    lines += ["", f"{'category':<18}{'questions':>10}{'accuracy':>10}{'refused ok':>12}"]
    for row in scored["categories"]:
        lines.append(f"{row['category']:<18}{row['questions']:>10}{_percent(row['accuracy']):>10}"
                     f"{_percent(row['refusal_correctness']):>12}")
    failures = scored["failures"]
    lines += ["", f"failing questions: {len(failures)}"]
    for cause, rows in group_failures(failures).items():
        lines.append(f"  {cause} ({len(rows)}): {', '.join(r['id'] for r in rows)}")
    for r in failures:
        got = r["got"] if len(r["got"]) <= 110 else r["got"][:107] + "..."
        lines.append(f"  {r['id']}: {r['question']}\n      expected: {r['expected']}\n      got: {got}"
                     + (f"\n      searched as: {r['searched_as']}" if r["searched_as"] else "")
                     + f"\n      why: {', '.join(r['causes'])}; {_rank_text(r)}")
    return "\n".join(lines)


def group_failures(failures: Sequence[dict]) -> dict[str, list[dict]]:
    """Failing questions under their first (main) cause."""
    groups: dict[str, list[dict]] = {}
    for r in failures:
        groups.setdefault(r["causes"][0], []).append(r)
    return groups


def _rank_text(r: dict) -> str:
    if r["expected"] == "a refusal":
        return f"kind {r['kind']}"
    if r["gold_rank"] is None:
        return "gold source not retrieved"
    where = "" if r["answer_rank"] is None else f", expected text at rank {r['answer_rank']}"
    return f"gold source at rank {r['gold_rank']}{where}"


# ── HTML ─────────────────────────────────────────────────────────────────────

def write_report(path: Path, scored: dict, gates: Sequence[Gate] = (), title: str = "strike-qa eval",
                 source: str = "") -> Path:
    """Write the self-contained HTML report to path and return it.

    Args:
        path: where to write (parent folders are created).
        scored: what ``compute_metrics`` returned.
        gates: thresholds checked against the metrics, shown with pass/fail.
        title: page heading.
        source: the eval file's name, shown under the heading.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(scored, gates, title, source), encoding="utf-8")
    return path


def render_html(scored: dict, gates: Sequence[Gate], title: str, source: str) -> str:
    c, metrics = scored["counts"], scored["metrics"]
    by_metric = {g.metric: g for g in gates}
    failed = [g for g in gates if g.passed is False]
    verdict = ("<p class=fail>Gates failed: " + escape(", ".join(g.metric for g in failed)) + "</p>" if failed
               else "<p class=ok>All gates passed.</p>" if gates else "<p>No gates set.</p>")
    rows = []
    for section, names in SECTIONS.items():
        rows.append(f"<tr><th colspan=5 class=section>{escape(section)}</th></tr>")
        for name in names:
            gate = by_metric.get(name)
            cls = "" if gate is None or gate.passed is None else " class=ok" if gate.passed else " class=fail"
            rows.append(f"<tr><td>{escape(LABELS[name])}</td><td class=num>{format_value(name, metrics[name])}</td>"
                        f"<td>{escape(_fraction(name, metrics[name], c))}</td><td{cls}>{escape(_gate_text(gate))}</td>"
                        f"<td class=def>{escape(DEFINITIONS[name])}</td></tr>")
    cats = "".join(
        f"<tr><td>{escape(r['category'])}</td><td class=num>{r['questions']}</td>"
        f"<td class=num>{_percent(r['accuracy'])} <small>({r['answerable']})</small></td>"
        f"<td class=num>{_percent(r['refusal_correctness'])} <small>({r['unanswerable']})</small></td></tr>"
        for r in scored["categories"])
    return _PAGE.format(
        title=escape(title), source=escape(source), generated=escape(time.strftime("%Y-%m-%d %H:%M")),
        questions=c["questions"], answerable=c["answerable"], unanswerable=c["unanswerable"],
        verdict=verdict, metrics="".join(rows), categories=cats,
        category_plot=_img(category_plot(scored["categories"]), "Share correct per category"),
        latency_plot=_img(latency_plot(scored["latencies"], metrics), "Latency histogram"),
        failures=_failures_html(scored["failures"]), failing=len(scored["failures"]))


def _failures_html(failures: Sequence[dict]) -> str:
    if not failures:
        return "<p>None.</p>"
    summary = "".join(f"<li>{escape(cause)}: {len(rows)} ({escape(', '.join(r['id'] for r in rows))})</li>"
                      for cause, rows in group_failures(failures).items())
    body = []
    for r in failures:
        asked = escape(r["question"])
        if r["history"]:
            turns = "<br>".join(f"<i>{escape(t['role'])}:</i> {escape(t['content'])}" for t in r["history"])
            asked = f"<div class=hist>{turns}</div>{asked}<div class=hist>searched as: {escape(r['searched_as'])}</div>"
        body.append(
            f"<tr><td>{escape(r['id'])}<br><small>{escape(r['category'])}</small></td><td>{asked}</td>"
            f"<td>{escape(r['expected'])}</td><td>{escape(r['got'])}<br><small>kind: {escape(r['kind'])}</small></td>"
            f"<td>{escape('; '.join(r['causes']))}<br><small>{escape(_rank_text(r))}; retrieved: "
            f"{escape(', '.join(r['retrieved'][:5]) or 'nothing')}</small></td></tr>")
    return (f"<ul>{summary}</ul><table><tr><th>id</th><th>question</th><th>expected</th><th>got</th>"
            f"<th>why</th></tr>{''.join(body)}</table>")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, explicitly, without touching pyplot's global backend
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def category_plot(categories: Sequence[dict]) -> bytes:
    """Bars: answer accuracy for answerable items, refusal correctness for unanswerable ones."""
    fig = _figure(8, 0.5 + 0.45 * max(len(categories), 1))
    ax = fig.add_subplot()
    names = [r["category"] for r in categories]
    values = [r["correct"] or 0.0 for r in categories]
    colors = ["#c0504d" if r["answerable"] == 0 else "#4f81bd" for r in categories]
    bars = ax.barh(names, values, color=colors)
    for bar, r in zip(bars, categories):
        what = "refused correctly" if r["answerable"] == 0 else "accuracy"
        ax.text(min(bar.get_width() + 0.01, 0.8), bar.get_y() + bar.get_height() / 2,
                f"{_percent(r['correct'])} {what} (n={r['questions']})", va="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share correct")
    ax.set_title("Per-category accuracy (red: refusal correctness on unanswerable)")
    return _png(fig)


def latency_plot(latencies: Sequence[float], metrics: Mapping[str, float | None]) -> bytes:
    fig = _figure(8, 3)
    ax = fig.add_subplot()
    bins = min(30, max(len(latencies), 1))
    if latencies and min(latencies) > 0 and max(latencies) > 10 * float(np.median(latencies)):
        # A cold first question would squash everything else into one bar: use a log axis.
        bins = np.geomspace(min(latencies), max(latencies), bins + 1)
        ax.set_xscale("log")
    ax.hist(latencies, bins=bins, color="#4f81bd")
    for name, style in (("latency_p50_ms", "--"), ("latency_p95_ms", ":")):
        if metrics.get(name) is not None:
            ax.axvline(metrics[name], color="black", linestyle=style,
                       label=f"{LABELS[name]}: {format_value(name, metrics[name])}")
    if latencies:
        ax.legend()
    ax.set_xlabel("latency per question (ms)")
    ax.set_ylabel("questions")
    ax.set_title("Latency")
    return _png(fig)


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; margin: 1em 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
th.section {{ background: #f3f3f3; text-transform: capitalize; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.def {{ color: #555; font-size: 12px; }}
.ok {{ color: #2a7d2a; }} .fail {{ color: #b00; font-weight: bold; }}
.hist {{ color: #666; font-size: 12px; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>{source} &middot; {questions} questions ({answerable} answerable, {unanswerable} unanswerable) &middot; {generated}</p>
{verdict}
<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>over</th><th>gate</th><th>definition</th></tr>{metrics}</table>
<h2>Per category</h2>
<table><tr><th>category</th><th>questions</th><th>answer accuracy (answerable)</th>
<th>refusal correctness (unanswerable)</th></tr>{categories}</table>
{category_plot}
{latency_plot}
<h2>Failing questions ({failing})</h2>
{failures}
</body></html>
"""
