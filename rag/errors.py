"""Errors a user can meet; the CLI and API turn each into one clear line."""


class RagError(Exception):
    """Base class: anything the user can fix by doing something different."""


class IndexNotFoundError(RagError):
    pass


class IndexCorruptError(RagError):
    pass


class UnreadableDocumentError(RagError):
    """A file that cannot be turned into text; ingest skips it and says why."""


class InvalidQuestionError(RagError):
    pass


class CorpusError(RagError):
    """Nothing usable to index: a missing folder, or no readable document in it."""
