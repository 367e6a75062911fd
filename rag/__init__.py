"""strike-qa: answers questions from a union's strike documents, with exact citations."""
__version__ = "0.1.0"
