"""`rag eval`: metric arithmetic on hand-made results, the eval-file and thresholds loaders,
the results schema (golden file) from the real pipeline, and the CLI end to end."""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag.cli import main
from rag.evaluate.evaluation import (EvalFileError, EvalItem, Gate, ThresholdsError, check_sources, check_thresholds,
                            compute_metrics, load_thresholds, parse_questions, run_eval, write_report)
from rag.evaluate.report import format_table
from rag.types import turns

GOLDEN = Path(__file__).parent / "golden" / "result_schema.json"


# ── hand-made results ────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Doc:
    text: str


@dataclass(frozen=True)
class Chunk:
    text: str


TEXT = "The strike lasts one day. Pay is not covered. Talks resume in March."
DOCS = {"a.txt": Doc(TEXT), "b.txt": Doc("Nothing to see here.")}
CHUNKS = {"a.txt:0": Chunk(TEXT), "b.txt:0": Chunk("Nothing to see here.")}


def item(id="q", answerable=True, answers=("one day",), sources=("a.txt",), category="fact", history=(),
         question=None):
    if not answerable:
        answers, sources = (), ()
    return EvalItem(id, question or f"question {id}?", answerable, tuple(answers), tuple(sources), tuple(history), category)


def cite(n=1, doc_id="a.txt", quote="The strike lasts one day.", start=0, end=None):
    end = start + len(quote) if end is None else end
    return {"n": n, "doc_id": doc_id, "title": doc_id, "page": None, "chunk_id": f"{doc_id}:0",
            "quote": quote, "start": start, "end": end}


def result(id="q", answer=None, refused=False, citations=None, retrieved=("a.txt",), related=(), latency=10.0,
           pieces=None):
    citations = [cite()] if citations is None else citations
    if pieces is None:
        pieces = [] if refused else [{"text": c["quote"], "n": c["n"]} for c in citations]
    if answer is None:
        answer = "The documents don't say." if refused else " ".join(f"{p['text']} [{p['n']}]" for p in pieces)
    return {"id": id, "question": f"question {id}?", "answer": answer, "refused": refused,
            "kind": "not_found" if refused else "answer", "citations": [] if refused else citations,
            "pieces": pieces,
            "retrieved": [{"doc_id": d, "chunk_id": f"{d}:0", "score": 1.0} for d in retrieved],
            "related": list(related), "latency_ms": latency}


def scored(pairs, chunks=CHUNKS):
    items, results = zip(*pairs)
    return compute_metrics(list(items), list(results), DOCS, chunks)


def test_retrieval_hits_and_mrr_by_rank_of_first_gold_chunk():
    m = scored([
        (item("r1"), result("r1", retrieved=("a.txt", "b.txt"))),                      # rank 1
        (item("r2"), result("r2", retrieved=("b.txt", "b.txt", "a.txt"))),             # rank 3
        (item("r3"), result("r3", retrieved=("b.txt",) * 5 + ("a.txt",))),            # rank 6
        (item("r4"), result("r4", retrieved=())),                                       # empty: a miss
    ])["metrics"]
    assert m["hit_at_1"] == pytest.approx(1 / 4)
    assert m["hit_at_5"] == pytest.approx(2 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 6 + 0) / 4)


def test_retrieval_ignores_unanswerable_questions():
    m = scored([(item("a"), result("a")), (item("u", answerable=False), result("u", refused=True, retrieved=()))])
    assert m["metrics"]["hit_at_1"] == 1.0 and m["metrics"]["mrr"] == 1.0


def test_answer_match_ignores_case_and_whitespace_but_not_refusals():
    m = scored([
        (item("a", answers=("ONE   day",)), result("a")),
        (item("b", answers=("one day",)), result("b", answer="The strike lasts one\nday [1]")),
        (item("c", answers=("March",)), result("c")),                                   # wrong sentence
        (item("d", answers=("say",)), result("d", refused=True)),                       # gold text in a refusal
    ])
    assert m["metrics"]["answer_accuracy"] == pytest.approx(2 / 4)
    assert [q["id"] for q in m["failures"]] == ["c", "d"]


