"""Errors a user can meet; the CLI and API turn each into one clear line."""


class RagError(Exception):
    """Base class: anything the user can fix by doing something different."""


class IndexNotFoundError(RagError):
    pass


class IndexCorruptError(RagError):
    pass


class IndexFormatError(IndexCorruptError):
    """An index written by an older version; `rag ingest` rebuilds it."""


class UnreadableDocumentError(RagError):
    """A file that cannot be turned into text; ingest skips it and says why."""


class InvalidQuestionError(RagError):
    pass


class CorpusError(RagError):
    """Nothing usable to index: a missing folder, or no readable document in it."""


class EvalFileError(RagError):
    """An eval file that cannot be used: says which line and what is wrong."""


class ThresholdsError(RagError):
    """A thresholds file that cannot be used."""


class RateLimitedError(RagError):
    """Too many questions from one client; the API answers 429, the chat says so."""

    def __init__(self, wait_s: float):
        super().__init__("You're asking questions too quickly. Please wait a minute and try again.")
        self.wait_s = wait_s


class InvalidFeedbackError(RagError):
    """A rating the store cannot take (e.g. for an answer it never gave)."""


class CrisisModelError(RagError):
    """The crisis detector's weights are missing, unreadable or do not fit the embedder."""


class GenerationError(RagError):
    """The language model could not give a usable answer; the extractive one is given instead."""


class ReaderNotFoundError(RagError):
    """The trained reader model is missing or not a reader this code can load."""


class StaffError(RagError):
    """A staff account that cannot be added, found or signed in as (the CLI and the console say why)."""


class UploadError(RagError):
    """A file, update or edit the staff console refuses: says what is wrong and what to do."""


class DatabaseUnavailableError(RagError):
    """The database (RAG_DATABASE_URL, or the SQLite files in the data folder) cannot be reached:
    at start the server stops; while serving, answers go on and votes get a 503."""


class SchemaVersionError(RagError):
    """The database was written by a newer strike-qa than this one: refused, never guessed at."""


class PublishConflictError(RagError):
    """Another ingest published a build on top of the same one while this ingest ran (another
    machine sharing the index folder): this build is not published, the other one is served."""


class RayIngestError(RagError):
    """`rag ingest --ray`: Ray missing, a cluster out of reach, or workers lost beyond their retries."""
