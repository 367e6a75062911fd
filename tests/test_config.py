"""rag.config: settings from the environment, checked once, and exported to worker processes."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings


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


@pytest.mark.parametrize("field, value, message", [
    ("min_answer_score", 1.5, r"RAG_MIN_ANSWER_SCORE must be within \[0, 1\], got 1.5"),
    ("min_answer_score", -0.2, r"RAG_MIN_ANSWER_SCORE must be within \[0, 1\], got -0.2"),
    ("dense_weight", 1.2, r"RAG_DENSE_WEIGHT must be within \[0, 1\], got 1.2"),
    ("fusion", "max", "RAG_FUSION must be 'convex' or 'rrf', got 'max'"),
    ("top_k", 0, "RAG_TOP_K must be > 0, got 0"),
    ("candidates", -1, "RAG_CANDIDATES must be > 0, got -1"),
    ("recency_boost", -0.1, "RAG_RECENCY_BOOST must be >= 0, got -0.1"),
])
def test_settings_out_of_range_say_which_variable(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})
    with pytest.raises(ValueError, match=message):  # the same check from the environment
        Settings.from_env(environ={f"RAG_{field.upper()}": str(value)})


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
