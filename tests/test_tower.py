"""The question tower (the shipped reader): training path, calibration, and answers through the real pipeline."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from rag.errors import ReaderNotFoundError
from rag.pipeline import Pipeline
from rag.answer.reader import TOWER_FEATURES, TOWER_FILE, QuestionTower
from rag.train.questions import default_squad

SQUAD = default_squad()
needs_squad = pytest.mark.skipif(not SQUAD.exists(), reason=f"needs the shared SQuAD 2.0 file at {SQUAD}")


@pytest.fixture(scope="module")
def tiny_tower(tmp_path_factory):
    """A tower trained here on 48 questions (one layer learning, one epoch) and calibrated on 30."""
    from rag.train.reader import calibrate_tower, train_tower

    if not SQUAD.exists():
        pytest.skip(f"needs the shared SQuAD 2.0 file at {SQUAD}")
    folder = tmp_path_factory.mktemp("tower") / "tiny"
    report = train_tower(SQUAD, folder, max_questions=48, epochs=1, train_layers=1, batch_size=16)
    cal = calibrate_tower(folder, SQUAD, limit=30)
    return folder, report, cal


def test_training_writes_a_loadable_calibrated_tower(tiny_tower):
    folder, report, cal = tiny_tower
    assert report.examples == 48 and report.positives > 0
    meta = json.loads((folder / "reader.json").read_text())
    assert meta["seed"] == 13 and meta["train_layers"] == 1 and meta["questions"] == 48
    assert meta["calibration"]["features"] == list(TOWER_FEATURES) and cal["questions"] == 30
    tower = QuestionTower(folder)
    view = tower.view("Who ruled the Yuan dynasty?")
    assert view.vector.shape == (384,) and abs(float(np.linalg.norm(view.vector)) - 1) < 1e-4
    assert np.isfinite(view.null)
    p = tower.probabilities(view, np.array([0.9, 0.1]), np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    assert p.shape == (2,) and ((0 < p) & (p < 1)).all() and p[0] > p[1]
    # Only the layers that learned ship: one layer of MiniLM in fp16, not the whole model.
    assert (folder / TOWER_FILE).stat().st_size < 5_000_000


def test_tower_answers_and_refuses_through_the_pipeline(corpus_settings, embedder, tiny_tower):
    tower = QuestionTower(tiny_tower[0])
    lenient = Pipeline(replace(corpus_settings, min_answer_score=0.0), embedder=embedder, reader=tower)
    strict = Pipeline(replace(corpus_settings, min_answer_score=0.999), embedder=embedder, reader=tower)
    question = "How many therapy appointments did Kaiser cancel during the 2022 strike?"
    answer = lenient.ask(question)
    assert not answer.refused and 1 <= len(answer.citations) <= 3
    for c in answer.citations:
        assert lenient.index.documents[c.doc_id].text[c.start:c.end] == c.quote
    refused = strict.ask(question)
    assert refused.refused and refused.kind == "not_found"


def test_tower_trained_for_another_model_is_a_clear_error(tmp_path, corpus_settings, embedder, tiny_tower):
    folder = tmp_path / "other"
    shutil.copytree(tiny_tower[0], folder)
    meta = json.loads((folder / "reader.json").read_text())
    (folder / "reader.json").write_text(json.dumps({**meta, "base_model": "bundled"}))
    tower = QuestionTower(folder)
    tower.base_model = "some/other-model"
    with pytest.raises(ReaderNotFoundError, match="retrain it with `rag train-reader`"):
        Pipeline(corpus_settings, embedder=embedder, reader=tower)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path, tiny_tower):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_tower[0], folder)
    state = load_file(str(folder / TOWER_FILE))
    save_file({"decoder.weight": next(iter(state.values()))}, str(folder / TOWER_FILE))
    with pytest.raises(ReaderNotFoundError, match="does not fit"):
        QuestionTower(folder)


@needs_squad
def test_rag_train_reader_builds_a_tower_from_the_command_line(tmp_path, capsys):
    from rag.cli import main
    from rag.answer.reader import load_reader

    out = tmp_path / "cli-tower"
    assert main(["train-reader", "--questions", "32", "--epochs", "1", "--calibration-questions", "20",
                 "--threshold", "0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trained on 32 questions" in printed and "calibrated on 20 held-out questions" in printed
    tower = load_reader(str(out))
    assert isinstance(tower, QuestionTower) and tower.threshold == 0.2
    assert "dev halves" in tower.meta["threshold"]["chosen_on"]


@pytest.mark.parametrize("flag", ["--epochs", "--questions", "--calibration-questions"])
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


@pytest.mark.parametrize("flag", ["--absent-share", "--pairs", "--squad-share"])
def test_the_designs_that_lost_are_gone_from_the_command_line(tmp_path, capsys, flag):
    """SQuAD-trained cross-encoders (A, B) and the tower taught that documents are silent (E): docs/reader.md."""
    from rag.cli import main

    with pytest.raises(SystemExit):
        main(["train-reader", flag, "1", "--out", str(tmp_path / "x")])
    assert "unrecognized arguments" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_folder_of_another_reader_design_is_a_clear_error(tmp_path):
    """A cross-encoder trained before it was removed says what to do, rather than half-loading."""
    from rag.answer.reader import load_reader

    (tmp_path / "reader.json").write_text(json.dumps({"format": "strike-qa reader v1"}))
    with pytest.raises(ReaderNotFoundError, match="expected 'strike-qa question tower v1'.*rag train-reader"):
        load_reader(str(tmp_path))
