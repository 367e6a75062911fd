"""Start the chat UI, JSON API and widget: `python app.py [--host H] [--port P] [--index DIR]`.

The same as `rag serve`, through the same code: flags, settings, errors and exit codes.
"""
from __future__ import annotations

import sys

from rag.cli import main as rag


def main(argv: list[str] | None = None) -> int:
    return rag(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
