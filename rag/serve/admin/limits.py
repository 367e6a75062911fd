"""One body limit for the console's upload route, another for every other route."""
from __future__ import annotations

from ..middleware import BodyLimit


class UploadBodyLimit:
    """BodyLimit with ``upload_bytes`` on ``upload_path`` (refused early by Content-Length, and cut off
    while streaming past it) and ``max_bytes`` everywhere else."""

    def __init__(self, app, max_bytes: int, upload_path: str, upload_bytes: int):
        self.default = BodyLimit(app, max_bytes)
        self.upload = BodyLimit(app, upload_bytes)
        self.upload.message = (f"The upload is too large (the limit is {upload_bytes // 2**20:,} MB in all, "
                               "RAG_MAX_UPLOAD_MB); nothing was added.")
        self.upload_path = upload_path

    async def __call__(self, scope, receive, send):
        limit = self.upload if scope["type"] == "http" and scope["path"] == self.upload_path else self.default
        await limit(scope, receive, send)
