"""The reader through the real pipeline: the refusal knob, refusals, quotes, and its threshold (the shipped cross-encoder)."""
from dataclasses import replace

import pytest

from rag.answer.answering import Scored, _candidates, compose
from rag.errors import ReaderNotFoundError
from rag.pipeline import Pipeline
from rag.answer.reader import load_reader, resolve_reader
from rag.types import Hit


def assert_verbatim(answer, index):
    assert answer.citations
    for c in answer.citations:
        assert index.documents[c.doc_id].text[c.start:c.end] == c.quote


@pytest.fixture(scope="module")
def tiny_reader():
    """The shipped reader (models/reader/, the cross-encoder): real, offline, loaded once.
    Training one is tested in tests/test_cross.py."""
    return load_reader("shipped")


@pytest.fixture(scope="module")
def reader_pipeline(corpus_settings, embedder, tiny_reader):
    return Pipeline(replace(corpus_settings, min_answer_score=0.999), embedder=embedder, reader=tiny_reader)


def test_min_answer_score_is_the_refusal_knob(corpus_settings, embedder, tiny_reader):
    reader = tiny_reader
    strict = Pipeline(replace(corpus_settings, min_answer_score=0.999), embedder=embedder, reader=reader)
    lenient = Pipeline(replace(corpus_settings, min_answer_score=0.0), embedder=embedder, reader=reader)
    question = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
    assert strict.ask(question).refused
    answer = lenient.ask(question)
    assert not answer.refused and 1 <= len(answer.citations) <= 3
    assert_verbatim(answer, lenient.index)


def test_refusal_shows_closest_passages_verbatim(reader_pipeline):
    answer = reader_pipeline.ask("Who is the CEO of Kaiser Permanente?")
    assert answer.refused and answer.kind == "not_found" and not answer.citations
    assert answer.related
    for c in answer.related:
        assert reader_pipeline.index.documents[c.doc_id].text[c.start:c.end] == c.quote


def test_adjacent_sentences_merge_into_one_quote(pipeline):
    index = pipeline.index
    chunk = index.chunks[0]
    cands = _candidates([Hit(chunk, 1.0)], index)
    text = index.documents[chunk.doc_id].text
    pair = next((a, b) for a, b in zip(cands, cands[1:])
                if not text[a.end:b.start].strip() and "\n" not in text[a.end:b.start])
    far = next(c for c in cands if c.start > pair[1].end + 1 and c.doc_id == chunk.doc_id
               and "\n" in text[pair[1].end:c.start])
    # ranked: the later sentence best, then something far away, then its neighbour
    chosen = [Scored(pair[1], 0.9, 0, 0), Scored(far, 0.8, 0, 0), Scored(pair[0], 0.7, 0, 0)]
    text_out, citations, pieces = compose(chosen, index)
    assert len(pieces) == len(citations) == 2
    (first, c1), (second, c2) = [(p.text, c) for p, c in zip(pieces, citations)]
    assert c1.n == 1 and c2.n == 2
    assert c1.start <= pair[0].start and c1.end >= pair[1].end  # one quote, in the best sentence's place
    assert far.text in second
    for p, c in zip(pieces, citations):
        assert text[c.start:c.end] == p.text == c.quote and p.n == c.n
    assert text_out == f"{first} [1] {second} [2]"


def test_answers_hold_no_headings_or_fragments(pipeline, reader_pipeline):
    for p, question in [(pipeline, "What are the therapists demanding?"),
                        (reader_pipeline, "Why are Kaiser therapists striking?")]:
        answer = p.ask(question)
        for c in answer.citations:
            assert len(c.quote.split()) >= 4 and not c.quote.rstrip().endswith(":")
        if not answer.refused:
            assert_verbatim(answer, pipeline.index)


def test_a_headline_under_the_title_is_never_quoted(corpus_settings, embedder, tiny_reader):
    """The deck under a news page's title ("Kaiser Permanente Mental Health Therapists in Northern
    California and Central Valley Voting on Strike Authorization") is a long line in Title Case
    without a sentence's end: a headline, never an answer. The sentence under it answers."""
    lenient = Pipeline(replace(corpus_settings, min_answer_score=0.0), embedder=embedder, reader=tiny_reader)
    answer = lenient.ask("which regions are the therapists voting in")
    quotes = [c.quote for c in answer.citations]
    assert not any(q.startswith("Kaiser Permanente Mental Health Therapists in Northern") for q in quotes), quotes
    assert any("Central Valley" in q for q in quotes), quotes
    assert_verbatim(answer, lenient.index)


def test_missing_reader_is_a_clear_error(tmp_path):
    with pytest.raises(ReaderNotFoundError, match="rag train-reader"):
        resolve_reader(str(tmp_path))


def test_the_refusal_threshold_travels_with_the_reader(tmp_path, corpus_settings, embedder, tiny_reader):
    """min_answer_score unset: the reader's own threshold (reader.json); the heuristic keeps 0.44."""
    import shutil

    from rag.answer.answering import HEURISTIC_MIN_SCORE
    from rag.config import Settings
    from rag.answer.cross import CrossReader
    from rag.answer.reader import save_threshold

    assert Settings().min_answer_score is None and Settings().reader_model == "shipped"
    heuristic = replace(corpus_settings, reader_model="none")
    assert Pipeline(heuristic, embedder=embedder).answerer.min_score == HEURISTIC_MIN_SCORE
    assert Pipeline(corpus_settings, embedder=embedder).answerer.min_score == load_reader("shipped").threshold
    folder = tmp_path / "reader"
    shutil.copytree(tiny_reader.path, folder)
    save_threshold(folder, 0.37, "a test")
    reader = CrossReader(folder)
    assert reader.threshold == 0.37
    assert Pipeline(corpus_settings, embedder=embedder, reader=reader).answerer.min_score == 0.37
    env = Settings.from_env(environ={"RAG_MIN_ANSWER_SCORE": "0.9"}, index_dir=corpus_settings.index_dir)
    assert Pipeline(env, embedder=embedder, reader=reader).answerer.min_score == 0.9
    with pytest.raises(ValueError, match="probability"):
        save_threshold(folder, 1.5, "a test")
