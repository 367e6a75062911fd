"""app.py is `rag serve`."""
from __future__ import annotations


def test_app_py_fails_like_rag_serve(monkeypatch, capsys):
    import app
    from rag.cli import main as rag

    monkeypatch.setenv("RAG_PORT", "seventy")
    assert app.main([]) == rag(["serve"]) == 2  # bad settings: 2 from both (app.py once said 1)
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: RAG_PORT must be a int, got 'seventy'"] * 2
