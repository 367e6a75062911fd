"""The cross-encoder reader: training on the written union questions, loading, and answers
through the real pipeline (the heuristic and it choose together, its probability refuses)."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from rag.answer.answering import reading_context
from rag.answer.cross import CROSS_FILE, CROSS_FUSION, CROSS_READS, CrossReader
from rag.config import shared_dir
from rag.errors import ReaderNotFoundError
from rag.pipeline import Pipeline
from rag.types import turns

CORPORA = shared_dir("corpora")
needs_corpora = pytest.mark.skipif(not (CORPORA / "training-pool").is_dir(),
                                   reason=f"needs the shared union documents at {CORPORA}")


@pytest.fixture(scope="module")
def tiny_cross(tmp_path_factory):
    """A cross-encoder trained here on 24 written questions, one epoch."""
    from rag.train.questions import load_union
    from rag.train.reader import train_cross

    if not (CORPORA / "training-pool").is_dir():
        pytest.skip(f"needs the shared union documents at {CORPORA}")
    folder = tmp_path_factory.mktemp("cross") / "tiny"
    report = train_cross(folder, load_union(), epochs=1, max_questions=24)
    return folder, report


def test_training_writes_a_loadable_cross_encoder(tiny_cross):
    folder, report = tiny_cross
    assert report.examples == 24 and 0 < report.positives <= 24
    meta = json.loads((folder / "reader.json").read_text())
    assert meta["seed"] == 13 and meta["questions"] == 24 and meta["base_model"] == "bundled"
    reader = CrossReader(folder)
    assert reader.reads == CROSS_READS and reader.fusion == CROSS_FUSION
    p = reader.probabilities("How much is strike pay?", ["Strike pay is $300 a week.", "The hall opens at 9."])
    # each candidate's share of a softmax that also holds "none of these"
    assert p.shape == (2,) and ((0 < p) & (p < 1)).all() and p.sum() < 1
    assert reader.probabilities("How much is strike pay?", []).shape == (0,)
    # The whole of MiniLM learns, kept in fp16: under the 50 MB a shipped model may weigh.
    assert (folder / CROSS_FILE).stat().st_size < 50_000_000


def test_training_is_reproducible_byte_for_byte(tiny_cross, tmp_path):
    """Seeded: the same questions, seed and settings give the same weights, bit for bit."""
    import hashlib

    from rag.train.questions import load_union
    from rag.train.reader import train_cross

    again = train_cross(tmp_path / "again", load_union(), epochs=1, max_questions=24)
    digest = lambda folder: hashlib.sha256((folder / CROSS_FILE).read_bytes()).hexdigest()
    assert again.examples == tiny_cross[1].examples
    assert digest(tmp_path / "again") == digest(tiny_cross[0])


def test_cross_encoder_answers_and_refuses_through_the_pipeline(corpus_settings, embedder, tiny_cross):
    reader = CrossReader(tiny_cross[0])
    lenient = Pipeline(replace(corpus_settings, min_answer_score=0.0), embedder=embedder, reader=reader)
    strict = Pipeline(replace(corpus_settings, min_answer_score=0.999), embedder=embedder, reader=reader)
    question = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
    answer = lenient.ask(question)
    assert not answer.refused and 1 <= len(answer.citations) <= 3
    for c in answer.citations:
        assert lenient.index.documents[c.doc_id].text[c.start:c.end] == c.quote
    refused = strict.ask(question)
    assert refused.refused and refused.kind == "not_found"


def test_the_best_candidate_scores_the_probability_that_one_answers(corpus_settings, embedder, tiny_cross):
    """The refusal knob is a probability: the best candidate's score is the sum of the read
    candidates' probabilities, and no other candidate scores above it."""
    reader = CrossReader(tiny_cross[0])
    pipe = Pipeline(corpus_settings, embedder=embedder, reader=reader)
    question = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
    retriever = pipe.retriever()
    vector = retriever.embed_query(question)
    hits = retriever.search(question, corpus_settings.top_k, vector=vector)
    ranked = pipe.answerer.rank(question, hits, retriever.index, vector)
    heuristic_order = [s.candidate for s in sorted(ranked, key=lambda s: -s.heuristic)[:reader.reads]]
    docs = retriever.index.documents
    contexts = [reading_context(docs[c.doc_id].text, docs[c.doc_id].headings, c.start, c.before)
                for c in heuristic_order]  # what the reader reads beside each (it learned with them)
    total = reader.probabilities(question, [c.read for c in heuristic_order], contexts).sum()
    assert ranked[0].score == pytest.approx(total, rel=1e-6)
    assert all(0 <= s.score <= ranked[0].score for s in ranked)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path, tiny_cross):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_cross[0], folder)
    state = load_file(str(folder / CROSS_FILE))
    save_file({"decoder.weight": next(iter(state.values()))}, str(folder / CROSS_FILE))
    with pytest.raises(ReaderNotFoundError, match="does not fit"):
        CrossReader(folder)
    (folder / CROSS_FILE).write_bytes((tiny_cross[0] / CROSS_FILE).read_bytes()[:4096])  # cut off
    with pytest.raises(ReaderNotFoundError, match="Unreadable .*rag train-reader"):
        CrossReader(folder)


