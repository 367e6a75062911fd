"""Ingest figures on real union documents, printed: `python -m rag.evaluate.bench_ingest_real [--no-embed]`.

For ../shared/corpora/seiu503-higher-ed and for union-contracts + oregon-nurse-contracts:
pages per second, chunks, the share of chunks that end mid-sentence, and seconds.

A chunk ends mid-sentence when its last character is not a sentence end
(. ! ? : ; with closing quotes/brackets) and the text does not break the line
right after it (a heading, list item or table row ends at a line break). The
"strict" figure counts line-break endings without punctuation as fragments too.
With --no-embed only loading and chunking are timed (no model, no index).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from ..config import Settings, offline_environment, shared_dir
from ..ingest.chunking import chunk_document
from ..ingest.embedding import tiktoken_counter
from ..ingest.loaders import Loaded, walk_corpus
from ..ingest.run import ingest

SHARED = shared_dir("corpora")
SETS = {
    "seiu503-higher-ed": ["seiu503-higher-ed"],
    "union-contracts + oregon-nurse-contracts": ["union-contracts", "oregon-nurse-contracts"],
}
_SENTENCE_END = re.compile(r"[.!?:;][\"'”’)\]*]*$")


def chunk_end_kind(text: str, end: int) -> str:
    """"sentence" | "line" | "fragment" for a chunk ending at text[end]."""
    if _SENTENCE_END.search(text[max(0, end - 8):end]):
        return "sentence"
    rest = text[end:end + 50]
    if not rest.strip() or rest.lstrip(" \t").startswith("\n"):
        return "line"
    return "fragment"


def fragment_rates(chunks, documents) -> tuple[float, float]:
    """(share ending mid-sentence, strict share also counting unpunctuated line ends)."""
    kinds = [chunk_end_kind(documents[c.doc_id].text, c.end) for c in chunks]
    n = max(len(kinds), 1)
    return kinds.count("fragment") / n, (kinds.count("fragment") + kinds.count("line")) / n


def main() -> int:
    offline_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-embed", action="store_true", help="time loading and chunking only")
    parser.add_argument("--corpora", type=Path, default=SHARED, help=f"folder of the corpora (default {SHARED})")
    args = parser.parse_args()
    if not args.corpora.is_dir():
        print(f"skipped: {args.corpora} not found", file=sys.stderr)
        return 0
    settings = Settings.from_env()
    count = tiktoken_counter(settings.encoding)
    for name, folders in SETS.items():
        roots = [args.corpora / f for f in folders]
        started = time.perf_counter()
        docs = {}
        for root in roots:
            for item in walk_corpus(root):
                if isinstance(item, Loaded):
                    docs[item.document.doc_id] = item.document
        loaded = time.perf_counter() - started
        chunks = [c for d in docs.values() for c in chunk_document(d, count, settings.chunk_tokens,
                                                                   settings.chunk_overlap_tokens)]
        chunked = time.perf_counter() - started
        pages = sum(len(d.pages) for d in docs.values())
        pdf_chunks = [c for c in chunks if c.doc_id.lower().endswith(".pdf")]
        rate, strict = fragment_rates(chunks, docs)
        pdf_rate, pdf_strict = fragment_rates(pdf_chunks, docs) if pdf_chunks else (0.0, 0.0)
        print(f"{name}: {len(docs)} documents, {pages} PDF pages, {len(chunks)} chunks")
        print(f"  load {loaded:.1f}s ({pages / loaded:.1f} PDF pages/s), load+chunk {chunked:.1f}s")
        print(f"  chunks ending mid-sentence: {rate:.1%} of all ({strict:.1%} strict); "
              f"PDF chunks: {pdf_rate:.1%} ({pdf_strict:.1%} strict) of {len(pdf_chunks)}")
        if args.no_embed:
            continue
        with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
            t = time.perf_counter()
            report = ingest(roots, Settings.from_env(index_dir=Path(tmp)), progress=False)
            seconds = time.perf_counter() - t
        print(f"  full ingest (load, chunk, embed, save): {report.summary()}; {seconds:.1f}s, "
              f"{pages / seconds:.2f} PDF pages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
