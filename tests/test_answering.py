"""Answers from the real model over the shipped corpus: right facts, right citations, honest refusals."""
import json
import numpy as np
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import IndexNotFoundError, InvalidQuestionError
from rag.ingest.run import ingest
from rag.pipeline import Pipeline
from rag.types import Kind, turns

ROOT = Path(__file__).resolve().parent.parent
STRIKE_2022 = "kaiser-clinicians-strike-2022.txt"
STRIKE_VOTE = "another-kaiser-strike-vote.txt"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index")
    settings = Settings.from_env(environ={}, index_dir=folder)
    ingest([ROOT / "corpus"], settings)
    return folder


@pytest.fixture(scope="module")
def pipeline(index_dir):
    return Pipeline(Settings.from_env(environ={}, index_dir=index_dir))


def assert_verbatim(answer, pipeline):
    assert answer.citations, answer.text
    for c in answer.citations:
        doc = pipeline.index.documents[c.doc_id]
        assert doc.text[c.start:c.end] == c.quote
        assert f"[{c.n}]" in answer.text


@pytest.mark.parametrize("question, fact, doc_id", [
    ("How many therapy appointments did Kaiser cancel during the 2022 strike?", "111,803", STRIKE_VOTE),
    ("Has a strike date been set?", "No strike date has been set", STRIKE_VOTE),
    ("How many mental health therapists are voting on the strike?", "2,400", STRIKE_VOTE),
    ("How many patients are there for every mental health clinician?", "2,600", STRIKE_2022),
    ("Who is Molly Parsons?", "therapist with Kaiser", STRIKE_VOTE),
])
def test_answers_cite_the_right_document_verbatim(pipeline, question, fact, doc_id):
    answer = pipeline.ask(question)
    assert not answer.refused and answer.kind == "answer"
    assert fact in answer.text
    assert any(c.doc_id == doc_id and fact in c.quote for c in answer.citations)
    assert_verbatim(answer, pipeline)


@pytest.mark.parametrize("question", [
    "Who is the CEO of Kaiser Permanente?",
    "What is the capital of France?",
    "Write me a poem about cats",
    "How much strike pay will members get?",
])
def test_refuses_what_the_documents_do_not_say(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.refused and answer.kind == "not_found" and not answer.citations
    assert answer.text == "The documents don't say."
    for c in answer.related:  # the closest passages are still exact spans
        assert pipeline.index.documents[c.doc_id].text[c.start:c.end] == c.quote


def test_multi_source_question_cites_both_documents(pipeline):
    answer = pipeline.ask("How much has Kaiser been fined?")
    assert {c.doc_id for c in answer.citations} == {STRIKE_VOTE, STRIKE_2022}
    assert "4 million dollars" in answer.text and "$50 million" in answer.text
    assert_verbatim(answer, pipeline)


def test_follow_up_uses_the_conversation(pipeline):
    history = [{"role": "user", "content": "Who is Molly Parsons?"},
               {"role": "assistant", "content": "Molly Parsons is a therapist with Kaiser in the Bay Area [1]."}]
    answer = pipeline.ask("What did she say?", turns(history))
    assert answer.standalone_question == "What did Molly Parsons say?"
    assert "inappropriate bookings" in answer.text


def test_quote_continuation_keeps_its_speaker(pipeline):
    answer = pipeline.ask("Who said Kaiser management wants therapists to be cogs in a machine?")
    assert "Shay Loftus" in answer.text and "cogs in their machine" in answer.text
    assert_verbatim(answer, pipeline)


@pytest.mark.parametrize("question, message", [("", "type a question"), ("  \n\t ", "type a question"),
                                               ("x" * 50_000, "50,000 characters")])
def test_bad_questions_get_clear_errors(pipeline, question, message):
    with pytest.raises(InvalidQuestionError, match=message):
        pipeline.ask(question)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="rag ingest"):
        Pipeline(Settings.from_env(environ={}, index_dir=tmp_path / "none"))