@needs_corpora
def test_rag_train_reader_builds_a_cross_encoder_from_the_command_line(tmp_path, capsys):
    from rag.answer.reader import load_reader
    from rag.cli import main

    out = tmp_path / "cli-cross"
    assert main(["train-reader", "--questions", "8", "--epochs", "1",
                 "--threshold", "0.3", "--out", str(out)]) == 0
    assert "trained on 8 questions" in capsys.readouterr().out
    reader = load_reader(str(out))
    assert isinstance(reader, CrossReader) and reader.threshold == 0.3
    assert np.isfinite(reader.probabilities("When is the vote?", ["The vote is on May 3."])).all()


@needs_corpora
def test_a_reader_trained_with_context_reads_each_sentence_with_where_it_sits(tmp_path):
    """`rag train-reader` (how the shipped reader is made) records that the model reads contexts,
    and it does read them: the same sentence scores differently under another section."""
    from rag.answer.reader import load_reader
    from rag.cli import main

    out = tmp_path / "context-cross"
    assert main(["train-reader", "--questions", "8", "--epochs", "1", "--out", str(out)]) == 0
    reader = load_reader(str(out))
    assert reader.reads_context and json.loads((out / "reader.json").read_text())["reads_context"] is True
    sentence = ["The union pays it for the first month."]
    under = [reader.probabilities("who pays my health insurance premiums?", sentence, [context])
             for context in ("Will my health insurance continue during the strike?", "Parking at the hall")]
    assert not np.allclose(under[0], under[1])


def test_reading_context_is_the_section_and_the_end_of_the_sentence_before():
    from rag.answer.answering import CONTEXT_WORDS
    from rag.types import Heading

    text = "Article 14 Bereavement Leave\n\nLeave is paid. It is three days."
    heading = (Heading(0, 28, 1, "Article 14 Bereavement Leave"),)
    before, start = (30, 44), 45  # "Leave is paid.", then "It is three days."
    assert reading_context(text, heading, start, before) == "Article 14 Bereavement Leave | Leave is paid."
    assert reading_context(text, (), start, before) == "Leave is paid."
    assert reading_context(text, heading, start, None) == "Article 14 Bereavement Leave"
    long = " ".join(f"w{i}" for i in range(100))
    assert reading_context(long, (), len(long), (0, len(long))).split() == long.split()[-CONTEXT_WORDS:]


