"""The BEIR benchmark: metric arithmetic by hand, and a real run on a tiny dataset."""
from __future__ import annotations

import hashlib
import json
import math

import pytest

from rag.config import Settings
from rag.errors import RagError
from rag.evaluate.benchmark import doc_ranking, format_table, ndcg_at, recall_at, run_benchmark
from rag.train.splits import HELDOUT, query_split

CORPUS = [
    ("d1", "Sourdough bread", "Sourdough bread rises with a starter of wild yeast and lactobacilli; "
                              "the dough ferments slowly before baking in a hot oven."),
    ("d2", "Volcanic eruptions", "Magma rises through the crust and erupts as lava, ash and gas "
                                 "from a volcano's vent."),
    ("d3", "Honeybee colonies", "A honeybee colony has one queen, thousands of worker bees and a few "
                                "drones; workers gather nectar to make honey."),
    ("d4", "Chess openings", "The Sicilian Defence answers 1.e4 with c5 and is the most popular "
                             "chess opening for Black."),
    ("d5", "Coral reefs", "Coral reefs are built by tiny animals called polyps and bleach when the "
                          "ocean water gets too warm."),
    ("d6", "Baking with yeast", "Commercial baker's yeast makes bread dough rise quickly by "
                                "fermenting sugar into carbon dioxide."),
    ("d7", "Solar panels", "Photovoltaic solar panels turn sunlight into electricity with silicon cells."),
    ("d8", "Marathon training", "Marathon runners build endurance with long slow runs and taper "
                                "before the race."),
]
QUERIES = {
    "q1": "How does yeast make bread dough rise?",
    "q2": "What comes out of a volcano when it erupts?",
    "q3": "What does a chess player choose as Black against 1.e4?",
    "q4": "Why do coral reefs bleach?",
}
QRELS = [("q1", "d1", 1), ("q1", "d6", 1), ("q2", "d2", 1), ("q3", "d4", 1), ("q4", "d5", 1)]


def test_ndcg_matches_hand_computation():
    assert ndcg_at(["a", "b"], {"a": 1}) == 1.0
    assert ndcg_at(["x", "a"], {"a": 1}) == pytest.approx(1 / math.log2(3))
    # Two relevant at ranks 1 and 3, against an ideal of ranks 1 and 2.
    assert ndcg_at(["a", "x", "b"], {"a": 1, "b": 1}) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # Graded: linear gains, as trec_eval counts them.
    assert ndcg_at(["a", "b"], {"a": 1, "b": 2}) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at([f"x{i}" for i in range(10)] + ["a"], {"a": 1}) == 0.0  # past the cut-off
    assert ndcg_at([], {"a": 1}) == 0.0


def test_recall_matches_hand_computation():
    assert recall_at(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}) == pytest.approx(2 / 3)
    assert recall_at(["a", "x", "b"], {"a": 1, "b": 1}, k=2) == 0.5
    assert recall_at([], {"a": 1}) == 0.0


def test_chunk_hits_rank_each_document_at_its_best_chunk():
    assert doc_ranking(["d2", "d1", "d2", "d3", "d1"]) == ["d2", "d1", "d3"]


def test_split_is_fixed_by_query_id():
    # Pinned: the split must never move (Python's salted hash() would, between runs), or
    # numbers tuned on "dev" would leak into the held-out half. First byte of sha256(id), even = dev.
    pinned = "hhddhhhhdhdhhhhdhhdd"
    assert "".join("d" if query_split(str(i)) == "dev" else "h" for i in range(20)) == pinned
    assert hashlib.sha256(b"2").digest()[0] % 2 == 0 and query_split("2") == "dev"
    assert query_split("0") == HELDOUT == "heldout"


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return folder


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", index_dir=tmp_path / "unused")


def test_run_scores_every_system_and_reuses_its_embeddings(dataset, settings):
    first = run_benchmark(dataset, settings, progress=False)
    assert (first.documents, first.queries) == (8, 4)
    assert first.embedded >= 8
    assert (settings.data_dir / "bench" / "tiny").is_dir()
    for name in ("dense", "bm25", "hybrid"):
        metrics = first.systems[name]
        # Each query has an unmistakable answer, so every system ranks it perfectly.
        assert metrics["all"].ndcg_at_10 == 1.0, name
        assert metrics["all"].recall_at_100 == 1.0, name
        assert metrics["dev"].queries + metrics[HELDOUT].queries == metrics["all"].queries == 4
    json.dumps(first.to_json())
    table = format_table(first)
    assert "nDCG@10" in table and "0.645" in table and "hybrid" in table

    second = run_benchmark(dataset, settings, progress=False)
    assert second.embedded == 0
    assert second.systems == first.systems


def test_limit_keeps_a_prefix_and_the_queries_it_can_answer(dataset, settings):
    result = run_benchmark(dataset, settings, limit=5, progress=False)
    # q1 needs d6, which the first five documents leave out.
    assert (result.documents, result.queries) == (5, 3)
    assert "--limit 5" in result.note and "3 of 4 queries" in result.note
    assert (settings.data_dir / "bench" / "tiny-limit5").is_dir()


def test_bad_input_says_what_to_do(tmp_path, dataset, settings):
    with pytest.raises(RagError, match="corpus.jsonl"):
        run_benchmark(tmp_path / "nowhere", settings)
    with pytest.raises(ValueError, match="limit must be > 0"):
        run_benchmark(dataset, settings, limit=0)
    with pytest.raises(RagError, match="raise --limit"):
        run_benchmark(dataset, settings, limit=1)


def test_python_m_benchmark_runs_it_without_the_cli(dataset, tmp_path, capsys, monkeypatch):
    """`python -m rag.evaluate.benchmark` runs the benchmark, with the `rag` command's error
    style, and this layer never imports the command above it."""
    import runpy
    import subprocess
    import sys

    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(sys, "argv", ["rag.evaluate.benchmark", str(dataset), "--limit", "0"])
    monkeypatch.delitem(sys.modules, "rag.evaluate.benchmark")  # run it fresh, as `python -m` would
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("rag.evaluate.benchmark", run_name="__main__")
    assert exit.value.code == 2 and "error: limit must be > 0" in capsys.readouterr().err
    loaded = subprocess.run([sys.executable, "-c", "import sys, rag.evaluate.benchmark; print('rag.cli' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def test_python_m_benchmark_prints_the_table(dataset, tmp_path, capsys, monkeypatch):
    from rag.evaluate.benchmark import main

    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    assert main([str(dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 4 and set(result["systems"]["hybrid"]) == {"dev", "heldout", "all"}
    assert main([str(tmp_path / "nowhere")]) == 1 and "corpus.jsonl" in capsys.readouterr().err