def test_citation_source_is_over_answered_answerable_questions():
    m = scored([
        (item("a"), result("a")),
        (item("b"), result("b", citations=[cite(doc_id="b.txt", quote="Nothing to see here.")])),
        (item("c"), result("c", refused=True)),                                         # not in the denominator
    ])
    assert m["metrics"]["citation_source"] == pytest.approx(1 / 2)
    assert m["counts"]["answered"] == 2


def test_verbatim_checks_every_shown_quote_against_the_document():
    good = cite()
    shifted = cite(n=2, quote="The strike lasts one day.", start=1)
    unknown = cite(n=3, doc_id="missing.txt", quote="The strike lasts one day.")
    past_end = cite(n=4, quote="March.", start=len(TEXT) - 6, end=len(TEXT) + 5)
    m = scored([
        (item("a"), result("a", citations=[good, shifted])),
        (item("b"), result("b", refused=True, related=[unknown, past_end, good])),
    ])
    assert m["metrics"]["citation_verbatim"] == pytest.approx(2 / 5)
    assert "quote not verbatim" in m["failures"][0]["causes"]


def test_citation_recall_extractive():
    c1 = cite(1, quote="The strike lasts one day.")
    c2 = cite(2, quote="Talks resume in March.", start=TEXT.index("Talks"))
    piece = lambda text, n: {"text": text, "n": n}  # noqa: E731
    m = scored([
        # supported (case/space-insensitive); unsupported (quote 2 lacks it); citation that does not exist
        (item("a"), result("a", citations=[c1, c2], pieces=[
            piece("the strike  LASTS one day.", 1), piece("Pay is covered.", 2), piece("Unmarked claim", 9)])),
        # supported via 2; text with no citation; a bare "." is no sentence
        (item("b"), result("b", citations=[c1, c2], pieces=[
            piece("Talks resume in March", 2), piece("Extra words", None), piece(".", None)])),
    ])
    assert m["metrics"]["citation_recall"] == pytest.approx(2 / 5)
    assert m["counts"]["sentences"] == 5


def test_citation_recall_reads_pieces_not_markers_in_text():
    """A quote that itself contains "[2]" is one supported piece, citing 1, not a sentence citing 2."""
    quote = "Article [2] of the contract covers pay."
    c1 = cite(1, quote=quote)
    m = scored([(item("a"), result("a", citations=[c1], pieces=[{"text": quote, "n": 1}]))])
    assert m["metrics"]["citation_recall"] == 1.0 and m["counts"]["sentences"] == 1


def test_refusal_precision_and_recall():
    m = scored([
        (item("u1", answerable=False), result("u1", refused=True)),
        (item("u2", answerable=False), result("u2")),                                   # answered an unanswerable
        (item("a1"), result("a1", refused=True)),                                       # false refusal
        (item("a2"), result("a2")),
    ])["metrics"]
    assert m["refusal_precision"] == pytest.approx(1 / 2)
    assert m["refusal_recall"] == pytest.approx(1 / 2)


def test_no_unanswerable_questions_leaves_refusal_recall_unmeasured():
    m = scored([(item("a"), result("a")), (item("b"), result("b", refused=True))])
    assert m["metrics"]["refusal_recall"] is None
    assert m["metrics"]["refusal_precision"] == 0.0  # one refusal, and it was wrong
    none_refused = scored([(item("a"), result("a"))])["metrics"]
    assert none_refused["refusal_precision"] is None and none_refused["refusal_recall"] is None


def test_everything_refused():
    m = scored([(item("a"), result("a", refused=True)), (item("b"), result("b", refused=True)),
                (item("u", answerable=False), result("u", refused=True))])["metrics"]
    assert m["answer_accuracy"] == 0.0
    assert m["refusal_recall"] == 1.0
    assert m["refusal_precision"] == pytest.approx(1 / 3)
    assert m["citation_source"] is None and m["citation_recall"] is None and m["citation_verbatim"] is None