@pytest.mark.parametrize("flag", ["--epochs", "--questions"])
def test_rag_train_reader_rejects_counts_below_one(tmp_path, capsys, flag):
    from rag.cli import main

    assert main(["train-reader", flag, "0", "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} must be > 0") and not (tmp_path / "x").exists()


def test_train_reader_rejects_a_threshold_outside_zero_to_one(tmp_path, capsys):
    from rag.cli import main

    assert main(["train-reader", "--threshold", "1.5", "--out", str(tmp_path / "x")]) != 0
    assert "--threshold is a probability in [0, 1], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag", ["--design", "--squad", "--calibration-questions", "--absent-share", "--pairs"])
def test_the_designs_that_lost_are_gone_from_the_command_line(tmp_path, capsys, flag):
    """The question tower, SQuAD-trained cross-encoders and the rest: docs/reader.md."""
    from rag.cli import main

    with pytest.raises(SystemExit):
        main(["train-reader", flag, "1", "--out", str(tmp_path / "x")])
    assert "unrecognized arguments" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("design", ["strike-qa question tower v1", "strike-qa reader v1"])
def test_a_folder_of_a_reader_design_that_lost_is_a_clear_error(tmp_path, design):
    """A reader trained before its design was removed says what to do, rather than half-loading."""
    from rag.answer.reader import load_reader

    (tmp_path / "reader.json").write_text(json.dumps({"format": design}))
    with pytest.raises(ReaderNotFoundError, match="expected 'strike-qa cross-encoder v1'.*rag train-reader"):
        load_reader(str(tmp_path))


