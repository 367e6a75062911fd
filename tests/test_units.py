"""Small pure parts, by hand: settings from the environment, score fusion, follow-up rewriting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.answer.conversation import standalone
from rag.answer.retrieval import fuse

# --- Settings.from_env ---------------------------------------------------------


def test_settings_defaults_live_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env(environ={})
    assert s.home == tmp_path.resolve()
    assert (s.corpus_dir, s.index_dir, s.data_dir) == (tmp_path / "corpus", tmp_path / "index", tmp_path / "data")
    assert s.path("eval/questions.jsonl") == tmp_path / "eval" / "questions.jsonl"


def test_rag_home_moves_every_path_and_relative_paths_follow_it(tmp_path):
    s = Settings.from_env(environ={"RAG_HOME": str(tmp_path), "RAG_INDEX_DIR": "builds/ix",
                                   "RAG_DATA_DIR": str(tmp_path / "elsewhere")})
    assert s.corpus_dir == tmp_path / "corpus"
    assert s.index_dir == tmp_path / "builds" / "ix"
    assert s.data_dir == tmp_path / "elsewhere"
    assert s.path("eval/thresholds.json") == tmp_path / "eval" / "thresholds.json"


def test_settings_parse_each_type_and_flags_win(tmp_path):
    env = {"RAG_TOP_K": "5", "RAG_DENSE_WEIGHT": "0.25", "RAG_FUSION": "rrf", "RAG_ALLOWED_ORIGINS":
           "https://a.org, https://b.org ,", "RAG_PORT": "", "RAG_MAX_REQUEST_BYTES": "1000"}
    s = Settings.from_env(environ=env, top_k=3, host=None)
    assert (s.top_k, s.dense_weight, s.fusion) == (3, 0.25, "rrf")  # the override beat RAG_TOP_K
    assert s.allowed_origins == ("https://a.org", "https://b.org")
    assert s.port == 7860 and s.host == "127.0.0.1"  # empty values and None overrides keep defaults
    assert s.max_request_bytes == 1000
    assert Settings.from_env(environ={"RAG_SPELLING": "0"}).spelling is False  # bool("0") would be True
    assert Settings.from_env(environ={"RAG_SPELLING": "yes"}).spelling is True


@pytest.mark.parametrize("name, raw, message", [
    ("RAG_TOP_K", "eight", "RAG_TOP_K must be a int, got 'eight'"),
    ("RAG_DENSE_WEIGHT", "lots", "RAG_DENSE_WEIGHT must be a float"),
    ("RAG_MIN_ANSWER_SCORE", "high", "RAG_MIN_ANSWER_SCORE must be a float"),
    ("RAG_SPELLING", "maybe", "RAG_SPELLING must be true or false"),
])
def test_bad_settings_say_which_variable(name, raw, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ={name: raw})


def test_settings_exported_to_workers_come_back_the_same(monkeypatch, tmp_path):
    import os

    from rag.config import export_environment

    for value in (None, 0.3):
        monkeypatch.setattr(os, "environ", {"RAG_MIN_ANSWER_SCORE": "0.9"})
        settings = Settings(home=tmp_path, min_answer_score=value, allowed_origins=("https://a.org",))
        export_environment(settings)
        assert Settings.from_env() == settings


def test_nothing_else_reads_the_environment():
    root = Path(__file__).resolve().parent.parent / "rag"
    readers = [p.name for p in root.rglob("*.py") if "os.environ" in p.read_text() and p.name != "config.py"]
    assert readers == []


# --- score fusion --------------------------------------------------------------


def test_convex_fusion_by_hand():
    dense = [(1, 0.9), (2, 0.7), (3, 0.5)]  # std 0.1633: scaled 2.449, 1.225, 0
    lexical = [(3, 12.0), (4, 6.0)]  # std 3.0: scaled 2, 0
    fused = dict(fuse(dense, lexical, dense_weight=0.6))
    spread = np.std([0.9, 0.7, 0.5])
    assert fused[1] == pytest.approx(0.6 * 0.4 / spread)
    assert fused[2] == pytest.approx(0.6 * 0.2 / spread)
    assert fused[3] == pytest.approx(0.4 * 2.0)  # last in dense (0), top of BM25
    assert fused[4] == pytest.approx(0.0)
    assert [row for row, _ in fuse(dense, lexical, 0.6)] == [1, 3, 2, 4]
    assert [row for row, _ in fuse(dense, lexical, 0.2)] == [3, 1, 2, 4]  # BM25 weighs more


def test_rrf_fusion_by_hand_and_ties_break_by_row():
    fused = dict(fuse([(7, 0.9), (8, 0.1)], [(8, 30.0)], 0.5, method="rrf"))
    assert fused[7] == pytest.approx(0.5 / 61)
    assert fused[8] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert fuse([(5, 1.0), (4, 1.0)], [], 1.0) == [(4, 1.0), (5, 1.0)]  # equal scores: lower row first
    assert fuse([], [], 0.6) == []


# --- follow-up rewriting -------------------------------------------------------

MOLLY = [{"role": "user", "content": "Who is Molly Parsons?"},
         {"role": "assistant", "content": "Molly Parsons is a psychologist at Kaiser Permanente. [1]"}]


@pytest.mark.parametrize("question, history, expected", [
    # a personal pronoun becomes the last person named (not an organisation)
    ("What did she say?", MOLLY, "What did Molly Parsons say?"),
    ("What is his role?", [{"role": "user", "content": "Tell me about Sal Rosselli"}],
     "What is Sal Rosselli’s role?"),
    # a reference or a continuation carries the previous question along
    ("When did that happen?", MOLLY, "When did that happen? (Who is Molly Parsons?)"),
    ("And the nurses?", MOLLY, "And the nurses? (Who is Molly Parsons?)"),
    # short follow-ups too; a long, self-contained question is left alone
    ("What about pay?", MOLLY, "What about pay? (Who is Molly Parsons?)"),
    ("How many therapy appointments were cancelled in the strike?", MOLLY,
     "How many therapy appointments were cancelled in the strike?"),
    # no history, or only empty turns: nothing to resolve
    ("What did she say?", [], "What did she say?"),
    ("What did she say?", [{"role": "user", "content": "  "}], "What did she say?"),
    # repeating the previous question does not double it
    ("Who is Molly Parsons?", MOLLY, "Who is Molly Parsons?"),
])
def test_follow_up_rewrite_rules(question, history, expected):
    assert standalone(question, history) == expected


def test_a_pronoun_with_only_organisations_named_falls_back_to_the_previous_question():
    history = [{"role": "user", "content": "What is Kaiser Permanente doing?"},
               {"role": "assistant", "content": "The National Union of Healthcare Workers says..."}]
    assert standalone("What did she say?", history) == "What did she say? (What is Kaiser Permanente doing?)"


# --- app.py is `rag serve` -------------------------------------------------------


def test_app_py_fails_like_rag_serve(monkeypatch, capsys):
    import app
    from rag.cli import main as rag

    monkeypatch.setenv("RAG_PORT", "seventy")
    assert app.main([]) == rag(["serve"]) == 2  # bad settings: 2 from both (app.py once said 1)
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: RAG_PORT must be a int, got 'seventy'"] * 2
