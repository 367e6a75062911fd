"""Start the chat UI, JSON API and widget: `python app.py [--host H] [--port P] [--index DIR]`.

UI only: everything it shows comes from rag.server, which asks rag.pipeline.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rag.config import Settings, offline_environment
from rag.errors import RagError


def main(argv: list[str] | None = None) -> int:
    offline_environment()
    parser = argparse.ArgumentParser(description="Serve the strike Q&A chat on http://HOST:PORT.")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 7860)")
    parser.add_argument("--index", type=Path, help="index folder (default index/)")
    args = parser.parse_args(argv)
    try:
        from rag.server import serve

        serve(Settings.from_env(host=args.host, port=args.port, index_dir=args.index))
    except (RagError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