def test_latency_percentiles():
    m = scored([(item(str(i)), result(str(i), latency=ms)) for i, ms in enumerate([40, 10, 30, 20, 100])])
    assert m["metrics"]["latency_p50_ms"] == pytest.approx(30)
    assert m["metrics"]["latency_p95_ms"] == pytest.approx(88)  # linear between 40 and 100


def test_per_category_accuracy_and_refusal_correctness():
    m = scored([
        (item("f1", category="fact"), result("f1")),
        (item("f2", category="fact"), result("f2", refused=True)),
        (item("u1", answerable=False, category="unanswerable"), result("u1", refused=True)),
        (item("u2", answerable=False, category="unanswerable"), result("u2", refused=True)),
        (item("u3", answerable=False, category="unanswerable"), result("u3")),
    ])
    rows = {r["category"]: r for r in m["categories"]}
    assert rows["fact"]["accuracy"] == 0.5 and rows["fact"]["refusal_correctness"] is None
    assert rows["unanswerable"]["refusal_correctness"] == pytest.approx(2 / 3)
    assert rows["unanswerable"]["accuracy"] is None


def test_failure_causes():
    follow = [{"role": "user", "content": "who said it"}, {"role": "assistant", "content": "someone"}]
    m = scored([
        (item("miss"), result("miss", retrieved=("b.txt",), citations=[cite(doc_id="b.txt", quote="Nothing to see here.")])),
        (item("chunk-miss", answers=("not in any chunk",)), result("chunk-miss")),
        (item("wrong", answers=("March",)), result("wrong")),
        (item("refused"), result("refused", refused=True)),
        (item("unans", answerable=False), result("unans")),
        (item("follow", answers=("March",), history=turns(follow), question="what is the answer to the next thing"),
         result("follow")),
        (item("ok"), result("ok")),
    ])
    causes = {q["id"]: q["causes"][0] for q in m["failures"]}
    assert causes == {"miss": "retrieval miss", "chunk-miss": "retrieval miss", "wrong": "wrong sentence chosen",
                      "refused": "false refusal", "unans": "answered an unanswerable",
                      "follow": "follow-up not rewritten"}
    assert m["metrics"]["answer_retrieved"] == pytest.approx(4 / 6)  # not "miss", not "chunk-miss"
    # Without chunk texts there is no chunk-level check: the gold document was retrieved.
    assert scored([(item("x", answers=("not in any chunk",)), result("x"))], chunks=None)["failures"][0]["causes"] \
        == ["wrong sentence chosen"]


def test_every_result_must_be_there():
    with pytest.raises(ValueError, match="no result for 1 question"):
        compute_metrics([item("a"), item("b")], [result("a")], DOCS)


def test_report_is_self_contained_and_escaped(tmp_path):
    evil = EvalItem("x<1>", "<script>alert(1)</script>", True, ("a&b",), ("a.txt",), (), "<b>cat</b>")
    m = compute_metrics([evil], [result("x<1>", answer="<img src=x onerror=alert(1)> [1]")], DOCS)
    path = write_report(tmp_path / "out" / "report.html", m, [Gate("answer_accuracy", 0.9, 0.0)])
    html = path.read_text()
    assert html.count("<img") == 2 and html.count('src="data:image/png;base64,') == 2
    assert "<script>" not in html and "<b>cat</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "ALCE-style" in html  # the citation-recall definition is stated
    assert "FAIL" in format_table(m, [Gate("answer_accuracy", 0.9, 0.0)])


# ── loaders ──────────────────────────────────────────────────────────────────

GOOD = {"id": "q1", "question": "When is the strike?", "answerable": True, "answers": ["Monday"],
        "sources": ["a.txt"]}


def lines(*rows):
    return [r if isinstance(r, str) else json.dumps(r) for r in rows]


def test_parse_questions_reads_every_field():
    hist = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    items = parse_questions(lines(GOOD, "", {**GOOD, "id": "q2", "history": hist, "category": "follow-up"},
                                  {"id": "u", "question": "?", "answerable": False, "answers": [], "sources": []}))
    assert [i.id for i in items] == ["q1", "q2", "u"]
    assert items[0].category == "uncategorized" and items[0].line == 1
    assert items[1].history == turns(hist) and items[1].line == 3
    assert items[2].answerable is False


