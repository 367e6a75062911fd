"""The dense index type follows the size, and a loaded index is memory-mapped."""
import numpy as np
import pytest

from rag.ingest import index as index_store
from rag.config import Settings
from rag.ingest.run import ingest
from rag.pipeline import Pipeline

from tests.conftest import CORPUS


def test_small_indexes_are_exact(corpus_settings):
    index = index_store.load(corpus_settings.index_dir)
    assert index.manifest.dense == {"type": "flat", "metric": "inner_product"}
    assert type(index.dense).__name__ == "IndexFlatIP"
    # Arrays are mapped from the build folder, not copied: processes share them.
    assert isinstance(index.sentence_vectors, np.memmap) and index.sentence_vectors.dtype == np.float16
    assert isinstance(index.chunk_vectors, np.memmap)


def test_above_the_threshold_the_index_is_ivf_and_still_answers(tmp_path, monkeypatch, embedder):
    monkeypatch.setattr(index_store, "EXACT_MAX_CHUNKS", 2)
    settings = Settings(corpus_dir=CORPUS, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    ingest([CORPUS], settings, embedder_factory=lambda: embedder, progress=False)
    index = index_store.load(settings.index_dir)
    spec = index.manifest.dense
    assert spec["type"] == "ivf-sq8" and len(index.chunks) > 2
    import faiss

    ivf = faiss.extract_index_ivf(index.dense)  # parameters come from the manifest
    assert (ivf.nlist, ivf.nprobe) == (spec["nlist"], spec["nprobe"])
    big = index_store.dense_spec(1_000_000)
    assert (big["nlist"], big["nprobe"]) == (1000, 20) and index_store.dense_spec(100_000)["nprobe"] == 64
    answer = Pipeline(settings, embedder=embedder).ask(
        "How many therapy appointments did Kaiser cancel during the 2022 strike?")
    assert "111,803" in answer.text


def test_ivf_recall_against_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 64)).astype(np.float32)
    x = centres[rng.integers(0, 50, 20_000)] + 0.3 * rng.standard_normal((20_000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[:100] + 0.1 * rng.standard_normal((100, 64)).astype(np.float32)
    spec = {"type": "ivf-sq8", "nlist": 200, "nprobe": 20, "train": 12_800}
    ivf = index_store.build_dense(x, spec)
    exact = index_store.build_dense(x, {"type": "flat"})
    found, truth = ivf.search(queries, 10)[1], exact.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9


def test_a_topped_up_index_saves_loads_and_answers_from_copies(corpus_settings, embedder, tmp_path):
    """rag.evaluate.bench_ask_scale's index: perturbed copies of real chunks, sharing their sentences."""
    from dataclasses import replace

    from rag.evaluate import bench_ask_scale as bench

    source = index_store.load(corpus_settings.index_dir)
    n = len(source.chunks)
    big = bench.topped_up_index(source, 3 * n + 1)
    assert len(big.chunks) == big.dense.ntotal == 3 * n + 1 and len(big.sentences.spans) == len(source.sentences.spans)
    for row in (0, n, 2 * n + 1, 3 * n):  # each copy finds its own row and quotes its original's sentences
        assert big.row_of(big.chunks[row]) == row
        assert big.sentences_of(row) == source.sentences_of(row % n)
    index_store.save(big, tmp_path / "big")
    pipeline = Pipeline(replace(corpus_settings, index_dir=tmp_path / "big"), embedder=embedder)
    answer = pipeline.ask("How many therapy appointments did Kaiser cancel during the 2022 strike?")
    assert "111,803" in answer.text
    for c in answer.citations:
        assert pipeline.index.documents[c.doc_id].text[c.start:c.end] == c.quote
    with pytest.raises(ValueError, match="at least"):
        bench.topped_up_index(source, n - 1)
