"""What of Gradio is reachable from outside: the routes the chat page uses, and nothing else.

Gradio mounts some fifty routes (file serving, uploads, its own API, proxies, monitoring).
Gradio 6.31 served any file on the server through two of them: a ``FileData`` value sent
as the chat message was copied into its cache (``_check_allowed`` is skipped while
``blocks.has_launched`` is false, and ``mount_gradio_app`` never sets it), then served by
``/gradio_api/file=``. So the gate is an allow-list, checked before Gradio sees a request:

- our own routes (the API, widget, sources: whatever the app declared before Gradio);
- the chat page's own traffic, as a real browser sends it (``tests/test_gate.py``):
  the page, its assets, the queue, the heartbeat;
- a queue request whose data holds anything but text (a file object) is refused.

Every other path answers 404 ``{"error"}``. Gradio's own errors on the allowed routes come
back as ``{"error"}`` too, as the API promises, and the page carries our title, not Gradio's
link-preview tags pointing at gradio.app and GitHub.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from html import escape

from .middleware import send_error

# Method, path pattern. The page, its assets and its queue: nothing that reads or serves files.
GRADIO_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", r"/"),
    ("GET", r"/config/?"),
    ("GET", r"/theme\.css"),
    ("GET", r"/favicon\.ico"),
    ("GET", r"/assets/[A-Za-z0-9._\-/]+"),
    ("GET", r"/static/[A-Za-z0-9._\-/]+"),
    ("GET", r"/gradio_api/heartbeat/[A-Za-z0-9_\-]+"),
    ("GET", r"/gradio_api/queue/data"),
    ("GET", r"/gradio_api/startup-events"),
    ("POST", r"/gradio_api/queue/join"),
    ("POST", r"/gradio_api/cancel"),
    ("POST", r"/gradio_api/reset/?"),
)
# Requests whose JSON body is read before Gradio's: they carry the chat's inputs.
_READ_BODY = re.compile(r"/gradio_api/(queue/join|cancel|reset/?)")
# Headers that say where a request came from or which host it was for: only a trusted proxy's
# count. Gradio builds its root URL (in the page and /config) from X-Forwarded-Host.
FORWARDING_HEADERS = frozenset({b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-for",
                                b"x-forwarded-port", b"x-forwarded-prefix", b"forwarded",
                                b"x-gradio-server", b"x-real-ip"})
_LINK_PREVIEW = re.compile(rb'<meta\s+(?:property="og:[^"]*"|name="twitter:[^"]*")[^>]*>\s*', re.S)
_MANIFEST = re.compile(rb'<link rel="manifest"[^>]*>\s*')
TEXT_ONLY = "This chat takes text only."
# Responses that hold the root URL Gradio built from the request: never cached by a proxy.
_NAMES_HOST = frozenset({"/", "/config", "/config/"})


def _matcher(patterns: Iterable[tuple[str, str]]) -> list[tuple[frozenset[str], re.Pattern]]:
    return [(frozenset({m, "HEAD"} if m == "GET" else {m}), re.compile(p + r"\Z")) for m, p in patterns]


def carries_files(value: object) -> bool:
    """True if a JSON value holds anything shaped like a file (Gradio's FileData: a dict with a
    path, a url or a meta type). The chat's inputs are text, numbers and chat messages."""
    if isinstance(value, dict):
        if {"path", "url", "meta"} & value.keys():
            return True
        return any(carries_files(v) for v in value.values())
    if isinstance(value, list):
        return any(carries_files(v) for v in value)
    return False


class GradioGate:
    """Only our routes and the chat page's own Gradio traffic pass; see the module docstring.

    ``own`` are the path patterns of the app's routes (FastAPI's ``path_regex``), taken before
    Gradio is mounted. ``title`` replaces Gradio's link-preview tags on the page.
    """

    def __init__(self, app, own: Iterable[re.Pattern], title: str, hosts: frozenset[str] = frozenset()):
        self.app = app
        self.hosts = hosts  # Host header names Gradio may build its root URL from; empty: any
        self.own = list(own)
        self.gradio = _matcher(GRADIO_ROUTES)
        self.title = title.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if any(p.match(path) for p in self.own):
            return await self.app(scope, receive, send)
        if not any(method in methods and p.match(path) for methods, p in self.gradio):
            return await send_error(send, 404, "Not found.")
        if self.hosts and host_name(scope) not in self.hosts:
            return await send_error(send, 400, "Unknown host.")
        if method == "POST" and _READ_BODY.match(path):
            body, receive = await _read_body(receive)
            try:
                data = json.loads(body or b"null")
            except ValueError:
                return await send_error(send, 400, "The request body is not JSON.")
            if carries_files(data):
                return await send_error(send, 400, TEXT_ONLY)
        await self.app(scope, receive, self._rewriting(send, page=path == "/", names_host=path in _NAMES_HOST))

    def _rewriting(self, send, page: bool, names_host: bool):
        """Gradio's responses with our error shape, no caching of what names a host, our page head."""
        held: dict = {}

        async def rewrite(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                kind = headers.get(b"content-type", b"")
                if (page and kind.startswith(b"text/html")) or (message["status"] >= 400 and b"json" in kind):
                    held["start"], held["body"] = message, b""  # buffered: small, and rewritten below
                    return
                if names_host:
                    message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                      if k.lower() != b"cache-control"]
                               + [(b"cache-control", b"no-store")]}
                await send(message)
                return
            if "start" not in held:
                return await send(message)
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return
            start, body = held.pop("start"), held.pop("body")
            body = self._page(body) if page and start["status"] < 400 else _error_shape(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"cache-control")]
            headers += [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return rewrite

    def _page(self, html: bytes) -> bytes:
        html = _MANIFEST.sub(b"", _LINK_PREVIEW.sub(b"", html))
        head = (f"<title>{escape(self.title.decode())}</title>"
                f'<meta name="robots" content="noindex">').encode()
        return html.replace(b"<head>", b"<head>" + head, 1)


def host_name(scope) -> str:
    """The Host header's name, lower case, without its port ("[::1]:7860" -> "::1")."""
    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _error_shape(body: bytes) -> bytes:
    """{"detail": ...} (FastAPI's, Gradio's) as the API's {"error": ...}."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and "detail" in data and "error" not in data:
        detail = data["detail"]
        return json.dumps({"error": detail if isinstance(detail, str) else "Invalid request."}).encode()
    return body


async def _read_body(receive):
    """The whole request body (BodyLimit, outside this middleware, bounds it), and a receive that replays it."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


class ForwardedHeaders:
    """Forwarding headers (X-Forwarded-Host/-Proto/-For, Forwarded) are dropped unless the
    connection comes from a trusted proxy, then uvicorn's ProxyHeadersMiddleware applies the
    rest. Runs first, on the socket's own peer, for every route (ours and Gradio's)."""

    def __init__(self, app, trusted: tuple[str, ...]):
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        self.app = app
        # uvicorn's own trust list judges the peer too: addresses and networks ("10.0.0.0/8") alike.
        self.proxied = ProxyHeadersMiddleware(app, trusted_hosts=list(trusted)) if trusted else None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        peer = (scope.get("client") or ("", 0))[0]
        if self.proxied and peer in self.proxied.trusted_hosts:
            return await self.proxied(scope, receive, send)
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in FORWARDING_HEADERS]
        await self.app({**scope, "headers": headers}, receive, send)