@pytest.mark.parametrize("bad, message", [
    ("{not json", r"line 2: not valid JSON"),
    ("[1, 2]", r"line 2: expected a JSON object, got list"),
    ({k: v for k, v in GOOD.items() if k != "answers"}, r"line 2: missing field 'answers'"),
    ({**GOOD, "answerable": "yes"}, r"line 2: 'answerable' must be a boolean, got string"),
    ({**GOOD, "answer": ["x"]}, r"line 2: unknown field\(s\) 'answer'"),
    ({**GOOD, "id": " "}, r"line 2: 'id' is empty"),
    ({**GOOD, "answers": []}, r"line 2: an answerable question needs"),
    ({**GOOD, "sources": [3]}, r"line 2: 'sources' must be a list of non-empty strings"),
    ({**GOOD, "answerable": False}, r"line 2: an unanswerable question .* must have empty"),
    ({**GOOD, "history": [{"role": "bot", "content": "x"}]}, r"line 2: history turn 1 must be"),
    ({**GOOD, "history": "hi"}, r"line 2: 'history' must be a list"),
    (GOOD, r"line 2: id 'q1' is already used on line 1"),
])
def test_bad_lines_name_the_line_and_the_problem(bad, message):
    with pytest.raises(EvalFileError, match=message):
        parse_questions(lines(GOOD, bad), "my.jsonl")


def test_empty_eval_file():
    with pytest.raises(EvalFileError, match="has no questions"):
        parse_questions(["", "  "], "my.jsonl")


def test_sources_must_be_in_the_index():
    check_sources([item("a")], DOCS)
    with pytest.raises(EvalFileError, match="line 0: source\\(s\\) 'nope.txt' not in the index"):
        check_sources([item("a", sources=("nope.txt",))], DOCS)


def test_thresholds_accept_any_subset(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"answer_accuracy": 0.8, "latency_p95_ms": 500}))
    assert load_thresholds(path) == {"answer_accuracy": 0.8, "latency_p95_ms": 500.0}
    path.write_text("{}")
    assert load_thresholds(path) == {}


@pytest.mark.parametrize("content, message", [
    ({"answer_acuracy": 0.8}, r"unknown metric\(s\) 'answer_acuracy'; known: hit_at_1"),
    ({"answer_accuracy": "high"}, r"'answer_accuracy' must be a number"),
    ({"answer_accuracy": True}, r"'answer_accuracy' must be a number"),
    ({"answer_accuracy": 80}, r"must be between 0 and 1, got 80"),
    ({"latency_p95_ms": 0}, r"must be > 0"),
    ([0.8], r"expected a JSON object"),
])
def test_bad_thresholds(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ThresholdsError, match=message):
        load_thresholds(path)
    with pytest.raises(ThresholdsError, match="not found"):
        load_thresholds(tmp_path / "missing.json")


def test_gates_go_both_ways():
    gates = check_thresholds({"answer_accuracy": 0.8, "latency_p95_ms": 300.0, "refusal_recall": None},
                             {"answer_accuracy": 0.8, "latency_p95_ms": 200, "refusal_recall": 0.9})
    assert [(g.metric, g.op, g.passed) for g in gates] == [
        ("answer_accuracy", ">=", True), ("latency_p95_ms", "<=", False), ("refusal_recall", ">=", None)]


# ── the real pipeline ────────────────────────────────────────────────────────

SMALL = [
    {"id": "fact", "question": "how many therapists are voting on the strike?", "answerable": True,
     "answers": ["2,400"], "sources": ["another-kaiser-strike-vote.txt"], "category": "fact"},
    {"id": "unans", "question": "What is the capital of France?", "answerable": False, "answers": [],
     "sources": [], "category": "unanswerable"},
    {"id": "follow", "question": "What did she say?", "answerable": True,
     "answers": ["inappropriate bookings", "delays care", "high-risk"], "sources": ["another-kaiser-strike-vote.txt"],
     "history": [{"role": "user", "content": "Who is Molly Parsons?"},
                 {"role": "assistant", "content": "Molly Parsons is a therapist with Kaiser in the Bay Area [1]."}],
     "category": "follow-up"},
]


