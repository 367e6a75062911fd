"""rag.answer.conversation: follow-ups rewritten to stand alone."""
from __future__ import annotations

import pytest

from rag.answer.conversation import previous_answer, standalone
from rag.types import turns


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
    assert standalone(question, turns(history)) == expected


def test_a_pronoun_with_only_organisations_named_falls_back_to_the_previous_question():
    history = [{"role": "user", "content": "What is Kaiser Permanente doing?"},
               {"role": "assistant", "content": "The National Union of Healthcare Workers says..."}]
    assert standalone("What did she say?", turns(history)) == "What did she say? (What is Kaiser Permanente doing?)"


@pytest.mark.parametrize("history, expected", [
    # the latest answer that cites the documents, without our citation numbers and date labels
    (MOLLY, "Molly Parsons is a psychologist at Kaiser Permanente."),
    ([*MOLLY, {"role": "user", "content": "When?"},
      {"role": "assistant", "content": "(Aug 18, 2026) Members vote on the agreement. [1] [2]"}],
     "Members vote on the agreement."),
    # a refusal, a crisis text or an error cites nothing: nothing to search beside
    ([*MOLLY, {"role": "user", "content": "And her salary?"}, {"role": "assistant", "content": "The documents don't say."}],
     ""),
    ([{"role": "user", "content": "How much is strike pay?"}], ""),
    ([], ""),
])
def test_previous_answer_is_the_latest_cited_answer_without_marks(history, expected):
    assert previous_answer(turns(history)) == expected
