"""ASGI middleware for every route, our own and Gradio's: body-size limit, headers (the route
allow-list is gate.py).

Pure ASGI rather than BaseHTTPMiddleware, which would buffer Gradio's streams.
"""
from __future__ import annotations

import json

async def send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length and by bytes actually read.

    A client that sends no Content-Length (chunked) is cut off as soon as it
    passes the limit: the 413 goes out, and the app sees a disconnected client.
    Not FastAPI's own ``max_body_size``: it answers in plain text or
    ``{"detail": ...}``, not the API's documented ``{"error": ...}``.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.message = f"The request is too large (the limit is {max_bytes:,} bytes)."

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                return await send_error(send, 400, "Invalid Content-Length header.")
            if too_big:
                return await send_error(send, 413, self.message)

        received = 0
        started = refused = False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await send_error(send, 413, self.message)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # our 413 is the answer; whatever the app says now goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise  # a disconnect we caused is not an error; anything else is


class SecurityHeaders:
    """Default headers for every response: no MIME sniffing, no referrer to other sites, framing
    by our own pages only. A route that sets its own CSP (the widget) keeps it."""

    def __init__(self, app, frame_ancestors: str = "'self'"):
        self.app = app
        self.csp = f"frame-ancestors {frame_ancestors}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                defaults = ((b"x-content-type-options", b"nosniff"), (b"content-security-policy", self.csp),
                            (b"referrer-policy", b"same-origin"))
                headers += [(k, v) for k, v in defaults if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