@pytest.fixture()
def eval_index(corpus_settings) -> Path:
    """The session index of the shipped corpus (tests/conftest.py), for the CLI's --index."""
    return corpus_settings.index_dir


@pytest.fixture()
def small_file(tmp_path) -> Path:
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SMALL))
    return path


def shape(value):
    """Keys all the way down; a list is shown by its elements' common shape."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return merge_all([shape(v) for v in value])
    return None


def merge_all(shapes: list) -> list:
    return [functools.reduce(merge, shapes)] if shapes else []


def merge(a, b):
    """One shape from two; an empty list takes the other's element shape."""
    if isinstance(a, list) and isinstance(b, list):
        return merge_all(a + b)
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"result lines disagree on their keys: {sorted(a)} vs {sorted(b)}"
        return {k: merge(a[k], b[k]) for k in a}
    assert a == b, f"result lines disagree on their shape: {a} vs {b}"
    return a


def test_results_match_the_golden_schema(pipeline):
    items = parse_questions(json.dumps(row) for row in SMALL)
    results = run_eval(items, pipeline)
    assert [r["id"] for r in results] == ["fact", "unans", "follow"]
    got = merge_all([shape(r) for r in results])[0]
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(GOLDEN.read_text()), "the results schema changed; if on purpose, rerun with UPDATE_GOLDEN=1"
    # Values a reader of the file relies on, and the one property that must always hold.
    assert all(isinstance(r["refused"], bool) and isinstance(r["latency_ms"], float) for r in results)
    docs = pipeline.index.documents
    for r in results:
        for c in r["citations"] + r["related"]:
            assert docs[c["doc_id"]].text[c["start"]:c["end"]] == c["quote"]


def run_main(tmp_path, eval_file, index, thresholds) -> int:
    t = tmp_path / "thresholds.json"
    t.write_text(json.dumps(thresholds))
    return main(["eval", str(eval_file), "--index", str(index), "--out", str(tmp_path / "res.jsonl"),
                 "--report", str(tmp_path / "rep.html"), "--thresholds", str(t)])


def test_cli_passes_with_lenient_thresholds(tmp_path, small_file, eval_index, capsys):
    assert run_main(tmp_path, small_file, eval_index, {"answer_accuracy": 0.0, "latency_p95_ms": 1e9}) == 0
    out = capsys.readouterr().out
    assert "answer accuracy" in out and "all gates passed" in out
    rows = [json.loads(line) for line in (tmp_path / "res.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["fact", "unans", "follow"]
    html = (tmp_path / "rep.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html


def test_cli_fails_impossible_thresholds_and_says_which(tmp_path, small_file, eval_index, capsys):
    code = run_main(tmp_path, small_file, eval_index, {"latency_p50_ms": 0.001, "hit_at_5": 0.0})
    assert code != 0
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "latency_p50_ms" in failed[0] and "hit_at_5" not in failed[0]
    assert (tmp_path / "rep.html").exists()  # the report is written either way


@pytest.mark.parametrize("content, message", [
    (json.dumps(SMALL[0]) + "\n{\"id\": \"b\"\n", "line 2: not valid JSON"),
    (json.dumps({**SMALL[0], "sources": ["nope.txt"]}) + "\n", "line 1: source(s) 'nope.txt' not in the index"),
])
def test_cli_bad_eval_file_is_one_clear_line(tmp_path, eval_index, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    assert run_main(tmp_path, bad, eval_index, {}) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "res.jsonl").exists()


def test_cli_unknown_threshold_is_an_error(tmp_path, small_file, eval_index, capsys):
    assert run_main(tmp_path, small_file, eval_index, {"accuracy": 0.9}) == 1
    assert "unknown metric(s) 'accuracy'" in capsys.readouterr().err
