"""The console's pages: Jinja2 templates with autoescaping on, so every title, file name and
question (all of them attacker-controlled) is shown as text. No external assets."""
from __future__ import annotations

from pathlib import Path

from fastapi.responses import HTMLResponse

from ..templating import templates

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Only our own CSS and script; forms post only to us; no page may frame the console.
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY"}

_env = templates(TEMPLATES)


def render(name: str, code: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=code, headers=HEADERS)