def test_the_shipped_reader_loads_offline_as_its_card_says():
    """models/reader/ is a cross-encoder trained here (seed 13) on the written union questions'
    train split, with its dev-half threshold, small enough to ship."""
    from rag.answer.reader import SHIPPED, load_reader

    reader = load_reader("shipped")
    assert isinstance(reader, CrossReader) and reader.path == SHIPPED
    assert reader.meta["seed"] == 13 and reader.meta["base_model"] == "bundled"
    assert reader.meta["questions"] == 2182 and 0 < reader.threshold < 1
    assert reader.reads_context  # each sentence with its section and the sentence before it
    assert (SHIPPED / CROSS_FILE).stat().st_size < 50_000_000
    card = (SHIPPED / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"{reader.threshold:.2f}" in card and "rag train-reader" in card


def test_the_shipped_reader_scores_on_onnxruntime_as_torch_does():
    """The scorer runs on onnxruntime, exported when the reader loads: its probabilities are the
    torch model's, whatever the number and lengths of the candidates (padding included)."""
    import torch
    from safetensors.torch import load_file

    from rag.answer.cross import CrossModel
    from rag.answer.reader import SHIPPED, load_reader

    reader = load_reader("shipped")
    model = CrossModel.from_base(reader.base_model)
    model.load_state_dict({k: v.float() for k, v in load_file(str(SHIPPED / CROSS_FILE)).items()})
    model.eval()
    question = "how much is strike pay and when is it paid?"
    for sentences in (["Strike pay is $500 a week, paid by direct deposit every Friday."],
                      ["The hall opens at 9.", "Strike pay is $500 a week.", "Picket shifts are four hours long, "
                       "and members who picket at least 20 hours a week receive the full amount. " * 6]):
        with torch.inference_mode():
            logits = torch.cat([model.null, model.read(model.pairs([question] * len(sentences), sentences,
                                                                   reader.max_tokens))]).double()
        expected = torch.softmax(logits, 0)[1:].numpy()
        assert np.allclose(reader.probabilities(question, sentences), expected, atol=1e-5)


def test_the_shipped_reader_answers_and_refuses_through_the_pipeline(corpus_settings, embedder):
    pipe = Pipeline(replace(corpus_settings, reader_model="shipped"), embedder=embedder)
    assert isinstance(pipe.answerer.reader, CrossReader)
    answer = pipe.ask("How many therapy appointments were cancelled during the strike?")
    assert not answer.refused and "111,803" in answer.citations[0].quote
    for c in answer.citations:
        assert pipe.index.documents[c.doc_id].text[c.start:c.end] == c.quote
    refused = pipe.ask("Who won the 2018 World Cup?")
    assert refused.refused and refused.kind == "not_found"


MEMBER_CORPUS = {
    "contract.md": (
        "# Agreement between the County and Local 99\n\n"
        "## Article 12 Hours of Work\n\n"
        "The normal workweek shall consist of forty (40) hours in five (5) consecutive days. "
        "Employees shall receive a paid rest period of fifteen (15) minutes for each four (4) hours worked. "
        "A meal period of thirty (30) minutes shall be provided near the middle of the shift.\n\n"
        "## Article 14 Bereavement Leave\n\n"
        "An employee shall be granted up to three (3) days of paid leave upon the death of a member of the "
        "employee's immediate family. Immediate family means spouse, child, parent, sibling or grandparent.\n"),
    "strike-update.md": (
        "# Strike update, October 3\n\n"
        "Members of Local 99 will walk off the job on October 10 at 6 am. "
        "We are striking because the County refused to fix the unsafe staffing that puts patients at risk. "
        "Strike pay from the Local 99 strike fund is $300 a week for members who picket twenty hours. "
        "Strike pay starts in the second week of the strike.\n"),
    "strike-faq.md": (
        "# Strike FAQ\n\n"
        "## Will my health insurance continue if we go on strike?\n\n"
        "Yes. The union will pay the premiums for the whole first month, so keep every receipt.\n\n"
        "## Can I take a second job during the strike?\n\n"
        "You may take other work, but you must still picket twenty hours to receive strike pay.\n"),
}


@pytest.fixture(scope="module")
def member_pipeline(tmp_path_factory, embedder):
    """The shipped reader over a small contract and strike update written for these tests."""
    from rag.config import Settings
    from rag.ingest.run import ingest

    base = tmp_path_factory.mktemp("member")
    corpus = base / "corpus"
    corpus.mkdir()
    for name, text in MEMBER_CORPUS.items():
        (corpus / name).write_text(text)
    settings = Settings.from_env(environ={}, index_dir=base / "index", corpus_dir=corpus, reader_model="shipped")
    ingest([corpus], settings, embedder_factory=lambda: embedder, progress=False)
    return Pipeline(settings, embedder=embedder)


@pytest.mark.parametrize("question, history, quoted", [
    ("how many paid days off do i get when my dad dies", None, "three (3) days"),  # members' words
    ("Why are we going on strike?", None, "unsafe staffing"),  # the reason, not the walkout's date
    # The answer names neither health nor insurance (its FAQ heading does): the heuristic alone refuses.
    ("do we keep our health coverage while we're out on strike", None, "pay the premiums"),
    ("and when does it start?", [{"role": "user", "content": "How much is strike pay?"},
                                 {"role": "assistant", "content": "Strike pay is $300 a week [1]."}],
     "second week"),
])
def test_the_shipped_reader_answers_members_questions(member_pipeline, question, history, quoted):
    answer = member_pipeline.ask(question, turns(history))
    assert answer.kind == "answer" and any(quoted in c.quote for c in answer.citations), answer.text


def test_the_shipped_reader_refuses_a_question_about_another_union(member_pipeline):
    answer = member_pipeline.ask("How much strike pay does the Teamsters local give?")
    assert answer.kind == "not_found", answer.text


@pytest.mark.parametrize("message", ["tell me a joke", "hello", "What is the capital of France?"])
def test_what_shares_nothing_with_the_documents_is_not_read(member_pipeline, message):
    """The cross-encoder learned only from questions about their documents: shown 8 unrelated
    sentences it still spread its belief over them (0.93 for "hello"), so under the first stage's
    floor nothing is read, and the member is told the documents don't say."""
    answer = member_pipeline.ask(message)
    assert answer.kind == "not_found" and not answer.citations, answer.text
