"""Jinja2 for our own pages (the public documents list, the staff console). Autoescaping is on
for every template: titles, file names and questions are other people's words, shown as text."""
from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..ingest.dates import display


def templates(folder: Path) -> Environment:
    env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["day"] = display  # "2026-08-07" -> "Aug 7, 2026"
    return env
