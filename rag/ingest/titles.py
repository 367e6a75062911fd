"""Titles set by hand: a sidecar ``.titles.json`` in a corpus folder, ``{"path/in/folder.pdf": "Title"}``.

For documents whose own title is wrong or missing (a PDF titled "Microsoft Word - final2.docx");
the staff console writes it. Hidden, like the dates sidecar, so ingest never reads it as a document.
"""
from __future__ import annotations

import json
from pathlib import Path

TITLES = ".titles.json"
MAX_TITLE = 200


def read_titles(root: Path) -> dict[str, str]:
    """{doc path: title} from root/.titles.json; entries that are not short one-line text are ignored."""
    try:
        data = json.loads((Path(root) / TITLES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): " ".join(v.split())[:MAX_TITLE] for k, v in data.items() if isinstance(v, str) and v.strip()}
