"""An answer is ordered (quote, citation) pieces end to end: a quote that says "[2]" stays a quote."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.ingest.run import ingest
from rag.evaluate.metrics import unsupported_sentences
from rag.pipeline import Pipeline
from rag.serve.server import create_app
from rag.types import cited_text
from rag.serve.ui import answer_markdown, cited_markdown

QUOTE = "Under Article [2] of the contract, the strike vote passed with 94 percent of members voting yes."
QUESTION = "What percent of members voted yes in the strike vote?"


@pytest.fixture(scope="module")
def bracket_pipeline(tmp_path_factory, embedder):
    base = tmp_path_factory.mktemp("brackets")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "vote.txt").write_text(f"Strike vote results\n{QUOTE}\nPicket lines start at 7 am on Monday.\n")
    (corpus / "faq.txt").write_text("Strike FAQ\nStrike pay is $20 a day for members on the picket line [1].\n")
    settings = Settings(corpus_dir=corpus, index_dir=base / "index", data_dir=base / "data")
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    return Pipeline(settings, embedder=embedder)


@pytest.fixture(scope="module")
def answer(bracket_pipeline):
    answer = bracket_pipeline.ask(QUESTION)
    assert answer.kind == "answer"
    return answer


def test_the_answer_carries_its_pieces_in_order(answer):
    assert answer.pieces[0].text == QUOTE and answer.pieces[0].n == 1
    assert [(p.text, p.n) for p in answer.pieces] == [(c.quote, c.n) for c in answer.citations]
    assert answer.text == cited_text(answer.pieces)


def test_chat_markdown_links_only_the_real_citation(answer):
    body = cited_markdown(answer.pieces, answer.citations)
    links = re.findall(r"\[\\\[(\d+)\\\]\]\((/source/[^)]*)\)", body)
    assert [int(n) for n, _ in links] == [c.n for c in answer.citations]
    assert links[0][1].startswith("/source/vote.txt?start=")
    assert r"Article \[2\] of the contract" in body  # shown literally, not a link to source 2
    streamed = answer_markdown(answer, upto=1)
    assert streamed.count("](/source/") == 1


def test_eval_scores_pieces_not_brackets_in_the_text(answer):
    assert unsupported_sentences(answer.to_json()) == (len(answer.pieces), [])


def test_api_json_has_the_pieces(bracket_pipeline, tmp_path):
    settings = Settings(corpus_dir=bracket_pipeline.settings.corpus_dir, index_dir=bracket_pipeline.settings.index_dir,
                        data_dir=tmp_path)
    body = TestClient(create_app(settings, bracket_pipeline)).post("/api/ask", json={"question": QUESTION}).json()
    assert body["pieces"][0] == {"text": QUOTE, "n": 1}
    assert len(body["pieces"]) == len(body["citations"])
