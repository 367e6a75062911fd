"""Turn written question drafts (with quoted evidence) into labels that point into the documents.

    python training/reader/anchor.py DRAFT.jsonl... > training/reader/labels.jsonl

A draft row quotes the 1-3 sentences that answer its question (or tempt a bot to answer it
wrongly). The label keeps only where they are: the document's path under ../shared/corpora,
character offsets into the text rag's loader reads from it (``load_file(...).document.text``),
the short answer phrase and the document's SHA-256, so the repository holds no copy of anyone's
page and a changed loader or document is noticed (``rag.train.questions.load_union``).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from rag.config import shared_dir
from rag.ingest.loaders import load_file

WS = re.compile(r"\s+")


def normalised(text: str) -> tuple[str, list[int]]:
    """Text with each whitespace run as one space, and each kept character's offset in ``text``."""
    out, where, i = [], [], 0
    for m in WS.finditer(text + " "):
        for j in range(i, m.start()):
            out.append(text[j])
            where.append(j)
        if m.start() < len(text):
            out.append(" ")
            where.append(m.start())
        i = m.end()
    return "".join(out), where


def main(paths: list[str]) -> int:
    corpora = shared_dir("corpora")
    docs: dict[str, tuple[str, list[int], str, str]] = {}
    bad = 0
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            doc = row["doc"]
            if doc not in docs:
                document = load_file(corpora / doc, doc).document
                flat, where = normalised(document.text)
                docs[doc] = (flat, where, document.text, hashlib.sha256((corpora / doc).read_bytes()).hexdigest())
            flat, where, text, sha = docs[doc]
            evidence = WS.sub(" ", row["evidence"]).strip()
            at = flat.find(evidence)
            if at < 0:
                print(f"{path}:{n}: evidence not found in {doc}", file=sys.stderr)
                bad += 1
                continue
            start, end = where[at], where[at + len(evidence) - 1] + 1
            label = {"doc": doc, "sha256": sha, "start": start, "end": end, "question": row["question"],
                     "answerable": bool(row["answerable"]), "answer": row.get("answer", "") or "",
                     "category": row["category"]}
            if row.get("history"):
                label["history"] = row["history"]
            print(json.dumps(label, ensure_ascii=False))
    print(f"{bad} rows not anchored", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
