"""rag.answer.updates: questions about the present, figures, and newer documents first."""
from __future__ import annotations

from rag.answer.updates import figures, is_about_present


def test_questions_about_the_present():
    for q in ("Has impasse been declared?", "what's the latest update", "is management still proposing a freeze",
              "Has a strike date been set?", "current status of bargaining"):
        assert is_about_present(q), q
    for q in ("How long is trial service?", "What is the overtime rate?"):
        assert not is_about_present(q), q
    assert [f.value for f in figures("a record $50 million fine; fined 4 million dollars; 0.75% COLA")] == \
        [50e6, 4e6, 0.75]


def test_different_figures_from_different_dates_are_both_given_newest_first(pipeline):
    answer = pipeline.ask("How much was Kaiser fined?")
    assert not answer.refused
    text = answer.text
    assert "$50 million" in text and "4 million dollars" in text
    assert text.index("$50 million") < text.index("4 million dollars")  # newest first
    assert text.startswith("(2023) ") and "(2022) Kaiser has already been fined" in text
    by_doc = {c.doc_id: c for c in answer.citations}
    assert by_doc["kaiser-clinicians-strike-2022.txt"].date == "2022"
    for c in answer.citations:
        assert pipeline.index.documents[c.doc_id].text[c.start:c.end] == c.quote