def test_cli_json_has_the_documented_keys(index_dir, capsys):
    # In-process: a subprocess would only add ~11 s of model loading.
    from rag.cli import main

    code = main(["ask", "How many therapy appointments did Kaiser cancel during the 2022 strike?", "--json",
                 "--index", str(index_dir)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    golden = json.loads((ROOT / "tests" / "golden" / "ask.json").read_text())
    assert sorted(data) == sorted(golden["keys"])
    assert sorted(data["citations"][0]) == sorted(golden["citation_keys"])
    assert sorted(data["pieces"][0]) == sorted(golden["piece_keys"])
    assert sorted(data["retrieved"][0]) == sorted(golden["retrieved_keys"])
    assert "111,803" in data["answer"] and data["refused"] is False
    assert [p["n"] for p in data["pieces"]] == [c["n"] for c in data["citations"]]


def test_a_missing_index_fails_before_the_model_loads(tmp_path, monkeypatch, capsys):
    """`rag ask x --index /nonexistent` once loaded the model for 11 s before saying so."""
    import rag.pipeline
    from rag.cli import main

    def no_model(*args):
        raise AssertionError("the model was loaded before the index was checked")

    monkeypatch.setattr(rag.pipeline, "load_embedder", no_model)
    assert main(["ask", "x", "--index", str(tmp_path / "nonexistent")]) == 1
    assert "no index in" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("ask", "   "), "error: Please type a question."),
    (("ask", "anything", "--index", "/nonexistent/index"), "error: no index in /nonexistent/index"),
    (("ask", "anything", "--top-k", "0"), "error: --top-k must be > 0"),
])
def test_cli_errors_are_one_line_without_traceback(index_dir, capsys, args, message):
    from rag.cli import main

    code = main(list(args) if "--index" in args else [*args, "--index", str(index_dir)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().splitlines() == [err.strip()] and err.startswith(message)


def test_cli_reports_unreadable_index(tmp_path, capsys):
    from rag.cli import main

    (tmp_path / "CURRENT").write_text("build-x\n")
    (tmp_path / "build-x").mkdir()
    (tmp_path / "build-x" / "manifest.json").write_text("{not json")
    assert main(["ask", "anything", "--index", str(tmp_path)]) == 1
    assert "unreadable" in capsys.readouterr().err


def test_a_question_splits_no_document_text(pipeline, monkeypatch):
    """Sentence spans and the sentence before each candidate come from the table stored at ingest."""
    import rag.ingest.chunking
    import rag.ingest.sentences

    def refuse(*args, **kwargs):
        raise AssertionError("document text was split at question time")

    monkeypatch.setattr(rag.ingest.chunking, "split_sentences", refuse)
    monkeypatch.setattr(rag.ingest.sentences, "split_sentences", refuse)
    answer = pipeline.ask("Who said Kaiser management wants therapists to be cogs in a machine?")
    assert "Shay Loftus" in answer.text  # the quote was still widened to the sentence naming its speaker
    assert_verbatim(answer, pipeline)


def test_candidates_carry_the_sentence_before_them_from_the_index(pipeline):
    from rag.answer.answering import _candidates
    from rag.types import Hit

    index = pipeline.index
    checked = 0
    for chunk in index.chunks:
        text = index.documents[chunk.doc_id].text
        for c in _candidates([Hit(chunk, 1.0)], index):
            if c.previous is None:
                continue
            a, b = c.previous
            assert b <= c.start and not text[b:c.start].strip() and "\n" not in text[b:c.start]
            assert text[a:b].strip() and a < b
            checked += 1
    assert checked > 10


def test_a_question_is_encoded_once_and_a_repeat_costs_nothing(pipeline, monkeypatch):
    """The crisis screen and retrieval read the same question: one model call between them,
    and none when the question comes again (many people ask the same few questions)."""
    embedder = pipeline.embedder
    calls = []
    real = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    question = "Which Kaiser clinics did the therapists picket in 2022, and for how long?"
    first = pipeline.ask(question)
    assert len(calls) == 1 and question in calls[0]  # the screen's pieces, the whole question among them
    again = pipeline.ask(question)
    assert len(calls) == 1 and again.text == first.text
    # A question is too small a pass for bfloat16 to gain (BFLOAT16_MIN_TOKENS): float32, exactly.
    assert np.allclose(embedder.embed_batch([question]), embedder.model.encode([question], normalize_embeddings=True),
                       atol=1e-5)


def pipeline_over(tmp_path, embedder, files: dict[str, str]) -> Pipeline:
    """A real index of these files (name -> text) in tmp_path, and the pipeline over it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in files.items():
        (corpus / name).write_text(text)
    settings = Settings.from_env(environ={}, index_dir=tmp_path / "index", corpus_dir=corpus)
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    return Pipeline(settings, embedder=embedder)


def test_a_sentence_in_two_documents_is_quoted_once_with_both_sources(tmp_path, embedder):
    shared = "Strike pay is $400 a week for members who complete four picket shifts."
    pipeline = pipeline_over(tmp_path, embedder, {
        "strike-faq.md": f"# Strike FAQ\n\nWho can get it?\n\n{shared} Sign in with your captain.\n",
        "update-oct.md": f"# October update\n\nBargaining resumes Monday.\n\n{shared}\n"})
    answer = pipeline.ask("How much is strike pay?")
    quotes = [c for c in answer.citations if "$400" in c.quote]
    assert len(quotes) == 1 and answer.text.count("$400") == 1
    assert {quotes[0].doc_id, *(a.doc_id for a in quotes[0].also)} == {"strike-faq.md", "update-oct.md"}
    also = answer.to_json()["citations"][0]["also"]
    assert also and also[0]["quote"] == shared and also[0]["n"] == quotes[0].n


def test_a_line_of_a_pay_schedule_is_read_under_its_section_and_quoted_alone(tmp_path, embedder):
    """"2026-2027 - $15.85" says nothing alone: it is read with its section's heading, and quoted as written.
    (Only the heading: the sentence that introduces the schedule is not read with it.)"""
    pipeline = pipeline_over(tmp_path, embedder, {"contract.md":
        "# Student Worker Contract\n\n## Article 4 - Hours\n\n**4.1 Breaks.** Student workers receive a paid "
        "break of fifteen minutes for every four hours worked.\n\n## Article 6 - Base Pay\n\n**6.1 Base Pay "
        "Levels.** One base pay level applies to every student worker position on campus. Upon ratification "
        "the base pay shall be $15.00 an hour. Each academic year the base pay rises as set out below.\n\n"
        "2025-2026 - **$15.40**\n2026-2027 - **$15.85**\n\n**6.2 Stipends.** Community advisors may take a "
        "room grant or a stipend of equal value.\n"})
    answer = pipeline.ask("what will base pay be in 2026-2027")
    assert not answer.refused and "$15.85" in answer.text
    line = next(c for c in answer.citations if "$15.85" in c.quote)
    assert line.quote.strip() == "2026-2027 - **$15.85**"
    assert pipeline.index.documents[line.doc_id].text[line.start:line.end] == line.quote


def test_titles_headings_and_byline_lines_are_never_quoted(tmp_path, embedder):
    pipeline = pipeline_over(tmp_path, embedder, {
        "pay.md":
        "# Strike Pay and Benefits\n\nStrike Pay and Benefits Update\n\nPosted October 3, 2026 by Communications Team\n\n"
        "Members who picket twenty hours a week receive $300 from the strike fund. "
        "Health coverage continues through the end of the month.\n",
        "page.html":
        "<html><head><title>Picket Schedule | Local 99</title></head><body><h1>Picket Schedule</h1>"
        "<p>Picket Schedule for the Oakland Clinic</p>"
        "<p>Shifts run from 6 am to 10 am and from 3 pm to 7 pm every weekday.</p></body></html>"})
    titles = {"strike pay and benefits", "strike pay and benefits update", "picket schedule",
              "picket schedule for the oakland clinic", "posted october 3, 2026 by communications team"}
    for question in ("strike pay and benefits update", "What is the picket schedule for the Oakland clinic?",
                     "when was the strike pay update posted", "strike pay and benefits?"):
        answer = pipeline.ask(question)
        assert not {c.quote.strip().lower() for c in answer.citations} & titles, (question, answer.text)


def test_a_follow_up_is_searched_for_beside_the_previous_answer(tmp_path, embedder):
    """"and the next year?" shares no word with the passage that answers it; the answer the member
    just read does, so the follow-up is searched for beside it (but never answered with it again)."""
    pipeline = pipeline_over(tmp_path, embedder, {
        "salary.md":
        "# Article 24 Salary\n\nAll salary schedules go up 2% effective January 1, 2020. "
        "Effective July 1, 2020, unit members receive a 3.5% increase on all schedules.\n",
        "calendar.md":
        "# School calendar\n\nThe next school year starts on August 12. Next year the winter break "
        "is two weeks long and the spring break is one week.\n",
        "retirees.md":
        "# Retiree health\n\nHow much retirees pay toward health coverage rises next year, to 4% of the premium.\n",
        "talks.md":
        "# How the deal was reached\n\nThe deal came after a year of talks. In the first year of bargaining "
        "the teams met twenty times, and the next year twelve times.\n"})
    history = turns([{"role": "user", "content": "what do we get in the first year of the deal"},
                     {"role": "assistant", "content": "All salary schedules go up 2% effective January 1, 2020. [1]"}])
    answer = pipeline.ask("and the next year?", history, top_k=1)
    assert answer.retrieved[0].chunk.doc_id == "salary.md", answer.retrieved
    # After a refusal there is no passage to search beside: the rewrite alone is searched.
    refused = turns([{"role": "user", "content": "what do we get in the first year of the deal"},
                     {"role": "assistant", "content": "The documents don't say."}])
    assert pipeline.ask("and the next year?", refused, top_k=1).retrieved[0].chunk.doc_id != "salary.md"


def test_a_question_about_the_askers_own_record_is_refused_with_the_closest_passages(tmp_path, embedder):
    pipeline = pipeline_over(tmp_path, embedder, {
        "contract.md":
        "# Article 12 Sick Leave\n\nEach full-time employee earns twelve sick days a year, credited monthly. "
        "Unused sick days carry over to the next year, up to ninety days.\n\n"
        "# Article 5 Dues\n\nMembers pay dues of 1.5% of base pay, deducted from each paycheck.\n"})
    for question in ("how many sick days do I have left this year?", "how much have I paid in dues so far?"):
        answer = pipeline.ask(question)
        assert answer.refused and answer.kind == Kind.NOT_FOUND and answer.related, question
    # The same topics asked of the contract are answered.
    assert "twelve sick days" in pipeline.ask("How many sick days do we earn a year?").text
    assert "1.5%" in pipeline.ask("How much are union dues?").text
