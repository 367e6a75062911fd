"""Typo-tolerant questions (rag/answer/spelling.py): the real pyspellchecker word list, word counts
stored in a real index, and the pipeline answering a misspelt question as the right one."""
from __future__ import annotations

from dataclasses import replace

import pytest

from rag.ingest import index as index_store
from rag.pipeline import Pipeline
from rag.answer.spelling import Speller
from rag.ingest.lexical import word_counts
from rag.serve.ui import answer_markdown
from rag.types import turns

CONTRACT = ("Full time employees shall accrue eight (8) hours of sick leave for each full month. "
            "The union declared impasse. Dental insurance is paid by the employer. OPEU OSU Ough.")


@pytest.fixture(scope="module")
def speller():
    return Speller(word_counts([CONTRACT]))


def test_unknown_words_become_the_document_word_one_edit_away(speller):
    question = "how much sick leve do i acrue, has impase been declard?"
    spelling = speller.correct(question)
    assert spelling.text == "how much sick leave do i accrue, has impasse been declared?"
    assert [(f.typed, f.word) for f in spelling.fixes] == [
        ("leve", "leave"), ("acrue", "accrue"), ("impase", "impasse"), ("declard", "declared")]
    assert all(question[f.start:f.end] == f.typed for f in spelling.fixes)


def test_real_words_names_acronyms_and_short_words_stay_as_typed(speller):
    for question in ("Is rental insurance paid?",  # English, one edit from "dental": not a typo
                     "When did OPEC meet?",  # an acronym, one edit from "OPEU"
                     "Who is Tugh Temur?",  # a name inside the question, one edit from "Ough"
                     "Does the OSI pay?",  # too short to guess at
                     "Who is the CEO of Kaiser?"):
        assert speller.correct(question).text == question and not speller.correct(question).fixes


def test_the_typed_case_is_kept(speller):
    assert speller.correct("Impase declard?").text == "Impasse declared?"
    assert speller.correct("HAS IMPASE BEEN DECLARD").text == "HAS IMPASSE BEEN DECLARED"  # not acronyms


def test_the_most_frequent_document_word_wins():
    speller = Speller(word_counts(["bake " * 3 + "cake " * 5 + "lake"]))
    assert speller.correct("dake").text == "cake"  # one edit from all three; "cake" is the commonest


def test_the_index_stores_its_word_counts(corpus_settings):
    index = index_store.load(corpus_settings.index_dir)
    assert index.words["therapists"] > 5 and "therapsts" not in index.words
    folder = corpus_settings.index_dir / index_store.current_version(corpus_settings.index_dir)
    assert (folder / "words.json").is_file()


def test_a_misspelt_question_gets_the_right_answer_and_says_what_it_read(pipeline):
    right = pipeline.ask("How many therapy appointments did Kaiser cancel during the 2022 strike?")
    typed = pipeline.ask("How many therapy apointments did Kaiser cancel during the 2022 strke?")
    assert [(f.typed, f.word) for f in typed.corrected] == [("apointments", "appointments"), ("strke", "strike")]
    assert not typed.refused and typed.text == right.text and "111,803" in typed.text
    assert typed.question.endswith("during the 2022 strke?")  # the member's words are kept as typed
    assert typed.to_json()["corrected"] == [{"typed": "apointments", "word": "appointments"},
                                            {"typed": "strke", "word": "strike"}]
    assert answer_markdown(typed).startswith("*Read “apointments” as “appointments”, “strke” as “strike”.*")
    assert right.corrected == () and right.to_json()["corrected"] == []


def test_spelling_can_be_turned_off(corpus_settings, pipeline):
    off = Pipeline(replace(corpus_settings, spelling=False), embedder=pipeline.embedder)
    answer = off.ask("How many therapy apointments did Kaiser cancel during the 2022 strke?")
    assert answer.corrected == ()


def test_offsets_are_the_questions_own_whatever_comes_before(speller):
    question = "İstanbul office: how much sick leve?"  # "İ".lower() is two characters
    spelling = speller.correct(question)
    assert spelling.text == "İstanbul office: how much sick leave?"
    assert [question[f.start:f.end] for f in spelling.fixes] == ["leve"]


def test_typos_alone_do_not_put_a_resources_line_under_an_answer(tmp_path, embedder):
    from rag.config import Settings
    from rag.ingest.run import ingest

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "contract.txt").write_text("Sick leave\nFull time employees shall accrue eight (8) hours of sick "
                                         "leave with pay for each full month they are in pay status.\n")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    pipeline = Pipeline(settings, embedder=embedder)
    typo = "how much sick leve do i acrue per month"
    # An earlier crisis head heard distress in these typos (P 0.56); the outcome must hold either way.
    answer = pipeline.ask(typo)
    assert "eight (8) hours" in answer.text and answer.corrected and answer.notice == ""
    # Distress that is really there keeps its line, typos or not.
    upset = "I've felt so hopeless and alone since my therapist left. How much sick leve do I acrue?"
    assert pipeline.ask(upset).notice and "988" in pipeline.ask(upset).notice


def test_a_follow_up_reads_the_earlier_question_spelled_right(pipeline):
    history = [{"role": "user", "content": "How many therapy apointments did Kaiser cancel?"},
               {"role": "assistant", "content": "A state investigation found 111,803."}]
    answer = pipeline.ask("and during the 2022 strike?", turns(history))
    assert "apointments" not in answer.standalone_question and "appointments" in answer.standalone_question
    assert answer.corrected == ()  # nothing the member just typed was changed


def test_rag_ask_says_what_it_read(corpus_settings, capsys):
    from rag.cli import main

    assert main(["ask", "How many therapy apointments did Kaiser cancel during the 2022 strke?",
                 "--index", str(corpus_settings.index_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Read “apointments” as “appointments”, “strke” as “strike”."
    assert "111,803" in out[2]
